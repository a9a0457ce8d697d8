"""Typed stack configuration: every `mlserve:*` key, its type, its secure default and its rules.

Stack files hold structured values (`pulumi config set --path 'gpuNodeGroups[0].maxSize' 3`). They
are parsed once, in full, into frozen pydantic models before any resource is registered. Every
problem is reported in one error, one line per problem, each naming the full key path, e.g.

    mlserve:gpuNodeGroups[0].maxSize: must be >= minSize (2), got 1

Unknown keys are errors: a typo must never fall back to a default silently.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

import pulumi
import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel, to_snake

from components import aws_facts, naming, versions
from policy import baseline

NAMESPACE = "mlserve"

Environment = Literal["dev", "staging", "prod", "local"]
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827,
                      2192, 2557, 2922, 3288, 3653)
REQUIRED_LOG_TYPES = ("api", "audit", "authenticator")

_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_IAM_PRINCIPAL_ARN = r"^arn:aws[a-z-]*:iam::\d{12}:(role|user)/[\w+=,.@/-]+$"
_SNS_TOPIC_ARN = r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}$"
# A role or user, or a whole account (its root), as a bucket/key policy principal.
_PROMOTION_READER_ARN = r"^arn:aws[a-z-]*:iam::\d{12}:(root|(role|user)/[\w+=,.@/-]+)$"


Loc = tuple[str | int, ...]
"""A key path in camelCase, e.g. ("gpuNodeGroups", 0, "maxSize")."""
Problem = tuple[Loc, str]
"""One problem: where, and what is wrong (the message does not repeat the key)."""


class ConfigRuleError(ValueError):
    """Cross-field rule violations, each relative to the model that checks them."""

    def __init__(self, problems: Sequence[Problem]):
        self.problems = list(problems)
        super().__init__("; ".join(f"{_key_path(loc)}: {message}"
                                   for loc, message in self.problems))


class ConfigError(pulumi.RunError):
    """Invalid stack configuration; `pulumi up` prints it without a traceback."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        # Not super(): StackInputError also derives from ModelRepositoryError, whose __init__
        # would take the message for its problems.
        pulumi.RunError.__init__(
            self, f"invalid stack configuration ({len(self.problems)} problem(s)):\n{lines}")


def _cidr(value: Any) -> str:
    try:
        return str(ipaddress.IPv4Network(str(value), strict=True))
    except ValueError:
        raise ValueError(
            f"must be an IPv4 CIDR with no host bits set, e.g. 10.0.0.0/16, got {value!r}"
        ) from None


def _quoted_string(value: Any) -> Any:
    # YAML reads an unquoted 1.30 as the float 1.3; refuse instead of guessing.
    if isinstance(value, float):
        raise ValueError(f"must be a quoted string such as \"1.35\", got the number {value!r}")
    return value


Cidr = Annotated[str, BeforeValidator(_cidr)]


def _https_secret(value: SecretStr) -> SecretStr:
    if not value.get_secret_value().startswith("https://"):
        raise ValueError("must be an https:// URL")  # never echo a secret
    return value


def _known_region(value: str) -> str:
    if aws_facts.region_partition(value) is None:
        raise ValueError(f"must be an AWS region where EKS is offered (botocore's endpoint data), "
                         f"got {value!r}")
    return value


def _no_reserved_tags(value: dict[str, str]) -> dict[str, str]:
    reserved = sorted(k for k in value if k.lower().startswith("aws:"))
    if reserved:
        raise ValueError(f"must not use the reserved aws: prefix, got {reserved}")
    return value


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, alias_generator=to_camel
    )


class ExistingVpcConfig(_Model):
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
            raise ConfigRuleError(problems)
        return self


class NetworkConfig(_Model):
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
        problems: list[tuple[tuple[str | int, ...], str]] = []
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
            raise ConfigRuleError(problems)
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


class ClusterConfig(_Model):
    """The EKS control plane and who administers it, or an existing cluster to deploy onto."""

    mode: Literal["eks", "existing"] = Field(
        "eks", description="eks: create VPC and EKS; existing: deploy onto the cluster of "
        "`kubeconfig` (an existing EKS, kind, minikube), creating no AWS resources.")
    kubeconfig: str | None = Field(None, description="existing: path of the kubeconfig file.")
    context: str | None = Field(None, description="existing: kubeconfig context to use.")

    name: str | None = Field(
        None, pattern=r"^[0-9A-Za-z][A-Za-z0-9_-]{0,99}$",
        description="EKS cluster name; default mlserve-<stack>.",
    )
    version: Annotated[str, BeforeValidator(_quoted_string)] = Field(
        versions.DEFAULT_KUBERNETES_VERSION, description="Kubernetes minor version."
    )
    public_access_cidrs: list[Cidr] = Field(
        default_factory=list,
        description="CIDRs allowed to reach the public API endpoint; empty = private endpoint only.",
    )
    admin_principal_arns: list[Annotated[str, Field(pattern=_IAM_PRINCIPAL_ARN)]] = Field(
        default_factory=list,
        description="IAM roles/users given cluster-admin through EKS access entries; at least "
        "one, and it must include the identity that runs `pulumi up`.",
    )
    preview_principal_arns: list[Annotated[str, Field(pattern=_IAM_PRINCIPAL_ARN)]] = Field(
        default_factory=list,
        description="IAM roles/users given read-only cluster access (AmazonEKSAdminViewPolicy, "
        "Secrets included: refresh reads Helm releases' state) for CI's `pulumi preview`.",
    )
    log_types: list[Literal["api", "audit", "authenticator", "controllerManager", "scheduler"]] = (
        Field(default_factory=lambda: list(REQUIRED_LOG_TYPES),
              description="Control-plane log types sent to CloudWatch.")
    )
    log_retention_days: int = Field(90, description="Control-plane log retention in days.")
    addon_versions: dict[Literal[versions.EKS_ADDONS],  # type: ignore[valid-type]
                         Annotated[str, Field(pattern=versions.ADDON_VERSION_PATTERN)]] = Field(
        default_factory=dict,
        description="Override EKS add-on versions (e.g. v1.21.1-eksbuild.1); default: the "
        "versions pinned per Kubernetes minor in components/versions.py.",
    )
    deletion_protection: bool = Field(False, description="EKS deletion protection.")

    @field_validator("version")
    @classmethod
    def _supported(cls, value: str) -> str:
        if value not in versions.SUPPORTED_KUBERNETES_VERSIONS:
            raise ValueError(f"must be one of {list(versions.SUPPORTED_KUBERNETES_VERSIONS)}, "
                             f"got {value!r}")
        return value

    @field_validator("log_retention_days")
    @classmethod
    def _retention(cls, value: int) -> int:
        if value not in LOG_RETENTION_DAYS:
            raise ValueError(f"must be one of {list(LOG_RETENTION_DAYS)}, got {value}")
        return value

    @model_validator(mode="after")
    def _rules(self) -> ClusterConfig:
        problems: list[tuple[tuple[str | int, ...], str]] = []
        if self.mode == "existing":
            if not self.kubeconfig:
                problems.append((("kubeconfig",), "required with mode existing"))
        elif self.kubeconfig or self.context:
            problems.append((("kubeconfig",), "kubeconfig and context only with mode "
                                              "existing"))
        if self.mode == "eks" and not self.admin_principal_arns:
            problems.append((("adminPrincipalArns",),
                             "must name at least one IAM role or user; the "
                             "identity running `pulumi up` needs cluster access"))
        if len(set(self.admin_principal_arns)) != len(self.admin_principal_arns):
            problems.append((("adminPrincipalArns",), "must not repeat an ARN"))
        if len(set(self.preview_principal_arns)) != len(self.preview_principal_arns):
            problems.append((("previewPrincipalArns",), "must not repeat an ARN"))
        if both := sorted(set(self.admin_principal_arns) & set(self.preview_principal_arns)):
            # EKS allows one access entry per principal.
            problems.append((("previewPrincipalArns",), f"must not also be admins, got {both}"))
        if wrong := baseline.non_public(self.public_access_cidrs):
            problems.append((("publicAccessCidrs",),
                             f"{wrong} are private or reserved addresses, which never reach the "
                             "public endpoint; leave them out (the private endpoint serves "
                             "the VPC)"))
        missing = [t for t in REQUIRED_LOG_TYPES if t not in self.log_types]
        if missing:
            problems.append((("logTypes",), f"must include {list(REQUIRED_LOG_TYPES)}, "
                                            f"missing {missing}"))
        if problems:
            raise ConfigRuleError(problems)
        return self


def _scaling_problems(group: Any) -> list[tuple[tuple[str | int, ...], str]]:
    problems: list[tuple[tuple[str | int, ...], str]] = []
    if group.max_size < group.min_size:
        problems.append((("maxSize",), f"must be >= minSize ({group.min_size}), "
                                       f"got {group.max_size}"))
    desired = group.desired_size
    if desired is not None and not group.min_size <= desired <= group.max_size:
        problems.append((("desiredSize",), "must be between minSize "
                                           f"({group.min_size}) and maxSize ({group.max_size}), "
                                           f"got {desired}"))
    return problems


class SystemNodeGroupConfig(_Model):
    """On-demand CPU nodes for controllers (Istio, KServe, Prometheus, ...). Never GPU."""

    instance_types: list[str] = Field(default_factory=lambda: ["m7i.large"], min_length=1,
                                      description="CPU instance types.")
    min_size: int = Field(2, ge=1, description="Minimum nodes.")
    desired_size: int | None = Field(None, ge=1, description="Initial nodes; default minSize.")
    max_size: int = Field(4, ge=1, description="Maximum nodes.")
    disk_size_gib: int = Field(50, ge=20, le=16384, description="Encrypted gp3 root volume size.")

    @field_validator("instance_types")
    @classmethod
    def _cpu_only(cls, value: list[str]) -> list[str]:
        for instance_type in value:
            if not aws_facts.instance_type_exists(instance_type):
                raise ValueError(f"must be EC2 instance types like m7i.large (pulumi-aws's "
                                 f"InstanceType, botocore's EC2 model), got {instance_type!r}")
            family = instance_type.split(".")[0]
            if family.startswith(versions.GPU_FAMILY_PREFIXES):
                raise ValueError(f"must be CPU instance types (system nodes run controllers, "
                                 f"not models), got {instance_type!r}")
            if aws_facts.is_graviton(instance_type):
                raise ValueError(f"must be x86_64 instance types (the system nodes' AMI is "
                                 f"AL2023_x86_64_STANDARD), got the Graviton {instance_type!r}")
        if len(set(value)) != len(value):
            raise ValueError(f"must not repeat an instance type, got {value}")
        return value

    @model_validator(mode="after")
    def _sizes(self) -> SystemNodeGroupConfig:
        if problems := _scaling_problems(self):
            raise ConfigRuleError(problems)
        return self


