"""Facts about AWS that config validation checks against, read from data the pinned packages
ship (no hand-kept lists):

- regions and their partitions: botocore's endpoint data (`botocore/data/endpoints.json`), the
  regions in which EKS has an endpoint;
- EC2 instance type names: the pinned pulumi-aws SDK's `ec2.InstanceType` enum, and for types
  newer than that SDK, botocore's EC2 service model (`InstanceType` shape).

A config naming a region or an instance type these don't know fails validation with the key;
bumping pulumi-aws or botocore (requirements.txt) brings new ones in.
"""

from __future__ import annotations

import re
from functools import cache

from botocore.loaders import create_loader


@cache
def eks_regions() -> dict[str, str]:
    """region -> partition (aws, aws-cn, aws-us-gov, ...) for every region with an EKS endpoint."""
    regions: dict[str, str] = {}
    for partition in create_loader().load_data("endpoints")["partitions"]:
        eks = partition["services"].get("eks", {}).get("endpoints", {})
        for region in partition["regions"]:
            if region in eks:
                regions[region] = partition["partition"]
    return regions


def region_partition(region: str) -> str | None:
    return eks_regions().get(region)


@cache
def _sdk_instance_types() -> frozenset[str]:
    from pulumi_aws.ec2 import InstanceType

    return frozenset(member.value for member in InstanceType)


@cache
def _botocore_instance_types() -> frozenset[str]:
    model = create_loader().load_service_model("ec2", "service-2")
    return frozenset(model["shapes"]["InstanceType"]["enum"])


def instance_type_exists(name: str) -> bool:
    return name in _sdk_instance_types() or name in _botocore_instance_types()


def is_graviton(name: str) -> bool:
    """Arm64 (Graviton) types carry a `g` among the attribute letters after the generation digit
    (m7g, c6gn, r8gd, t4g, g5g), which x86_64 AMIs can't boot."""
    match = re.fullmatch(r"[a-z]+\d+([a-z-]*)\.[a-z0-9-]+", name)
    return bool(match and "g" in match.group(1))
