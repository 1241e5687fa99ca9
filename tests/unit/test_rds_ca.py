"""The RDS CA the containers trust is the right one for each region and for the database's CA setting.

Source: Amazon's RDS global bundle (https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem,
copied to tests/data/rds-global-bundle.pem), and "Using SSL/TLS to encrypt a connection to a DB instance"
(https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/UsingWithRDS.SSL.html): each region has its own root
per CA (rds-ca-rsa2048-g1 -> "Amazon RDS <region> Root CA RSA2048 G1").
"""

import datetime
import re

from cryptography import x509

from tootstack_dev.local.template import load_template, project_root

ROOT = project_root()
TEMPLATE = load_template(ROOT / "template.yaml")


def bundle_roots() -> dict[str, x509.Certificate]:
    text = (ROOT / "tests/data/rds-global-bundle.pem").read_text()
    roots = {}
    for pem in re.findall(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", text, re.S):
        cert = x509.load_pem_x509_certificate(pem.encode())
        match = re.fullmatch(r"Amazon RDS ([a-z]+-[a-z]+-\d) Root CA RSA2048 G1",
                             cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value)
        if match:
            roots[match.group(1)] = cert
    return roots


def test_the_database_ca_and_the_mapping_agree():
    assert TEMPLATE["Resources"]["Database"]["Properties"]["CACertificateIdentifier"] == "rds-ca-rsa2048-g1"
    mapping = TEMPLATE["Mappings"]["RdsCaRsa2048G1"]
    roots = bundle_roots()
    assert set(mapping) == set(roots) and "us-east-1" in mapping
    now = datetime.datetime.now(datetime.timezone.utc)
    for region, entry in mapping.items():
        cert = x509.load_pem_x509_certificate(entry["Pem"].encode())
        assert cert == roots[region], region
        assert cert.subject == cert.issuer and cert.not_valid_after_utc > now + datetime.timedelta(days=365), region


def test_every_mastodon_container_verifies_the_database_with_that_ca():
    containers = [c for td in TEMPLATE["Resources"].values() if td["Type"] == "AWS::ECS::TaskDefinition"
                  for c in td["Properties"]["ContainerDefinitions"]]
    for c in containers:
        env = {e["Name"]: e["Value"] for e in c["Environment"]}
        assert env["DB_SSLMODE"] == "verify-full", c["Name"]
        assert env["RDS_CA_PEM"] == {"Fn::FindInMap": ["RdsCaRsa2048G1", {"Ref": "AWS::Region"}, "Pem"]}, c["Name"]
        script = c["EntryPoint"][2]
        assert 'export PGSSLROOTCERT="$ca" NODE_EXTRA_CA_CERTS="$ca"' in script, c["Name"]
        assert script.index("NODE_EXTRA_CA_CERTS") < script.index('exec "$@"'), c["Name"]  # set before node starts