class GpuNodeGroupConfig(_Model):
    """One GPU managed node group; cluster-autoscaler grows it from minSize when models pend."""

    name: str = Field(pattern=_DNS_LABEL, max_length=32,
                      description="Pool name, used in the node label mlserve.io/pool.")
    instance_types: list[str] = Field(min_length=1, description="GPU instance types (one GPU model).")
    capacity_type: Literal["ON_DEMAND", "SPOT"] = Field("ON_DEMAND", description="Purchase option.")
    min_size: int = Field(0, ge=0, description="Minimum nodes; 0 lets the pool scale to zero.")
    desired_size: int | None = Field(None, ge=0, description="Initial nodes; default minSize. "
                                     "Ignored after creation so autoscaling isn't undone.")
    max_size: int = Field(2, ge=1, description="Maximum nodes.")
    disk_size_gib: int = Field(200, ge=100, le=16384,
                               description="Encrypted gp3 volume for images and models.")
    ami_type: Literal["AL2023_x86_64_NVIDIA", "BOTTLEROCKET_x86_64_NVIDIA"] = Field(
        "AL2023_x86_64_NVIDIA", description="EKS-optimised NVIDIA AMI."
    )

    @field_validator("instance_types")
    @classmethod
    def _gpu_types(cls, value: list[str]) -> list[str]:
        unknown = [t for t in value if t not in versions.GPU_INSTANCE_TYPES]
        if unknown:
            raise ValueError(f"must be GPU instance types of families "
                             f"{list(versions.GPU_FAMILIES)}, got {unknown}")
        if len(set(value)) != len(value):
            raise ValueError(f"must not repeat an instance type, got {value}")
        shapes = {versions.GPU_INSTANCE_TYPES[t] for t in value}
        if len(shapes) > 1:
            raise ValueError(
                "must all have the same GPU model and count (cluster-autoscaler builds one node "
                f"template per group), got {sorted(shapes)}"
            )
        return value

    @model_validator(mode="after")
    def _sizes(self) -> GpuNodeGroupConfig:
        if problems := _scaling_problems(self):
            raise ConfigRuleError(problems)
        return self

    @property
    def gpus_per_node(self) -> int:
        return versions.GPU_INSTANCE_TYPES[self.instance_types[0]][0]

    @property
    def accelerator(self) -> str:
        return versions.GPU_INSTANCE_TYPES[self.instance_types[0]][1]


class ModelBucketConfig(_Model):
    """The S3 bucket holding the Triton model repository: created here, an existing S3 bucket,
    or a bucket on an S3-compatible server (MinIO)."""

    mode: Literal["create", "existing", "s3Compatible"] = Field(
        "create", description="create: a new, hardened S3 bucket; existing: an S3 bucket the "
        "stack doesn't own; s3Compatible: an S3-compatible endpoint.")
    name: str | None = Field(None, pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
                             description="existing/s3Compatible: the bucket name.")
    reader_role_arn: str | None = Field(None, pattern=_IAM_PRINCIPAL_ARN,
                                        description="existing: IAM role model pods assume (IRSA).")
    endpoint: str | None = Field(None, pattern=r"^https?://[^/]+$",
                                 description="s3Compatible: endpoint the stack uploads to.")
    cluster_endpoint: str | None = Field(
        None, pattern=r"^https?://[^/]+$",
        description="s3Compatible: endpoint pods read from; default: endpoint.")

    encryption: Literal["kms", "s3"] = Field(
        "kms", description="kms: a customer-managed key with rotation and a bucket key; s3: AES256."
    )
    noncurrent_version_expiration_days: int = Field(
        90, ge=1, le=3650, description="Days before overwritten model versions are deleted."
    )
    force_destroy: bool = Field(
        False, description="Let `pulumi destroy` empty the bucket. Never allowed in prod."
    )
    protect: bool = Field(False, description="Pulumi-protect the bucket. Required in prod.")
    promotion_readers: list[Annotated[str, Field(pattern=_PROMOTION_READER_ARN)]] = Field(
        default_factory=list,
        description="create: IAM roles (or accounts) of the next stage that promote model "
        "versions out of this bucket: read-only on <prefix>/ in the bucket policy, and "
        "kms:Decrypt through S3 in the key policy.")

    @field_validator("promotion_readers")
    @classmethod
    def _distinct_readers(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"must not repeat a principal, got {value}")
        return value


class ModelRepositoryConfig(_Model):
    """Where the Triton model repository comes from and where it goes in the bucket."""

    path: str = Field("model_repo", pattern=r"^[\w./-]+$",
                      description="Repository folder (relative paths are from the project).")
    prefix: str = Field("models", pattern=r"^[a-z0-9][a-z0-9-]*(/[a-z0-9][a-z0-9-]*)*$",
                        description="Key prefix in the bucket; each model version goes under "
                        "<prefix>/<model version>/<model>/.")

    @model_validator(mode="before")
    @classmethod
    def _no_repository_version(cls, data: Any) -> Any:
        # One version for the whole repository is gone: every model has its own.
        if isinstance(data, Mapping) and "version" in data:
            raise ConfigRuleError([(("version",), "removed: each model has its own version "
                                    "now; pin a model with modelServing.models.<name>.version "
                                    "(python -m tools.promote writes it)")])
        return data


_CONTENT_HASH = r"^[0-9a-f]{20}$"

# Kubernetes quantities, limited to the forms that make sense for a model server's requests.
_CPU = re.compile(r"^(\d+(?:\.\d+)?)(m?)$")
_MEMORY = re.compile(r"^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)$")
_MEMORY_MIB = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "Ti": 1024 ** 2, "k": 1000 / 1024 ** 2,
               "M": 1000 ** 2 / 1024 ** 2, "G": 1000 ** 3 / 1024 ** 2, "T": 1000 ** 4 / 1024 ** 2}


def cpu_millicores(quantity: str) -> float:
    """"2" -> 2000, "1.5" -> 1500, "500m" -> 500 (a quantity `_cpu_quantity` accepted)."""
    number, milli = _CPU.fullmatch(quantity).groups()  # type: ignore[union-attr]
    return float(number) * (1 if milli else 1000)


def memory_mib(quantity: str) -> float:
    """"8Gi" -> 8192, "512Mi" -> 512, "1G" -> 953.67 (a quantity `_memory_quantity` accepted)."""
    number, unit = _MEMORY.fullmatch(quantity).groups()  # type: ignore[union-attr]
    return float(number) * _MEMORY_MIB[unit]


def _cpu_quantity(value: Any) -> Any:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not _CPU.fullmatch(value):
        raise ValueError(f"must be a CPU quantity such as \"2\", \"1.5\" or \"500m\", "
                         f"got {value!r}")
    if cpu_millicores(value) <= 0:
        raise ValueError(f"must be more than 0, got {value!r}")
    return value


def _memory_quantity(value: Any) -> Any:
    if isinstance(value, str) and re.fullmatch(r"\d+(\.\d+)?", value) or (
            isinstance(value, (int, float)) and not isinstance(value, bool)):
        raise ValueError(f"must carry a unit such as Mi or Gi (a bare number is bytes), "
                         f"got {value!r}")
    if not isinstance(value, str) or not _MEMORY.fullmatch(value):
        raise ValueError(f"must be a memory quantity such as \"512Mi\" or \"8Gi\", got {value!r}")
    if memory_mib(value) <= 0:
        raise ValueError(f"must be more than 0, got {value!r}")
    return value


CpuQuantity = Annotated[str, BeforeValidator(_cpu_quantity)]
MemoryQuantity = Annotated[str, BeforeValidator(_memory_quantity)]


class CanaryConfig(_Model):
    """A second version of a model taking a share of its traffic, served by its own
    InferenceService next to the stable one (docs/operations.md, "Canary, promotion, rollback")."""

    version: str | None = Field(None, pattern=_CONTENT_HASH,
                                description="Pin the canary to this model version, served from "
                                "the bucket (not uploaded: it must be there already); default: "
                                "the model's version in the repository folder, uploaded.")
    percent: int = Field(ge=0, le=100, description="Share of requests routed to the canary "
                         "(0 = dark launch).")
    replicas: int = Field(1, ge=1, le=20, description="Canary replicas (its floor); the canary "
                          "is its own InferenceService, `<model>-canary`.")
    max_replicas: int | None = Field(None, ge=1, le=100, description="Above `replicas`, the "
                                     "canary autoscales on its own pods (the model's autoscaler); "
                                     "default: fixed at `replicas`.")

    @model_validator(mode="after")
    def _replica_range(self) -> CanaryConfig:
        if self.max_replicas is not None and self.max_replicas < self.replicas:
            raise ConfigRuleError([(("maxReplicas",), f"must be >= replicas ({self.replicas}), "
                                                      f"got {self.max_replicas}")])
        return self

    @property
    def ceiling(self) -> int:
        return self.max_replicas if self.max_replicas is not None else self.replicas


