"""Cost cut: with CloudFront, the ALB is internal in private subnets and reached through a CloudFront VPC origin.

The ALB's two node addresses are the public IPv4 this saves ($0.24/day); without CloudFront nothing changes.
Evaluated with the cost model's evaluator (conditions and Fn::If applied); tests/emulated/test_vpc_origin_moto.py
deploys it into moto.
"""

import copy
import ipaddress
import re

import pytest

from tootstack_dev.cost.model import estimate
from tootstack_dev.cost.template_eval import ResourceRef, TemplateEvaluator
from tootstack_dev.local.template import load_template, project_root

ROOT = project_root()
TEMPLATE = load_template(ROOT / "template.yaml")
PRIVATE = ["PrivateSubnetA", "PrivateSubnetB"]
PUBLIC = ["PublicSubnetA", "PublicSubnetB"]


def resources(template=TEMPLATE, **params):
    return TemplateEvaluator(template, {k: str(v) for k, v in params.items()}).resources()


def of_type(found, rtype):
    return {lid: r["Properties"] for lid, r in found.items() if r["Type"] == rtype}


def ref_id(value):
    return value.logical_id if isinstance(value, ResourceRef) else None


def internet_routes(found, route_table):
    """Routes of `route_table` that leave the VPC (internet/NAT/egress-only gateway, instance, peering...)."""
    return [lid for lid, props in of_type(found, "AWS::EC2::Route").items() if ref_id(props.get("RouteTableId")) == route_table]


def alb_public_ipv4(report):
    """Public IPv4 the cost model attributes to the LoadBalancer (0 when it names none)."""
    item = next((i for i in report.items if i.name == "Public IPv4 addresses"), None)
    match = re.search(r"LoadBalancer: (\d+) node addresses", item.detail) if item else None
    return int(match.group(1)) if match else 0


def test_with_cloudfront_the_alb_is_internal_in_two_private_subnets_one_per_az():
    found = resources(UseCloudFront="true")
    alb = found["LoadBalancer"]["Properties"]
    assert alb["Scheme"] == "internal"
    assert [ref_id(s) for s in alb["Subnets"]] == PRIVATE
    subnets = of_type(found, "AWS::EC2::Subnet")
    # same AZ selection as the public subnets, so the ALB and the tasks share the two AZs
    for private, public in zip(PRIVATE, PUBLIC):
        assert subnets[private]["AvailabilityZone"] == subnets[public]["AvailabilityZone"]
        assert subnets[private]["MapPublicIpOnLaunch"] is False
    assert subnets["PrivateSubnetA"]["AvailabilityZone"] != subnets["PrivateSubnetB"]["AvailabilityZone"]
    vpc = ipaddress.ip_network(found["Vpc"]["Properties"]["CidrBlock"])
    blocks = [ipaddress.ip_network(p["CidrBlock"]) for p in subnets.values()]
    assert all(b.subnet_of(vpc) for b in blocks)
    assert not any(a.overlaps(b) for i, a in enumerate(blocks) for b in blocks[i + 1:])


def test_private_route_table_has_no_route_out_of_the_vpc():
    found = resources(UseCloudFront="true")
    associations = {ref_id(p["SubnetId"]): ref_id(p["RouteTableId"])
                    for p in of_type(found, "AWS::EC2::SubnetRouteTableAssociation").values()}
    assert {s: associations.get(s) for s in PRIVATE} == {s: "PrivateRouteTable" for s in PRIVATE}
    assert internet_routes(found, "PrivateRouteTable") == []
    # the check sees a default route: the public table has one to the internet gateway
    assert internet_routes(found, "PublicRouteTable") == ["PublicDefaultRoute"]


