"""The `systemNodeGroup` and `gpuNodeGroups` sections: the nodes controllers and models run on."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from components import aws_facts, versions
from components.config.errors import ConfigError, Problem
from components.config.types import ConfigModel, DnsLabel


class _NodeGroup(ConfigModel):
    """What every node group's section checks: its sizes, all at once (each subclass declares
    minSize, maxSize and desiredSize)."""

    @model_validator(mode="after")
    def _sizes(self) -> Any:
        group: Any = self
        problems: list[Problem] = []
        if group.max_size < group.min_size:
            problems.append((("maxSize",), f"must be >= minSize ({group.min_size}), "
                                           f"got {group.max_size}"))
        desired = group.desired_size
        if desired is not None and not group.min_size <= desired <= group.max_size:
            problems.append((("desiredSize",), "must be between minSize "
                                               f"({group.min_size}) and maxSize "
                                               f"({group.max_size}), got {desired}"))
        if problems:
            raise ConfigError(problems)
        return self


class SystemNodeGroupConfig(_NodeGroup):
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


class GpuNodeGroupConfig(_NodeGroup):
    """One GPU managed node group; cluster-autoscaler grows it from minSize when models pend."""

    name: DnsLabel = Field(max_length=32,
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

    @property
    def gpus_per_node(self) -> int:
        return versions.GPU_INSTANCE_TYPES[self.instance_types[0]][0]

    @property
    def accelerator(self) -> str:
        return versions.GPU_INSTANCE_TYPES[self.instance_types[0]][1]