class ServedModelConfig(_Model):
    """How one model of the repository is served, scaled and watched."""

    version: str | None = Field(None, pattern=_CONTENT_HASH,
                                description="Pin this model to a version (its content hash) "
                                "already in the bucket, promoted or published: served from "
                                "there, never uploaded, checked at `pulumi up`. Default: the "
                                "model's version in the repository folder, uploaded by the "
                                "stack.")
    gpu_pool: str | None = Field(None, description="GPU node group to run on; default: the "
                                 "first of gpuNodeGroups.")
    min_replicas: int = Field(1, ge=0, le=100, description="Replica floor; 0 only where "
                              "allowScaleToZero.")
    max_replicas: int = Field(4, ge=1, le=100, description="Replica ceiling.")
    gpus: int = Field(1, ge=0, le=8, description="GPUs per replica; 0 serves on CPU with the "
                      "model's configs/cpu.pbtxt.")
    cpu: CpuQuantity = Field("2", description="CPU request (and limit) per replica: \"2\", "
                             "\"1.5\" or \"500m\".")
    memory: MemoryQuantity = Field("8Gi", description="Memory request and limit, with its unit "
                                   "(\"8Gi\", \"512Mi\").")
    autoscaler: Literal["keda", "hpa"] = Field(
        "keda", description="keda: Triton's queue backlog from Prometheus; hpa: CPU fallback.")
    target_pending_requests: int = Field(
        4, ge=1, le=1000, description="KEDA: queued requests per replica before scaling out.")
    target_cpu_utilization: int = Field(70, ge=10, le=100,
                                        description="HPA: average CPU utilisation target (%).")
    scale_up_stabilization_seconds: int = Field(0, ge=0, le=3600,
                                                description="Wait before scaling out again.")
    cooldown_seconds: int = Field(300, ge=0, le=3600,
                                  description="Wait before scaling in (scale-down window).")
    polling_seconds: int = Field(15, ge=5, le=300, description="KEDA polling interval (Seldon; "
                                 "KServe's KEDA integration keeps KEDA's default, 30 s).")
    canary: CanaryConfig | None = Field(None, description="Canary version and traffic share.")
    ready_timeout_minutes: int = Field(
        30, ge=1, le=240, description="How long `pulumi up` waits for a new version's replicas "
        "to be Ready (GPU node, image pull, model load) before it fails naming the model; not "
        "for a stable track at minReplicas 0.")
    slo_p95_ms: int = Field(100, ge=1, description="p95 latency SLO; alert above it.")
    max_error_rate: float = Field(0.01, gt=0, lt=1, description="Alert above this failure "
                                  "ratio.")

    @model_validator(mode="after")
    def _rules(self) -> ServedModelConfig:
        problems: list[tuple[tuple[str | int, ...], str]] = []
        if self.max_replicas < self.min_replicas:
            problems.append((("maxReplicas",), "must be >= minReplicas "
                                               f"({self.min_replicas}), got {self.max_replicas}"))
        if self.autoscaler == "hpa" and self.min_replicas < 1:
            problems.append((("minReplicas",), "the hpa autoscaler can't scale to "
                                               "zero; use keda or minReplicas >= 1"))
        if (self.canary is not None and self.canary.version is not None
                and self.canary.version == self.version):
            problems.append((("canary", "version"), "must differ from version"))
        if problems:
            raise ConfigRuleError(problems)
        return self


class SeldonConfig(_Model):
    """Seldon Core v1, the opt-in backend of the original tutorial."""

    version: str = Field(versions.SELDON_LAST_APACHE_VERSION, pattern=r"^\d+\.\d+\.\d+$",
                         description="seldon-core-operator chart version.")
    accept_business_source_license: bool = Field(
        False, description="Required for versions after 1.17.1 (BSL 1.1, not open source).")

    @model_validator(mode="after")
    def _licence(self) -> SeldonConfig:
        newer = tuple(int(p) for p in self.version.split(".")) > tuple(
            int(p) for p in versions.SELDON_LAST_APACHE_VERSION.split("."))
        if newer and not self.accept_business_source_license:
            raise ConfigRuleError([(("version",), f"{self.version} is under the "
                                    "Business Source License 1.1; set "
                                    "acceptBusinessSourceLicense: true to use it, or use "
                                    f"{versions.SELDON_LAST_APACHE_VERSION}")])
        return self


class ModelServingConfig(_Model):
    """Where and how models are served, and who may read the model bucket."""

    namespace: str = Field("models", pattern=_DNS_LABEL, max_length=63,
                           description="Namespace of the model servers.")
    service_account: str = Field("model-server", pattern=_DNS_LABEL, max_length=63,
                                 description="Service account trusted by the model-reader role.")
    backend: Literal["kserve", "seldon", "none"] = Field(
        "kserve", description="Serving backend; none: the platform without models.")
    allow_scale_to_zero: bool = Field(False, description="Let models set minReplicas 0 "
                                      "(never in prod; the first request waits for a GPU node "
                                      "and a model load).")
    seldon: SeldonConfig = Field(default_factory=SeldonConfig,
                                 description="Seldon Core settings (backend seldon).")
    # A DNS-1035 label; the length every generated name allows is checked by `model_names_fit`.
    models: dict[Annotated[str, Field(pattern=r"^[a-z]([-a-z0-9]*[a-z0-9])?$")],
                 ServedModelConfig] = Field(
        default_factory=dict, description="Models to serve, by name; default: every model in "
        "the repository with default settings.")


class PartConfig(_Model):
    """A platform part that can be switched off per stack."""

    enabled: bool = Field(True, description="Install this part.")


class IstioConfig(PartConfig):
    gateway_scheme: Literal["internet-facing", "internal"] = Field(
        "internet-facing", description="Scheme of the ingress gateway's NLB."
    )
    gateway_source_ranges: list[Cidr] = Field(
        default_factory=list,
        description="CIDRs allowed to reach the ingress NLB; empty = anywhere.",
    )
    gateway_min_replicas: int = Field(1, ge=1, le=20, description="Ingress gateway pods (floor).")
    gateway_service_type: Literal["LoadBalancer", "NodePort"] = Field(
        "LoadBalancer", description="LoadBalancer (an NLB on EKS) or NodePort (kind, minikube).")
    gateway_node_port: int | None = Field(None, ge=30000, le=32767,
                                          description="NodePort of the gateway's HTTP port.")
    external_address: str | None = Field(
        None, pattern=r"^[\w.-]+(:\d+)?$",
        description="host[:port] clients use, for the stack outputs; default: the load "
        "balancer's address.")


class KServeConfig(PartConfig):
    ingress_domain: str = Field(
        "example.com", pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)+[a-z]{2,63}$",
        description="Domain of model hosts: <model>-<namespace>.<domain>.",
    )
    triton_image_tag: str = Field(versions.TRITON_IMAGE_TAG, pattern=r"^\d{2}\.\d{2}-py3$",
                                  description="Triton container tag for kserve-tritonserver.")


class AlertsConfig(_Model):
    """Where Alertmanager sends alerts: an SNS topic (through IRSA, no keys), a Slack or webhook
    endpoint (its URL a Pulumi secret, delivered in a Kubernetes Secret), or both."""

    sns_topic: str | None = Field(
        None, pattern=r"^(create|" + _SNS_TOPIC_ARN[1:-1] + r")$",
        description="`create`: an encrypted SNS topic owned by the stack (output alertTopicArn; "
        "subscribe your on-call to it); or the ARN of an existing topic in the stack's account.")
    webhook: Literal["slack", "webhook"] | None = Field(
        None, description="slack: a Slack incoming webhook; webhook: any Alertmanager webhook "
        "receiver. The URL is the secret alertWebhookUrl.")
    slack_channel: str | None = Field(None, pattern=r"^[#@]?[\w.-]{1,80}$",
                                      description="slack: channel override (default: the "
                                      "webhook's own channel).")

    @model_validator(mode="after")
    def _channel(self) -> AlertsConfig:
        if self.slack_channel and self.webhook != "slack":
            raise ConfigRuleError([(("slackChannel",), "only with webhook slack")])
        return self

    @property
    def configured(self) -> bool:
        return bool(self.sns_topic or self.webhook)


class MonitoringConfig(PartConfig):
    retention: str = Field("15d", pattern=r"^\d+(h|d|w|y)$", description="Prometheus retention.")
    prometheus_storage_gib: int = Field(50, ge=10, le=16384,
                                        description="Prometheus volume (gp3).")
    alertmanager: bool = Field(True, description="Run Alertmanager.")
    alerts: AlertsConfig = Field(default_factory=AlertsConfig,
                                 description="Alert receivers; at least one in prod.")
    storage_class: str | None = Field(None, description="Prometheus volume's StorageClass; "
                                      "default: gp3 on EKS, the cluster's default otherwise.")


class ClusterAutoscalerConfig(PartConfig):
    expander: Literal["least-waste", "most-pods", "random"] = Field(
        "least-waste", description="How to pick a node group to grow."
    )
    scale_down_unneeded_time: str = Field("10m", pattern=r"^\d+(s|m|h)$",
                                          description="Idle time before a node is removed.")
    scale_down_utilization_threshold: float = Field(
        0.5, gt=0, le=1, description="CPU/memory requests share below which a node may go."
    )
    scale_down_gpu_utilization_threshold: float = Field(
        0.5, gt=0, le=1, description="GPU requests share below which a GPU node may go."
    )


