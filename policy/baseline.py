"""The prod baseline: thresholds and judgements shared by the stack's config rules
(components/config/rules/prod.py) and the policy pack (policy/rules.py), so both layers refuse
the same things for the same reasons.

Plain Python with no third-party imports: the pack runs in its own environment (policy/venv)
and imports this module beside rules.py; the program imports it as `policy.baseline`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

ENVIRONMENTS = ("dev", "staging", "prod", "local")

# Model servers of the stable track keep this many replicas in prod, so a node drain or a crash
# never takes a model down.
PROD_MIN_MODEL_REPLICAS = 2

# Controllers run two replicas in prod; they need two system nodes to be apart.
PROD_MIN_SYSTEM_NODES = 2

# The EKS control-plane logs (api, audit, authenticator) are the audit trail of who did what to
# the cluster: a year, the retention most audit frameworks ask for (e.g. PCI DSS 10.5.1).
PROD_MIN_AUDIT_LOG_RETENTION_DAYS = 365
# VPC flow logs (rejected traffic) are kept long enough to investigate an incident.
PROD_MIN_FLOW_LOG_RETENTION_DAYS = 90

# The public API endpoint in prod admits at most this many addresses (a /16), counted over the
# union of publicAccessCidrs: office, VPN and self-hosted runner egress ranges are /32 to /24;
# anything bigger admits a whole ISP or a cloud region, which is what "restricted" rules out.
# A split like 0.0.0.0/1 + 128.0.0.0/1 is the whole internet and is judged as such.
PROD_MAX_PUBLIC_ENDPOINT_ADDRESSES = 2 ** 16

# Every S3 bucket refuses TLS below this version (s3:TlsVersion in the bucket policy).
MIN_S3_TLS_VERSION = 1.2

# Addresses that never reach the EKS public endpoint as a client's source: private, shared
# (CGNAT), loopback, link-local, "this network", benchmarking, multicast and reserved space
# (IANA IPv4 Special-Purpose Address Registry). A CIDR inside one of them in publicAccessCidrs
# admits nobody; it is always a mistake (often a VPC or office-LAN range). The documentation
# ranges (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24) are left out on purpose: the shipped
# stack files use them as placeholders, and they admit nobody either.
NON_PUBLIC_NETWORKS = tuple(ipaddress.IPv4Network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "172.16.0.0/12", "192.0.0.0/24", "192.168.0.0/16", "198.18.0.0/15", "224.0.0.0/4",
    "240.0.0.0/4",
))

# Choices, not musts: each may be waived in prod, explicitly, with `prodWaivers` in the stack
# file. The stack tags every AWS resource with the waivers in force (WAIVERS_TAG), which is also
# how the pack learns of them.
WAIVERS = {
    "singleNatGateway": "one NAT gateway instead of one per AZ: an AZ outage cuts the other AZs' "
                        "egress (image pulls, S3 through NAT, AWS APIs)",
    "spotModelCapacity": "SPOT capacity for GPU pools that serve models: a reclaim takes "
                         "replicas away at two minutes' notice",
}
WAIVERS_TAG = "mlserve:prod-waivers"


def non_public(cidrs: Iterable[str]) -> list[str]:
    """The CIDRs that lie entirely inside non-public address space."""
    found = []
    for cidr in cidrs:
        network = ipaddress.IPv4Network(cidr, strict=False)
        if any(network.subnet_of(reserved) for reserved in NON_PUBLIC_NETWORKS):
            found.append(cidr)
    return found


def address_count(cidrs: Iterable[str]) -> int:
    """How many addresses the CIDRs admit together (overlaps counted once)."""
    networks = [ipaddress.IPv4Network(c, strict=False) for c in cidrs]
    return sum(n.num_addresses for n in ipaddress.collapse_addresses(networks))


def public_endpoint_problem(cidrs: list[str], prod: bool) -> str | None:
    """What is wrong with these publicAccessCidrs of an enabled public endpoint, or None.

    An empty list on an enabled public endpoint means 0.0.0.0/0 to EKS.
    """
    cidrs = cidrs or ["0.0.0.0/0"]
    if wrong := non_public(cidrs):
        return (f"{wrong} are private or reserved addresses, which never reach the public "
                "endpoint; use the private endpoint from inside the VPC instead")
    if prod and (count := address_count(cidrs)) > PROD_MAX_PUBLIC_ENDPOINT_ADDRESSES:
        return (f"admits {count:,} addresses in prod (at most "
                f"{PROD_MAX_PUBLIC_ENDPOINT_ADDRESSES:,}, a /16); list the egress ranges of your "
                "offices, VPN and runners")
    return None


def parse_waivers(tag_value: str | None) -> set[str]:
    return set((tag_value or "").split())
