"""The `network` section: the VPC, created by the stack or brought with `existingVpc`."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from components.config.errors import ConfigError, Problem
from components.config.types import LOG_RETENTION_DAYS, Cidr, ConfigModel


class ExistingVpcConfig(ConfigModel):
    """A VPC this stack doesn't own; subnets get the tags EKS and the load-balancer controller need."""

    vpc_id: str = Field(pattern=r"^vpc-[0-9a-f]{8,17}$", description="ID of the existing VPC.")
    private_subnet_ids: list[Annotated[str, Field(pattern=r"^subnet-[0-9a-f]{8,17}$")]] = Field(
        min_length=2, description="Private subnets (one per AZ) for nodes and the control plane."
    )
    public_subnet_ids: list[Annotated[str, Field(pattern=r"^subnet-[0-9a-f]{8,17}$")]] = Field(
        min_length=2, description="Public subnets for internet-facing load balancers."
    )

    @model_validator(mode="after")
    def _distinct_subnets(self) -> ExistingVpcConfig:
        problems = []
        for key, ids in (("privateSubnetIds", self.private_subnet_ids),
                         ("publicSubnetIds", self.public_subnet_ids)):
            if len(set(ids)) != len(ids):
                problems.append(((key,), f"must not repeat a subnet, got {ids}"))
        shared = sorted(set(self.private_subnet_ids) & set(self.public_subnet_ids))
        if shared:
            problems.append((("publicSubnetIds",),
                             f"must not also be private subnets, got {shared}"))
        if problems:
            raise ConfigError(problems)
        return self


class NetworkConfig(ConfigModel):
    """The VPC: created by the stack (default) or brought with `existingVpc`."""

    vpc_cidr: Cidr = Field("10.0.0.0/16", description="VPC CIDR, /16 to /22.")
    az_count: int = Field(3, ge=2, le=6, description="Availability zones to spread subnets over.")
    availability_zones: list[str] | None = Field(
        None, description="Explicit AZ names (length azCount); default: the region's first azCount."
    )
    nat_gateways: Literal["single", "perAz"] = Field(
        "perAz", description="One NAT gateway per AZ (HA), or a single one (cheap, for dev)."
    )
    private_subnet_cidrs: list[Cidr] | None = Field(
        None, description="Private subnet CIDRs, one per AZ; default: /(vpc+3) blocks."
    )
    public_subnet_cidrs: list[Cidr] | None = Field(
        None, description="Public subnet CIDRs, one per AZ; default: /(vpc+6) blocks at the top."
    )
    flow_log_retention_days: int = Field(
        90, description="Retention of the VPC flow log (REJECT traffic) in CloudWatch; 0 disables."
    )
    existing_vpc: ExistingVpcConfig | None = Field(
        None, description="Use this VPC and its subnets instead of creating one."
    )

    @field_validator("vpc_cidr")
    @classmethod
    def _vpc_size(cls, value: str) -> str:
        prefix = ipaddress.IPv4Network(value).prefixlen
        if not 16 <= prefix <= 22:
            raise ValueError(f"must be between /16 and /22, got /{prefix}")
        return value

    @field_validator("flow_log_retention_days")
    @classmethod
    def _flow_retention(cls, value: int) -> int:
        if value != 0 and value not in LOG_RETENTION_DAYS:
            raise ValueError(f"must be 0 or one of {list(LOG_RETENTION_DAYS)}, got {value}")
        return value

    @model_validator(mode="after")
    def _subnets_fit(self) -> NetworkConfig:
        problems: list[Problem] = []
        if self.existing_vpc is not None:
            owned = {"vpcCidr", "privateSubnetCidrs", "publicSubnetCidrs", "natGateways"}
            for key in sorted(owned & {to_camel(f) for f in self.model_fields_set}):
                problems.append(((key,), "must not be set together with existingVpc"))
        if self.availability_zones is not None and len(self.availability_zones) != self.az_count:
            problems.append((("availabilityZones",),
                             f"must list azCount ({self.az_count}) zones, "
                             f"got {len(self.availability_zones)}"))
        zones = self.availability_zones or []
        if repeated := sorted({z for z in zones if zones.count(z) > 1}):
            problems.append((("availabilityZones",), f"must not repeat a zone, got {repeated} "
                                                     "more than once"))
        vpc = ipaddress.IPv4Network(self.vpc_cidr)
        seen: list[tuple[str, ipaddress.IPv4Network]] = []
        for key, cidrs in (("privateSubnetCidrs", self.private_subnet_cidrs),
                           ("publicSubnetCidrs", self.public_subnet_cidrs)):
            if cidrs is None:
                continue
            if len(cidrs) != self.az_count:
                problems.append(((key,), f"must list azCount ({self.az_count}) CIDRs, "
                                         f"got {len(cidrs)}"))
            for index, cidr in enumerate(cidrs):
                net = ipaddress.IPv4Network(cidr)
                if not net.subnet_of(vpc):
                    problems.append(((key, index), "must lie inside vpcCidr "
                                                   f"{vpc}, got {net}"))
                for other_key, other in seen:
                    if net.overlaps(other):
                        problems.append(((key, index), f"overlaps {other} "
                                                       f"({other_key}), got {net}"))
                seen.append((f"{key}[{index}]", net))
        if problems:
            raise ConfigError(problems)
        return self

    def subnet_cidrs(self) -> tuple[list[str], list[str]]:
        """(private, public) CIDRs: the configured ones, or the default carve-up of vpcCidr.

        Private subnets get big blocks (/19 of a /16) because the VPC CNI gives every pod a VPC
        address; public subnets only hold load balancers and NAT gateways.
        """
        vpc = ipaddress.IPv4Network(self.vpc_cidr)
        blocks = list(vpc.subnets(prefixlen_diff=3))
        private = self.private_subnet_cidrs or [str(b) for b in blocks[: self.az_count]]
        public = self.public_subnet_cidrs or [
            str(b) for b in list(blocks[-1].subnets(prefixlen_diff=3))[: self.az_count]
        ]
        return private, public