class PlatformConfig(_Model):
    """The Kubernetes platform layer: each part can be switched off or tuned."""

    high_availability: bool | None = Field(
        None, description="Two+ replicas and PodDisruptionBudgets for controllers; "
        "default: on in prod only."
    )
    cert_manager: PartConfig = Field(default_factory=PartConfig,
                                     description="cert-manager (KServe's webhook certificates).")
    load_balancer_controller: PartConfig = Field(default_factory=PartConfig,
                                                 description="AWS Load Balancer Controller.")
    istio: IstioConfig = Field(default_factory=IstioConfig,
                               description="Istio base, istiod and the ingress gateway.")
    kserve: KServeConfig = Field(default_factory=KServeConfig,
                                 description="KServe in Standard (raw) mode with Triton.")
    keda: PartConfig = Field(default_factory=PartConfig, description="KEDA event autoscaling.")
    monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig,
                                         description="kube-prometheus-stack.")
    nvidia_device_plugin: PartConfig = Field(
        default_factory=PartConfig,
        description="NVIDIA device plugin on AL2023 GPU nodes (Bottlerocket has its own).",
    )
    dcgm_exporter: PartConfig = Field(default_factory=PartConfig,
                                      description="GPU metrics (DCGM) into Prometheus.")
    metrics_server: PartConfig = Field(default_factory=PartConfig,
                                       description="metrics-server (HPA on CPU/memory).")
    cluster_autoscaler: ClusterAutoscalerConfig = Field(
        default_factory=ClusterAutoscalerConfig, description="cluster-autoscaler."
    )
    minio: PartConfig = Field(default_factory=lambda: PartConfig.model_validate({"enabled": False}),
                              description="A MinIO server in the cluster as the S3-compatible "
                              "model store (local stacks).")

    @model_validator(mode="after")
    def _requirements(self) -> PlatformConfig:
        needs = (
            ("kserve", "certManager", self.kserve.enabled and not self.cert_manager.enabled),
            ("kserve", "istio", self.kserve.enabled and not self.istio.enabled),
            ("dcgmExporter", "monitoring",
             self.dcgm_exporter.enabled and not self.monitoring.enabled),
        )
        problems = [((part, "enabled"), f"needs {dependency}.enabled, "
                                        f"which is false")
                    for part, dependency, broken in needs if broken]
        if problems:
            raise ConfigRuleError(problems)
        return self


# ==== GPU capacity engine, GPU node health (issue 14) =========================================
# One block: the `gpuCapacity` section's models here, its cross-section rules in the matching
# block after the other rules. components/karpenter.py, gpu_capacity.py and node_health.py read it.

KARPENTER_CAPACITY_TYPES = {"ON_DEMAND": "on-demand", "SPOT": "spot"}
_KARPENTER_DURATION = r"^([0-9]+(s|m|h))+$"


class KarpenterPoolConfig(_Model):
    """How Karpenter runs one GPU pool (gpuNodeGroups[].name): purchase options, disruption,
    volumes. Instance types, maxSize (the GPU limit), diskSizeGib and amiType come from the pool."""

    capacity_types: list[Literal["spot", "on-demand"]] | None = Field(
        None, min_length=1, max_length=2,
        description="Purchase options in fallback order, e.g. [spot, on-demand]: one weighted "
        "NodePool each, the first weighted highest. Default: the pool's capacityType.")
    consolidation_policy: Literal["WhenEmpty", "WhenEmptyOrUnderutilized"] = Field(
        "WhenEmpty", description="WhenEmpty removes only nodes with no model pods; "
        "WhenEmptyOrUnderutilized also repacks (moving loaded models costs a cold start).")
    consolidate_after: str = Field("5m", pattern=_KARPENTER_DURATION,
                                   description="How long a node stays empty before it goes.")
    disruption_budget: str = Field(
        "1", pattern=r"^((100|[0-9]{1,2})%|[0-9]+)$",
        description="Nodes (or a percentage) Karpenter may disrupt at once, voluntarily.")
    expire_after: str = Field("720h", pattern=rf"{_KARPENTER_DURATION[:-1]}|^Never$",
                              description="Maximum node lifetime (replaced after it), or Never.")
    volume_throughput_mibps: int = Field(
        500, ge=125, le=1000, description="gp3 throughput of the image volume, MiB/s: multi-GB "
        "Triton images pull at the volume's speed.")
    volume_iops: int = Field(6000, ge=3000, le=16000, description="gp3 IOPS of the image volume.")

    @model_validator(mode="after")
    def _gp3_limits(self) -> KarpenterPoolConfig:
        problems: list[Problem] = []
        # gp3: at most 0.25 MiB/s per provisioned IOPS (EC2 User Guide, "General Purpose SSD").
        if self.volume_throughput_mibps > self.volume_iops / 4:
            problems.append((("volumeThroughputMibps",),
                             f"gp3 allows at most volumeIops/4 = {self.volume_iops // 4} MiB/s, "
                             f"got {self.volume_throughput_mibps}"))
        types = self.capacity_types or []
        if len(set(types)) != len(types):
            problems.append((("capacityTypes",), f"must not repeat a capacity type, got {types}"))
        if problems:
            raise ConfigRuleError(problems)
        return self


class KarpenterConfig(_Model):
    """Karpenter, the engine behind GPU pools with engine karpenter."""

    pools: dict[Annotated[str, Field(pattern=_DNS_LABEL)], KarpenterPoolConfig] = Field(
        default_factory=dict, description="Per GPU pool (by name) settings; pools not listed "
        "use the defaults.")

    def pool(self, name: str) -> KarpenterPoolConfig:
        return self.pools.get(name) or KarpenterPoolConfig()


class NodeHealthConfig(_Model):
    """GPU node health: the EKS node monitoring agent and automatic repair."""

    monitoring_agent: bool = Field(True, description="The eks-node-monitoring-agent add-on: "
                                   "node conditions for GPU (Xid, NVLink), kernel, network and "
                                   "storage faults.")
    auto_repair: bool = Field(True, description="Replace nodes whose conditions stay unhealthy "
                              "(managed node groups' nodeRepairConfig; Karpenter's NodeRepair).")


class GpuCapacityConfig(_Model):
    """What launches GPU nodes for the pools of gpuNodeGroups (cluster.mode eks)."""

    engine: Literal["karpenter", "nodeGroups"] = Field(
        "karpenter", description="karpenter: NodePools that launch nodes for pending model pods "
        "(several instance types, capacity-type fallback, disruption budgets); nodeGroups: "
        "managed node groups grown by cluster-autoscaler.")
    karpenter: KarpenterConfig = Field(default_factory=KarpenterConfig,
                                       description="Karpenter settings (engine karpenter).")
    node_health: NodeHealthConfig = Field(default_factory=NodeHealthConfig,
                                          description="GPU node health and repair.")


def karpenter_capacity_types(config: GpuCapacityConfig, pool: GpuNodeGroupConfig) -> list[str]:
    """A pool's Karpenter capacity types in fallback order."""
    configured = config.karpenter.pool(pool.name).capacity_types
    return list(configured) if configured else [KARPENTER_CAPACITY_TYPES[pool.capacity_type]]

# ==== end of the GPU capacity block ============================================================


class StackConfig(_Model):
    """The whole `mlserve:` namespace of a stack."""

    environment: Environment = Field(description="dev, staging, prod or local; prod adds strict "
                                     "rules.")
    region: Annotated[str, AfterValidator(_known_region)] = Field(
        description="AWS region (one where EKS is offered).")
    account_id: str | None = Field(
        None, pattern=r"^\d{12}$",
        description="The AWS account the stack deploys to. Required in prod: the AWS provider "
        "refuses credentials of any other account, and every principal must belong to it.")
    prod_waivers: list[Literal[tuple(baseline.WAIVERS)]] = Field(  # type: ignore[valid-type]
        default_factory=list,
        description="Prod rules waived on purpose: " + "; ".join(
            f"{name}: {why}" for name, why in baseline.WAIVERS.items()) + ".")
    tags: Annotated[dict[Annotated[str, Field(min_length=1, max_length=128)],
                         Annotated[str, Field(max_length=256)]],
                    AfterValidator(_no_reserved_tags)] = Field(
        default_factory=dict, description="Tags for every AWS resource (with mlserve's own)."
    )
    network: NetworkConfig = Field(default_factory=NetworkConfig, description="The VPC.")
    cluster: ClusterConfig = Field(description="The EKS cluster.")
    system_node_group: SystemNodeGroupConfig = Field(
        default_factory=SystemNodeGroupConfig, description="Nodes for controllers."
    )
    gpu_node_groups: list[GpuNodeGroupConfig] = Field(
        default_factory=list, description="GPU node groups for model servers (at least one with "
        "cluster.mode eks)."
    )
    model_bucket: ModelBucketConfig = Field(
        default_factory=ModelBucketConfig, description="Model repository bucket."
    )
    model_serving: ModelServingConfig = Field(
        default_factory=ModelServingConfig, description="Model server identity."
    )
    model_repository: ModelRepositoryConfig = Field(
        default_factory=ModelRepositoryConfig, description="Model repository upload."
    )
    platform: PlatformConfig = Field(default_factory=PlatformConfig,
                                     description="Kubernetes platform parts.")
    gpu_capacity: GpuCapacityConfig = Field(default_factory=GpuCapacityConfig,
                                            description="The engine behind the GPU pools.")
    grafana_admin_password: SecretStr | None = Field(
        None, description="Grafana admin password; set with `--secret`. Default: generated.",
    )
    model_store_access_key_id: SecretStr | None = Field(
        None, description="s3Compatible: access key (`--secret`); default with platform.minio: "
        "generated.")
    model_store_secret_access_key: SecretStr | None = Field(
        None, description="s3Compatible: secret key (`--secret`); default with platform.minio: "
        "generated.")
    alert_webhook_url: Annotated[SecretStr, AfterValidator(_https_secret)] | None = Field(
        None, description="Slack or webhook URL for platform.monitoring.alerts.webhook "
        "(`--secret`).")

    def cluster_name(self, stack: str) -> str:
        return self.cluster.name or f"mlserve-{stack}"

    @property
    def high_availability(self) -> bool:
        configured = self.platform.high_availability
        return self.environment == "prod" if configured is None else configured


# ---- cross-section rules --------------------------------------------------------------------
# A rule reads several sections of a validated StackConfig and yields (key path, message) for
# each problem, the message without the key. Rules run even when other sections are invalid: a
# rule that reads an invalid section is skipped (see `check_rules`), every other rule still
# reports, so one run lists every problem.

StackRule = Callable[[StackConfig], Iterable[Problem]]
RULES: list[StackRule] = []


def rule(func: StackRule) -> StackRule:
    """Register a cross-section rule."""
    RULES.append(func)
    return func


