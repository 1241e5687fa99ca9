"""Where moto's CloudFormation puts the ALB when the whole template is deployed (the parsed-template checks
of the VPC origin are in tests/unit/test_vpc_origin.py)."""

import boto3
import pytest
from moto import mock_aws

from tests.unit.test_vpc_origin import PRIVATE, PUBLIC


@pytest.mark.parametrize(("parameters", "scheme", "subnets"),
                         [({}, "internal", PRIVATE), ({"Profile": "micro", "UseCloudFront": "false"}, "internet-facing", PUBLIC)],
                         ids=["cloudfront", "micro-no-cloudfront"])
def test_moto_deploys_the_alb_where_the_template_says(parameters, scheme, subnets):
    from tests.emulated.test_template_moto import REGION, deploy

    with mock_aws():
        stack, deployed, skipped = deploy(parameters)
        assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
        # moto models no CloudFront: the VPC origin is stood in for like the distribution; without CloudFront
        # neither is deployed, so neither is reported
        stood_in = {s["logical_id"] for s in skipped} & {"AlbVpcOrigin", "Distribution"}
        assert stood_in == ({"AlbVpcOrigin", "Distribution"} if scheme == "internal" else set())
        elbv2 = boto3.client("elbv2", region_name=REGION)
        alb = elbv2.describe_load_balancers(LoadBalancerArns=[deployed["LoadBalancer"]])["LoadBalancers"][0]
        assert alb["Scheme"] == scheme
        assert sorted(z["SubnetId"] for z in alb["AvailabilityZones"]) == sorted(deployed[s] for s in subnets)
        if scheme == "internal":
            ec2 = boto3.client("ec2", region_name=REGION)
            def gateways(table):
                found = ec2.describe_route_tables(RouteTableIds=[deployed[table]])["RouteTables"][0]
                return {r.get("GatewayId", "") for r in found["Routes"]}

            assert gateways("PrivateRouteTable") == {"local"}
            assert any(g.startswith("igw-") for g in gateways("PublicRouteTable"))  # the check sees a default route