def test_the_route_check_can_fail():
    broken = copy.deepcopy(TEMPLATE)
    broken["Resources"]["PrivateDefaultRoute"] = {"Type": "AWS::EC2::Route", "Properties": {
        "RouteTableId": {"Ref": "PrivateRouteTable"}, "DestinationCidrBlock": "0.0.0.0/0",
        "GatewayId": {"Ref": "InternetGateway"}}}
    assert internet_routes(resources(broken, UseCloudFront="true"), "PrivateRouteTable") == ["PrivateDefaultRoute"]


def test_distribution_reaches_the_alb_through_the_vpc_origin_over_tls():
    found = resources(UseCloudFront="true")
    config = found["Distribution"]["Properties"]["DistributionConfig"]
    origin = next(o for o in config["Origins"] if o["Id"] == config["DefaultCacheBehavior"]["TargetOriginId"])
    assert origin["DomainName"] == ResourceRef("LoadBalancer", "DNSName")
    assert "CustomOriginConfig" not in origin
    assert origin["VpcOriginConfig"]["VpcOriginId"] == ResourceRef("AlbVpcOrigin", "Id")
    assert {h["HeaderName"]: h["HeaderValue"] for h in origin["OriginCustomHeaders"]} == {"X-Forwarded-Proto": "https"}
    endpoint = found["AlbVpcOrigin"]["Properties"]["VpcOriginEndpointConfig"]
    assert endpoint["Arn"] == ResourceRef("LoadBalancer")
    assert endpoint["OriginProtocolPolicy"] == "https-only"
    assert endpoint["OriginSSLProtocols"] == ["TLSv1.2"]
    assert str(endpoint["HTTPSPort"]) == "443"
    # https-only lands on the ALB's HTTPS listener (the certificate for the forwarded Host)
    listeners = of_type(found, "AWS::ElasticLoadBalancingV2::Listener")
    assert any(ref_id(p["LoadBalancerArn"]) == "LoadBalancer" and p["Protocol"] == "HTTPS" and str(p["Port"]) == "443"
               for p in listeners.values())
    # CloudFront requires an internet gateway attached to the VPC of a VPC origin
    assert "InternetGatewayAttachment" in str(TEMPLATE["Resources"]["AlbVpcOrigin"].get("DependsOn"))
    # only CloudFront's origin-facing range may reach the ALB
    ingress = found["AlbSecurityGroup"]["Properties"]["SecurityGroupIngress"]
    assert [r.get("SourcePrefixListId") for r in ingress] == ["pl-3b927c52"] and not any("CidrIp" in r for r in ingress)


def test_without_cloudfront_nothing_changes():
    found = resources(UseCloudFront="false")
    alb = found["LoadBalancer"]["Properties"]
    assert alb["Scheme"] == "internet-facing"
    assert [ref_id(s) for s in alb["Subnets"]] == PUBLIC
    assert not {"AlbVpcOrigin", "Distribution", "PrivateRouteTable", *PRIVATE} & set(found)


@pytest.mark.parametrize("profile", ["micro", "standard"])
def test_cost_model_counts_no_alb_ipv4_with_cloudfront_and_two_without(profile):
    on = estimate(TEMPLATE, profile, {"UseCloudFront": "true"})
    off = estimate(TEMPLATE, profile, {"UseCloudFront": "false"})
    assert alb_public_ipv4(on) == 0 and alb_public_ipv4(off) == 2
    assert "internal" in next(i.detail for i in on.items if i.name == "ALB LoadBalancer")
    # the new types are priced (at $0) without a warning
    assert on.unpriced == [] and on.warnings == []
    # the saving is exactly the two addresses: same template with the ALB forced internet-facing
    public = copy.deepcopy(TEMPLATE)
    public["Resources"]["LoadBalancer"]["Properties"]["Scheme"] = "internet-facing"
    before = estimate(public, profile, {"UseCloudFront": "true"})
    assert alb_public_ipv4(before) == 2
    assert before.public_ipv4 - on.public_ipv4 == 2
    assert before.daily - on.daily == pytest.approx(2 * 0.005 * 24)


            # (moto's CloudFormation does not record subnet associations: checked on the template above)