@rule
def unique_pool_names(config: StackConfig) -> Iterator[Problem]:
    names = [g.name for g in config.gpu_node_groups]
    for index, name in enumerate(names):
        if name in names[:index]:
            yield ("gpuNodeGroups", index, "name"), f"must be unique, got {name!r} twice"


@rule
def eks_needs_gpu_pools(config: StackConfig) -> Iterator[Problem]:
    if config.cluster.mode == "eks" and not config.gpu_node_groups:
        yield ("gpuNodeGroups",), "must have at least 1 item(s) with cluster.mode eks"


@rule
def gateway_load_balancer_needs_controller(config: StackConfig) -> Iterator[Problem]:
    istio = config.platform.istio
    if (config.cluster.mode == "eks" and istio.enabled
            and istio.gateway_service_type == "LoadBalancer"
            and not config.platform.load_balancer_controller.enabled):
        # The gateway's NLB comes from the controller.
        yield (("platform", "istio", "enabled"),
               "needs loadBalancerController.enabled, which is false")


@rule
def aws_parts_need_eks(config: StackConfig) -> Iterator[Problem]:
    if config.cluster.mode == "eks":
        return
    for part in ("loadBalancerController", "clusterAutoscaler"):
        if getattr(config.platform, to_snake(part)).enabled:
            yield ("platform", part, "enabled"), "needs cluster.mode eks"
    if config.model_bucket.mode == "create":
        yield (("modelBucket", "mode"),
               "create needs cluster.mode eks; use existing or s3Compatible")


@rule
def bucket_mode_fields(config: StackConfig) -> Iterator[Problem]:
    bucket = config.model_bucket
    if bucket.mode != "create" and not bucket.name:
        yield ("modelBucket", "name"), f"required with mode {bucket.mode}"
    if bucket.mode == "existing" and not bucket.reader_role_arn:
        yield (("modelBucket", "readerRoleArn"),
               "required with mode existing (IRSA for the model pods)")
    if bucket.mode == "s3Compatible" and not bucket.endpoint:
        yield ("modelBucket", "endpoint"), "required with mode s3Compatible"
    if bucket.mode == "create":
        for field, value in (("name", bucket.name), ("readerRoleArn", bucket.reader_role_arn),
                             ("endpoint", bucket.endpoint),
                             ("clusterEndpoint", bucket.cluster_endpoint)):
            if value:
                yield (("modelBucket", field),
                       "not with mode create (the stack names and owns the bucket)")


@rule
def promotion_readers_need_own_bucket(config: StackConfig) -> Iterator[Problem]:
    bucket = config.model_bucket
    if bucket.promotion_readers and bucket.mode != "create":
        yield (("modelBucket", "promotionReaders"), "only with mode create (grant a bucket the "
               "stack doesn't own in its own policy)")


@rule
def store_credentials(config: StackConfig) -> Iterator[Problem]:
    keys = [config.model_store_access_key_id, config.model_store_secret_access_key]
    mode = config.model_bucket.mode
    if mode == "s3Compatible" and not all(keys) and not config.platform.minio.enabled:
        yield (("modelStoreAccessKeyId",), "s3Compatible needs modelStoreAccessKeyId and "
               "modelStoreSecretAccessKey (or platform.minio)")
    if any(keys) and mode != "s3Compatible":
        yield (("modelStoreAccessKeyId",),
               "keys only with modelBucket.mode s3Compatible (S3 is read through IRSA)")
    elif any(keys) and not all(keys):
        yield (("modelStoreAccessKeyId",),
               "set both modelStoreAccessKeyId and modelStoreSecretAccessKey, or neither")


@rule
def minio_placement(config: StackConfig) -> Iterator[Problem]:
    if not config.platform.minio.enabled:
        return
    if config.environment == "prod":
        yield (("platform", "minio", "enabled"),
               "a single-replica MinIO is not a prod model store")
    if config.model_bucket.mode != "s3Compatible":
        yield ("platform", "minio", "enabled"), "needs modelBucket.mode s3Compatible"


@rule
def gateway_node_port_needs_node_port_service(config: StackConfig) -> Iterator[Problem]:
    istio = config.platform.istio
    if istio.gateway_node_port and istio.gateway_service_type != "NodePort":
        yield ("platform", "istio", "gatewayNodePort"), "needs gatewayServiceType NodePort"


@rule
def backend_needs_its_platform(config: StackConfig) -> Iterator[Problem]:
    serving, platform = config.model_serving, config.platform
    if serving.backend == "seldon" and not (platform.istio.enabled and platform.keda.enabled
                                            and platform.kserve.enabled):
        yield (("modelServing", "backend"), "seldon needs platform.istio, platform.keda and "
               "platform.kserve enabled (the serving platform owns the meshed model namespace)")
    if serving.backend == "seldon" and config.model_bucket.mode == "s3Compatible":
        yield (("modelServing", "backend"),
               "seldon reads S3 through IRSA only; use kserve with an S3-compatible store")
    if serving.backend == "kserve" and not platform.kserve.enabled:
        yield ("modelServing", "backend"), "kserve needs platform.kserve.enabled"


def served_models(config: StackConfig) -> Iterator[tuple[Loc, str, ServedModelConfig]]:
    """(key path, name, settings) of every model listed under modelServing.models that will be
    served (none with backend none)."""
    serving = config.model_serving
    if serving.backend == "none":
        return
    for name, model in serving.models.items():
        yield ("modelServing", "models", name), name, model


@rule
def model_placement(config: StackConfig) -> Iterator[Problem]:
    pools = {g.name: g for g in config.gpu_node_groups}
    default_pool = config.gpu_node_groups[0].name if pools else None
    for where, _, model in served_models(config):
        if model.gpu_pool is not None and model.gpu_pool not in pools:
            yield ((*where, "gpuPool"),
                   f"must name one of gpuNodeGroups {sorted(pools)}, got {model.gpu_pool!r}")
        if model.gpus == 0 and model.gpu_pool is not None:
            yield (*where, "gpuPool"), "not with gpus 0 (CPU)"
        if model.gpus > 0 and not pools:
            yield (*where, "gpus"), "no gpuNodeGroups to run on; set gpus 0 to serve on CPU"
        pool = pools.get(model.gpu_pool or default_pool or "")
        if pool is not None and model.gpus > pool.gpus_per_node:
            yield ((*where, "gpus"),
                   f"pool {pool.name!r} nodes have {pool.gpus_per_node} GPU(s), got {model.gpus}")


@rule
def model_replica_floor(config: StackConfig) -> Iterator[Problem]:
    for where, _, model in served_models(config):
        if model.min_replicas == 0 and not config.model_serving.allow_scale_to_zero:
            yield (*where, "minReplicas"), "0 needs modelServing.allowScaleToZero"
        floor = baseline.PROD_MIN_MODEL_REPLICAS
        if config.environment == "prod" and model.min_replicas < floor:
            yield (*where, "minReplicas"), f"must be >= {floor} in prod, got {model.min_replicas}"


@rule
def model_canary(config: StackConfig) -> Iterator[Problem]:
    for where, _, model in served_models(config):
        if model.canary is None:
            continue
        if config.model_serving.backend != "kserve":
            yield (*where, "canary"), "needs backend kserve"


@rule
def model_host_fits(config: StackConfig) -> Iterator[Problem]:
    for where, name, _ in served_models(config):
        if len(f"{name}-{config.model_serving.namespace}") > 63:
            yield (where, "<model>-<namespace> is the host's first label and must be at most "
                   "63 characters")


@rule
def model_names_fit(config: StackConfig) -> Iterator[Problem]:
    """Every name the backend's controller and KEDA derive from a model's fits its limit
    (components/naming.py)."""
    backend = config.model_serving.backend
    for where, name, _ in served_models(config):
        if problems := naming.name_problems(name, backend):
            yield (where, f"model names may have at most {naming.longest_model_name(backend)} "
                   f"characters on {backend} ({len(name)} here): " + "; ".join(problems))


HPA_DEFAULT_SCALE_DOWN_SECONDS = 300
"""The HPA's own scale-down stabilization window (kubernetes pkg/controller/podautoscaler,
`--horizontal-pod-autoscaler-downscale-stabilization`); its scale-up window is 0."""


@rule
def seldon_hpa_has_no_behaviour(config: StackConfig) -> Iterator[Problem]:
    """Seldon Core 1.17.1's `hpaSpec` carries min, max and metrics only (seldondeployment_types.go
    SeldonHpaSpec; the operator copies nothing else, seldondeployment_controller.go createHpa):
    scaling windows other than the HPA's own defaults could not be honoured."""
    if config.model_serving.backend != "seldon":
        return
    for where, _, model in served_models(config):
        if model.autoscaler != "hpa":
            continue
        for key, value, default in (
                ("cooldownSeconds", model.cooldown_seconds, HPA_DEFAULT_SCALE_DOWN_SECONDS),
                ("scaleUpStabilizationSeconds", model.scale_up_stabilization_seconds, 0)):
            if value != default:
                yield ((*where, key), f"must be {default} (the HPA's default) with backend "
                       f"seldon and autoscaler hpa: Seldon Core 1.17.1's hpaSpec has no scaling "
                       f"behaviour to carry it; use autoscaler keda, got {value}")


# Namespaces the cluster or the platform itself owns: the stack creates the model namespace (with
# sidecar injection) and its NetworkPolicy, which must not land in any of these.
RESERVED_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease", "istio-system",
                       "kserve", "keda", "monitoring", "cert-manager", "nvidia", "minio",
                       "seldon-system")


@rule
def model_namespace_not_reserved(config: StackConfig) -> Iterator[Problem]:
    namespace = config.model_serving.namespace
    if namespace in RESERVED_NAMESPACES or namespace.startswith("kube-"):
        yield (("modelServing", "namespace"), f"{namespace!r} belongs to the cluster or the "
               "platform; models need a namespace of their own")


def _model_pool(config: StackConfig, model: ServedModelConfig) -> GpuNodeGroupConfig | None:
    """The GPU pool a model runs on (None: on CPU, the system nodes)."""
    if model.gpus == 0 or not config.gpu_node_groups:
        return None
    name = model.gpu_pool or config.gpu_node_groups[0].name
    return next((g for g in config.gpu_node_groups if g.name == name), None)


def pod_requests(model: ServedModelConfig, backend: str = "kserve") -> tuple[float, float]:
    """(CPU millicores, memory MiB) one model pod requests, Istio's sidecar included.

    On Seldon the storage initializer is an init container with requests of its own (set in the
    operator's chart values from versions.SELDON_INITIALIZER_REQUESTS): the scheduler counts the
    larger of it and the serving container, next to the sidecar that runs beside both. There is
    no executor container (the predictor runs with `seldon.io/no-engine`)."""
    sidecar_cpu, sidecar_memory = versions.SIDECAR_REQUESTS
    cpu, memory = cpu_millicores(model.cpu), memory_mib(model.memory)
    if backend == "seldon":
        init_cpu, init_memory = versions.SELDON_INITIALIZER_REQUESTS
        cpu, memory = max(cpu, init_cpu), max(memory, init_memory)
    return cpu + sidecar_cpu, memory + sidecar_memory


def node_room(instance_type: str) -> tuple[int, int] | None:
    """(CPU millicores, memory MiB) a node leaves for model pods, or None if not in the facts
    table (components/versions.py)."""
    facts = versions.INSTANCE_FACTS.get(instance_type)
    if facts is None:
        return None
    cpu, memory = versions.DAEMONSET_ALLOWANCE
    return facts.allocatable_cpu_millicores - cpu, facts.allocatable_memory_mib - memory


def replicas_per_node(model: ServedModelConfig, instance_types: Sequence[str],
                      backend: str = "kserve") -> int | None:
    """How many replicas of `model` the smallest of `instance_types` holds (None: unknown)."""
    rooms = [node_room(t) for t in instance_types]
    if not rooms or any(r is None for r in rooms):
        return None
    cpu, memory = pod_requests(model, backend)
    fits = [int(room_cpu // cpu) for room_cpu, _ in rooms] + \
        [int(room_memory // memory) for _, room_memory in rooms]  # type: ignore[misc]
    if model.gpus:
        fits += [versions.INSTANCE_FACTS[t].gpus // model.gpus for t in instance_types]
    return min(fits)


@rule
def model_fits_its_nodes(config: StackConfig) -> Iterator[Problem]:
    """One replica's requests fit the allocatable of the smallest instance type it may land on:
    its GPU pool, or (gpus 0, on the stack's own EKS) the system node group."""
    for where, _, model in served_models(config):
        pool = _model_pool(config, model)
        if pool is not None:
            types, what = pool.instance_types, f"pool {pool.name!r}"
        elif model.gpus == 0 and config.cluster.mode == "eks":
            types, what = config.system_node_group.instance_types, "the system node group"
        else:
            continue
        rooms = {t: room for t in types if (room := node_room(t)) is not None}
        if not rooms:
            continue
        cpu, memory = pod_requests(model, config.model_serving.backend)
        # The smallest node for each resource: the autoscaler may add any type of the pool.
        smallest_cpu = min(rooms, key=lambda t: rooms[t][0])
        smallest_memory = min(rooms, key=lambda t: rooms[t][1])
        if cpu > rooms[smallest_cpu][0]:
            yield ((*where, "cpu"), f"{model.cpu} (+{versions.SIDECAR_REQUESTS[0]}m for "
                   f"Istio's sidecar) doesn't fit a {smallest_cpu} of {what}: "
                   f"{rooms[smallest_cpu][0]}m is left for models")
        if memory > rooms[smallest_memory][1]:
            yield ((*where, "memory"), f"{model.memory} (+{versions.SIDECAR_REQUESTS[1]}Mi "
                   f"for Istio's sidecar) doesn't fit a {smallest_memory} of {what}: "
                   f"{rooms[smallest_memory][1]}Mi is left for models")


def rollout_replicas(model: ServedModelConfig) -> int:
    """Replicas a model's pool must hold during a rollout: each track's floor plus the one extra
    replica a rolling update with maxUnavailable 0 starts before it stops an old one. One spare
    is enough for both tracks: whichever surge pod is placed first completes its step and frees
    a replica for the other. Seldon Core's Deployments roll the same way (the operator sets
    `maxUnavailable` to an int-or-string whose type is left at int 0, and maxSurge defaults to
    25 %, at least one pod: seldondeployment_controller.go:998); a second surge pod, above four
    replicas, waits Pending for the slot the first one frees."""
    return model.min_replicas + (model.canary.replicas if model.canary else 0) + 1


@rule
def pools_hold_model_floors(config: StackConfig) -> Iterator[Problem]:
    """A pool's maxSize nodes hold the floors of every model on it, plus one surge replica per
    model, or rollouts stall with the new pods Pending (and minReplicas is never reached)."""
    on_pool: dict[str, list[tuple[Loc, str, ServedModelConfig, int]]] = {}
    for where, name, model in served_models(config):
        pool = _model_pool(config, model)
        per_node = (replicas_per_node(model, pool.instance_types, config.model_serving.backend)
                    if pool else None)
        if pool is not None and per_node:
            on_pool.setdefault(pool.name, []).append((where, name, model, per_node))
    for index, pool in enumerate(config.gpu_node_groups):
        models = on_pool.get(pool.name, [])
        nodes = sum(rollout_replicas(model) / per_node for _, _, model, per_node in models)
        if not models or nodes <= pool.max_size:
            continue
        if len(models) == 1:
            where, name, model, per_node = models[0]
            yield ((*where, "minReplicas"),
                   f"{rollout_replicas(model)} replica(s) are needed during a rollout (the "
                   "floor of each track plus one new replica before an old one stops), pool "
                   f"{pool.name!r} holds {per_node * pool.max_size} ({per_node} per node, "
                   f"maxSize {pool.max_size})")
        else:
            detail = ", ".join(f"{name}: {rollout_replicas(model)} replica(s), {per_node} per "
                               f"node" for _, name, model, per_node in models)
            yield (("gpuNodeGroups", index, "maxSize"),
                   f"must be >= {math.ceil(nodes)}: the models on pool {pool.name!r} need that "
                   f"many nodes during a rollout (the floor of each track plus one new replica "
                   f"per model; "
                   f"{detail}), got {pool.max_size}")


@rule
def gpu_pools_have_a_device_plugin(config: StackConfig) -> Iterator[Problem]:
    """Nodes advertise nvidia.com/gpu only through a device plugin: the stack installs NVIDIA's
    on AL2023 nodes; Bottlerocket's NVIDIA AMI ships one. (Checked while models are served: the
    platform alone, backend none, may leave GPUs to the cluster's own owners.)"""
    if (config.cluster.mode != "eks" or config.platform.nvidia_device_plugin.enabled
            or config.model_serving.backend == "none"):
        return
    for index, pool in enumerate(config.gpu_node_groups):
        if pool.ami_type.startswith("AL2023"):
            yield (("gpuNodeGroups", index, "amiType"),
                   f"{pool.ami_type} needs platform.nvidiaDevicePlugin.enabled (the AMI has no "
                   "device plugin, so no pod could get a GPU); or use BOTTLEROCKET_x86_64_NVIDIA")


@rule
def empty_pools_need_an_autoscaler(config: StackConfig) -> Iterator[Problem]:
    """Without cluster-autoscaler a pool keeps its desiredSize: at 0 it never gets a node.
    (Checked while models are served, like the device plugin.)"""
    if (config.cluster.mode != "eks" or config.platform.cluster_autoscaler.enabled
            or config.model_serving.backend == "none"
            or config.gpu_capacity.engine == "karpenter"):  # Karpenter launches them
        return
    for index, pool in enumerate(config.gpu_node_groups):
        if not (pool.desired_size if pool.desired_size is not None else pool.min_size):
            yield (("gpuNodeGroups", index, "minSize"),
                   "0 (with no desiredSize) needs platform.clusterAutoscaler.enabled: nothing "
                   "else would ever add a node, so no model could run on the pool")


@rule
def model_autoscaler_parts(config: StackConfig) -> Iterator[Problem]:
    platform = config.platform
    for where, _, model in served_models(config):
        if model.autoscaler == "keda" and not (platform.keda.enabled
                                               and platform.monitoring.enabled):
            yield ((*where, "autoscaler"),
                   "keda needs platform.keda and platform.monitoring enabled")
        if (model.autoscaler == "hpa" and config.cluster.mode == "eks"
                and not platform.metrics_server.enabled):
            yield ((*where, "autoscaler"), "hpa scales on CPU and needs "
                   "platform.metricsServer enabled on the stack's cluster")


@rule
def prod_keeps_models_warm(config: StackConfig) -> Iterator[Problem]:
    if config.environment == "prod" and config.model_serving.allow_scale_to_zero:
        yield ("modelServing", "allowScaleToZero"), "must be false in prod"


@rule
def prod_bucket_kept(config: StackConfig) -> Iterator[Problem]:
    if config.environment != "prod":
        return
    bucket = config.model_bucket
    if not bucket.protect and bucket.mode == "create":
        yield ("modelBucket", "protect"), "must be true in prod, got false"
    if bucket.force_destroy:
        yield ("modelBucket", "forceDestroy"), "must be false in prod, got true"


# ---- prod hardening: the same baseline the policy pack enforces (policy/baseline.py) ----------

def _prod(config: StackConfig) -> bool:
    return config.environment == "prod"


def _prod_on_eks(config: StackConfig) -> bool:
    """Prod, with AWS resources of its own (an existing cluster brings its own)."""
    return _prod(config) and config.cluster.mode == "eks"


def _waived(config: StackConfig, waiver: str) -> bool:
    return waiver in config.prod_waivers


@rule
def public_endpoint_restricted(config: StackConfig) -> Iterator[Problem]:
    cidrs = config.cluster.public_access_cidrs
    if not cidrs or config.cluster.mode != "eks" or baseline.non_public(cidrs):
        return  # private endpoint only; private CIDRs are the cluster section's own error
    if problem := baseline.public_endpoint_problem(list(cidrs), _prod(config)):
        yield ("cluster", "publicAccessCidrs"), problem


@rule
def prod_deletion_protection(config: StackConfig) -> Iterator[Problem]:
    if _prod_on_eks(config) and not config.cluster.deletion_protection:
        yield ("cluster", "deletionProtection"), "must be true in prod, got false"


@rule
def prod_audit_log_retention(config: StackConfig) -> Iterator[Problem]:
    floor = baseline.PROD_MIN_AUDIT_LOG_RETENTION_DAYS
    days = config.cluster.log_retention_days
    if _prod_on_eks(config) and days < floor:
        yield ("cluster", "logRetentionDays"), f"must be >= {floor} in prod (audit trail), got {days}"


@rule
def prod_flow_logs(config: StackConfig) -> Iterator[Problem]:
    network = config.network
    if not _prod_on_eks(config) or network.existing_vpc is not None:
        return
    floor = baseline.PROD_MIN_FLOW_LOG_RETENTION_DAYS
    days = network.flow_log_retention_days
    if days == 0:
        yield ("network", "flowLogRetentionDays"), "0 turns flow logs off, not allowed in prod"
    elif days < floor:
        yield ("network", "flowLogRetentionDays"), f"must be >= {floor} in prod, got {days}"


@rule
def prod_nat_per_az(config: StackConfig) -> Iterator[Problem]:
    network = config.network
    if (_prod_on_eks(config) and network.existing_vpc is None
            and network.nat_gateways == "single" and not _waived(config, "singleNatGateway")):
        yield (("network", "natGateways"), "must be perAz in prod (or waive it: prodWaivers: "
               "[singleNatGateway])")


@rule
def prod_high_availability(config: StackConfig) -> Iterator[Problem]:
    if _prod(config) and config.platform.high_availability is False:
        yield ("platform", "highAvailability"), "must be true (or unset) in prod, got false"


@rule
def prod_system_nodes_spread(config: StackConfig) -> Iterator[Problem]:
    floor = baseline.PROD_MIN_SYSTEM_NODES
    size = config.system_node_group.min_size
    if _prod_on_eks(config) and size < floor:
        yield (("systemNodeGroup", "minSize"), f"must be >= {floor} in prod (two controller "
               f"replicas on one node survive nothing), got {size}")


def model_pools(config: StackConfig) -> set[str]:
    """GPU pools that serve models: the ones models name, or the first pool by default."""
    if config.model_serving.backend == "none" or not config.gpu_node_groups:
        return set()
    default = config.gpu_node_groups[0].name
    if not config.model_serving.models:
        return {default}  # every model of the repository, on the default pool
    return {model.gpu_pool or default for _, _, model in served_models(config) if model.gpus}


@rule
def prod_model_capacity_on_demand(config: StackConfig) -> Iterator[Problem]:
    if not _prod(config) or _waived(config, "spotModelCapacity"):
        return
    serving = model_pools(config)
    for index, group in enumerate(config.gpu_node_groups):
        if group.capacity_type == "SPOT" and group.name in serving:
            yield (("gpuNodeGroups", index, "capacityType"),
                   f"pool {group.name!r} serves models: must be ON_DEMAND in prod (or waive it: "
                   "prodWaivers: [spotModelCapacity])")


@rule
def waivers_only_in_prod(config: StackConfig) -> Iterator[Problem]:
    if config.prod_waivers and not _prod(config):
        yield ("prodWaivers",), f"only applies to environment prod, got {config.environment!r}"


@rule
def prod_alerts_reach_someone(config: StackConfig) -> Iterator[Problem]:
    monitoring = config.platform.monitoring
    if not _prod(config):
        return
    if not monitoring.enabled:
        yield ("platform", "monitoring", "enabled"), "must be true in prod (alerts)"
    elif not monitoring.alertmanager:
        yield ("platform", "monitoring", "alertmanager"), "must be true in prod"
    elif not monitoring.alerts.configured:
        yield (("platform", "monitoring", "alerts"), "must name a receiver in prod (snsTopic "
               "and/or webhook): Alertmanager's default receiver notifies nobody")


@rule
def alert_receivers_have_what_they_need(config: StackConfig) -> Iterator[Problem]:
    monitoring = config.platform.monitoring
    alerts = monitoring.alerts
    where = ("platform", "monitoring", "alerts")
    if alerts.configured and not (monitoring.enabled and monitoring.alertmanager):
        yield where, "needs platform.monitoring.enabled and alertmanager"
    if alerts.sns_topic and config.cluster.mode != "eks":
        yield (*where, "snsTopic"), "needs cluster.mode eks (Alertmanager publishes through IRSA)"
    if alerts.webhook and config.alert_webhook_url is None:
        yield (*where, "webhook"), "needs the secret alertWebhookUrl"
    if config.alert_webhook_url is not None and not alerts.webhook:
        yield ("alertWebhookUrl",), "set only with platform.monitoring.alerts.webhook"


# ---- facts: partitions, accounts, zones ----------------------------------------------------------

def _principals(config: StackConfig) -> Iterator[tuple[Loc, str]]:
    """Every ARN the stack is given, with its key."""
    cluster = config.cluster
    for key, arns in (("adminPrincipalArns", cluster.admin_principal_arns),
                      ("previewPrincipalArns", cluster.preview_principal_arns)):
        for index, arn in enumerate(arns):
            yield ("cluster", key, index), arn
    if config.model_bucket.reader_role_arn:
        yield ("modelBucket", "readerRoleArn"), config.model_bucket.reader_role_arn
    topic = config.platform.monitoring.alerts.sns_topic
    if topic and topic != "create":
        yield ("platform", "monitoring", "alerts", "snsTopic"), topic


def _arn_parts(arn: str) -> tuple[str, str]:
    """(partition, account) of an ARN."""
    parts = arn.split(":")
    return parts[1], parts[4]


@rule
def principals_in_the_regions_partition(config: StackConfig) -> Iterator[Problem]:
    partition = aws_facts.region_partition(config.region)
    for where, arn in _principals(config):
        if _arn_parts(arn)[0] != partition:
            yield (where, f"must be in partition {partition!r} of region {config.region}, got "
                          f"{arn!r}")


@rule
def promotion_readers_in_the_regions_partition(config: StackConfig) -> Iterator[Problem]:
    """Promotion readers are other accounts' principals by design, but a bucket policy can only
    name principals of its own partition."""
    partition = aws_facts.region_partition(config.region)
    for index, arn in enumerate(config.model_bucket.promotion_readers):
        if _arn_parts(arn)[0] != partition:
            yield (("modelBucket", "promotionReaders", index),
                   f"must be in partition {partition!r} of region {config.region}, got {arn!r}")


@rule
def principals_in_the_stacks_account(config: StackConfig) -> Iterator[Problem]:
    account = config.account_id
    principals = list(_principals(config))
    if account is None:
        accounts = {_arn_parts(arn)[1] for _, arn in principals}
        if len(accounts) > 1:
            yield (("accountId",), f"the stack's principals span accounts {sorted(accounts)}: "
                   "set accountId to the stack's own")
        return
    for where, arn in principals:
        if _arn_parts(arn)[1] != account:
            yield where, f"must be in the stack's account {account}, got {arn!r}"


@rule
def prod_account_pinned(config: StackConfig) -> Iterator[Problem]:
    if _prod_on_eks(config) and config.account_id is None:
        yield (("accountId",), "is required in prod: the AWS provider then refuses credentials "
               "of any other account")


@rule
def availability_zones_in_the_region(config: StackConfig) -> Iterator[Problem]:
    for index, zone in enumerate(config.network.availability_zones or []):
        if not re.fullmatch(rf"{re.escape(config.region)}[a-z]", zone):
            yield (("network", "availabilityZones", index),
                   f"must be a standard AZ of {config.region} (like {config.region}a), got "
                   f"{zone!r}")


# ==== GPU capacity rules (issue 14; the models are in the GPU capacity block above) ==========

def _karpenter(config: StackConfig) -> bool:
    return config.cluster.mode == "eks" and config.gpu_capacity.engine == "karpenter"


@rule
def karpenter_pools_are_gpu_pools(config: StackConfig) -> Iterator[Problem]:
    names = [g.name for g in config.gpu_node_groups]
    for name in config.gpu_capacity.karpenter.pools:
        if name not in names:
            yield (("gpuCapacity", "karpenter", "pools", name),
                   f"must name one of gpuNodeGroups {names}")


@rule
def karpenter_pools_start_empty(config: StackConfig) -> Iterator[Problem]:
    """Karpenter launches nodes for pending pods and keeps none of its own: a node count would
    be ignored, and a config that can't be honoured is refused. Models' minReplicas keep nodes."""
    if not _karpenter(config):
        return
    for index, pool in enumerate(config.gpu_node_groups):
        for key, value in (("minSize", pool.min_size), ("desiredSize", pool.desired_size)):
            if value:
                yield (("gpuNodeGroups", index, key),
                       f"must be 0 with gpuCapacity.engine karpenter (it launches nodes for "
                       f"pending model pods; models' minReplicas keep nodes up), got {value}; "
                       f"or use engine nodeGroups")


@rule
def prod_karpenter_capacity_on_demand(config: StackConfig) -> Iterator[Problem]:
    if not _prod(config) or not _karpenter(config) or _waived(config, "spotModelCapacity"):
        return
    serving = model_pools(config)
    for pool in config.gpu_node_groups:
        if pool.name in serving and "spot" in (config.gpu_capacity.karpenter.pool(pool.name)
                                               .capacity_types or []):
            yield (("gpuCapacity", "karpenter", "pools", pool.name, "capacityTypes"),
                   f"pool {pool.name!r} serves models: spot is not allowed in prod (or waive "
                   "it: prodWaivers: [spotModelCapacity])")

# ==== end of the GPU capacity rules ===========================================================


class SectionUnavailable(Exception):
    """A rule read a section of the stack configuration that failed validation."""


class _InvalidSection:
    """Stands in for a section that failed validation: any use of it skips the rule."""

    __slots__ = ("key",)

    def __init__(self, key: str):
        object.__setattr__(self, "key", key)

    def _refuse(self, *_: Any, **__: Any) -> Any:
        raise SectionUnavailable(self.key)

    __getattr__ = __iter__ = __len__ = __bool__ = __contains__ = __getitem__ = _refuse
    __eq__ = __lt__ = __gt__ = __hash__ = __str__ = __format__ = _refuse  # type: ignore[assignment]


def is_valid(section: Any) -> bool:
    """False for the stand-in of a section that failed validation."""
    return not isinstance(section, _InvalidSection)


def check_rules(config: StackConfig) -> list[Problem]:
    """Every cross-section problem; rules that need an invalid section are skipped."""
    problems: list[Problem] = []
    for check in RULES:
        try:
            problems += list(check(config))
        except SectionUnavailable:
            continue
    return problems


# ---- reading and reporting ----------------------------------------------------------------------


def _key_path(loc: Sequence[str | int]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _model_at(loc: Sequence[str | int]) -> type[BaseModel] | None:
    """The model class that owns the key at `loc`, to list the keys it allows."""
    model: Any = StackConfig
    for part in loc:
        if isinstance(part, int):
            continue
        field = next((f for n, f in model.model_fields.items() if to_camel(n) == part), None)
        if field is None:
            return None
        model = _inner_model(field.annotation)
        if model is None:
            return None
    return model


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        if (found := _inner_model(arg)) is not None:
            return found
    return None


def _describe(error: Mapping[str, Any]) -> list[Problem]:
    """(loc, message) pairs for one pydantic error, in the project's wording."""
    loc = tuple(error["loc"])
    ctx = error.get("ctx") or {}
    got = error.get("input")
    kind = error["type"]
    cause = ctx.get("error")
    if isinstance(cause, ConfigRuleError):
        return [(loc + sub, message) for sub, message in cause.problems]
    if kind == "extra_forbidden":
        owner = _model_at(loc[:-1])
        allowed = ", ".join(sorted(to_camel(n) for n in owner.model_fields)) if owner else "?"
        return [(loc, f"unknown key; allowed keys here: {allowed}")]
    messages = {
        "missing": "is required",
        "greater_than_equal": f"must be >= {ctx.get('ge')}, got {got!r}",
        "less_than_equal": f"must be <= {ctx.get('le')}, got {got!r}",
        "literal_error": f"must be {ctx.get('expected')}, got {got!r}",
        "string_pattern_mismatch": f"must match {ctx.get('pattern')}, got {got!r}",
        "too_short": f"must have at least {ctx.get('min_length')} item(s), got {got!r}",
        "string_too_long": f"must be at most {ctx.get('max_length')} characters, got {got!r}",
        "int_parsing": f"must be an integer, got {got!r}",
        "int_type": f"must be an integer, got {got!r}",
        "bool_parsing": f"must be true or false, got {got!r}",
        "bool_type": f"must be true or false, got {got!r}",
        "string_type": f"must be a string, got {got!r}",
        "list_type": f"must be a list, got {got!r}",
        "dict_type": f"must be a mapping, got {got!r}",
        "model_type": f"must be a mapping of keys, got {got!r}",
        "value_error": str(cause) if cause is not None else error["msg"],
    }
    return [(loc, messages.get(kind, f"{error['msg'][0].lower()}{error['msg'][1:]}, got {got!r}"))]


SECRET_KEYS = ("grafanaAdminPassword", "modelStoreAccessKeyId", "modelStoreSecretAccessKey",
               "alertWebhookUrl")


@cache
def _section_adapter(name: str) -> TypeAdapter[Any]:
    field = StackConfig.model_fields[name]
    # The field's type with its constraints (pattern, lengths), without its alias.
    return TypeAdapter(Annotated[(field.annotation, *field.metadata)]
                       if field.metadata else field.annotation)


def validate_sections(raw: Mapping[str, Any]) -> tuple[StackConfig, list[Problem]]:
    """Each top-level section validated on its own, so one bad section hides nothing else.

    Returns a StackConfig in which every invalid section is a stand-in that makes the rules
    reading it skip (see `check_rules`), and the problems found in the sections.
    """
    problems: list[Problem] = []
    aliases = {to_camel(name): name for name in StackConfig.model_fields}
    values: dict[str, Any] = {}
    for alias, name in aliases.items():
        field = StackConfig.model_fields[name]
        if alias not in raw:
            if field.is_required():
                problems.append(((alias,), "is required"))
                values[name] = _InvalidSection(alias)
            else:
                values[name] = field.get_default(call_default_factory=True)
            continue
        try:
            values[name] = _section_adapter(name).validate_python(raw[alias])
        except ValidationError as exc:
            problems += [problem for error in exc.errors(include_url=False)
                         for problem in _describe({**error, "loc": (alias, *error["loc"])})]
            values[name] = _InvalidSection(alias)
    allowed = ", ".join(sorted(aliases))
    problems += [((key,), f"unknown key; allowed keys here: {allowed}")
                 for key in raw if key not in aliases]
    return StackConfig.model_construct(**values), problems


def check(raw: Mapping[str, Any], secret_keys: Sequence[str] = (),
          file_problems: Sequence[str] = ()) -> tuple[StackConfig, list[str]]:
    """Validate the raw `mlserve:` values (keys without the namespace): the StackConfig (invalid
    sections stand in as `_InvalidSection`) and every problem of every section and every
    cross-section rule, rendered `mlserve:<key>: <message>`, after `file_problems` (found in the
    stack file itself, e.g. keys listed twice).

    `secret_keys` are the keys the engine holds encrypted; a secret stored in plain text in a
    stack file is an error.
    """
    problems: list[Problem] = [
        ((key,), "must be set with `pulumi config set --secret`, it is stored in plain text")
        for key in SECRET_KEYS if key in raw and key not in secret_keys]
    config, section_problems = validate_sections(raw)
    problems += section_problems + check_rules(config)
    return config, [*file_problems, *(render(loc, message) for loc, message in problems)]


def render(loc: Sequence[str | int], message: str) -> str:
    return f"{NAMESPACE}:{_key_path(loc)}: {message}"


def parse(raw: Mapping[str, Any], secret_keys: Sequence[str] = (),
          file_problems: Sequence[str] = ()) -> StackConfig:
    """Validate the raw `mlserve:` values into a StackConfig, or raise one ConfigError listing
    every problem."""
    config, problems = check(raw, secret_keys, file_problems)
    if problems:
        raise ConfigError(problems)
    return config


def _decode(value: Any) -> Any:
    # The engine passes every value as a string; structured values are JSON. Scalars stay strings
    # (so "1.30" is not turned into 1.3) and pydantic's lax mode converts "3" or "true" by field.
    if isinstance(value, str) and value[:1] in ("{", "["):
        return json.loads(value)
    return value


def raw_project_config() -> dict[str, Any]:
    """Every `mlserve:*` value the engine gave this program, including keys nobody declared."""
    from pulumi.runtime import config as runtime_config

    merged = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    prefix = f"{NAMESPACE}:"
    return {k[len(prefix):]: _decode(v) for k, v in sorted(merged.items()) if k.startswith(prefix)}


def secret_project_keys() -> list[str]:
    """The keys of SECRET_KEYS that the engine reports as secret (encrypted in the stack file)."""
    from pulumi.runtime import config as runtime_config

    from_env = set(runtime_config.get_config_secret_keys_env())
    return [k for k in SECRET_KEYS if runtime_config.is_config_secret(f"{NAMESPACE}:{k}")
            or f"{NAMESPACE}:{k}" in from_env]


def duplicate_keys(text: str) -> list[tuple[tuple[str | int, ...], int]]:
    """(key path, line) of every mapping key that repeats an earlier key of the same mapping,
    at any depth. YAML loaders, the engine's included, keep the last one silently."""
    found: list[tuple[tuple[str | int, ...], int]] = []

    def walk(node: yaml.Node, path: tuple[str | int, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key, value in node.value:
                name = str(key.value)
                if name in seen:
                    found.append(((*path, name), key.start_mark.line + 1))
                seen.add(name)
                walk(value, (*path, name))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                walk(item, (*path, index))

    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if root is not None:
        walk(root, ())
    return found


def stack_file_problems(path: Path) -> list[str]:
    """Keys listed twice in a stack file, as `mlserve:<key path>: listed twice in <file>`."""
    if not path.is_file():
        return []
    prefix = f"{NAMESPACE}:"
    problems = []
    for key_path, line in duplicate_keys(path.read_text()):
        where = f"listed twice in {path.name} (line {line})"
        if key_path[:1] == ("config",) and len(key_path) > 1:
            top = str(key_path[1])
            if top.startswith(prefix):
                problems.append(f"{NAMESPACE}:{_key_path((top[len(prefix):], *key_path[2:]))}: "
                                f"{where}")
                continue
            problems.append(f"{_key_path((top, *key_path[2:]))}: {where}")
        else:
            problems.append(f"{_key_path(key_path)}: {where}")
    return problems


def this_stack_file_problems(project_dir: Path) -> list[str]:
    """The engine hands the program already-merged values, so a key listed twice in the stack
    file is found by reading `Pulumi.<stack>.yaml` again."""
    return stack_file_problems(project_dir / f"Pulumi.{pulumi.get_stack()}.yaml")


def load(project_dir: Path | None = None) -> StackConfig:
    """Read and validate this stack's configuration; raises ConfigError listing every problem.

    The program itself loads through components/stack_inputs.py, which adds the model
    repository's and the model plans' problems to the same report."""
    duplicates = this_stack_file_problems(project_dir) if project_dir is not None else []
    return parse(raw_project_config(), secret_project_keys(), duplicates)
