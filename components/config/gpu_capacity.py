"""The `gpuCapacity` section: what launches GPU nodes for the pools of `gpuNodeGroups` (Karpenter
or managed node groups), Karpenter's per-pool settings, and GPU node health. Read by
components/karpenter.py, gpu_capacity.py, node_health.py and tools/preflight.py; its rules are
components/config/rules/gpu_capacity.py."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from components.config.errors import ConfigError, Problem
from components.config.types import ConfigModel, DnsLabel

KARPENTER_CAPACITY_TYPES = {"ON_DEMAND": "on-demand", "SPOT": "spot"}
_KARPENTER_DURATION = r"^([0-9]+(s|m|h))+$"


class KarpenterPoolConfig(ConfigModel):
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
            raise ConfigError(problems)
        return self


class KarpenterConfig(ConfigModel):
    """Karpenter, the engine behind GPU pools with engine karpenter."""

    pools: dict[DnsLabel, KarpenterPoolConfig] = Field(
        default_factory=dict, description="Per GPU pool (by name) settings; pools not listed "
        "use the defaults.")

    def pool(self, name: str) -> KarpenterPoolConfig:
        return self.pools.get(name) or KarpenterPoolConfig()


class NodeHealthConfig(ConfigModel):
    """GPU node health: the EKS node monitoring agent and automatic repair."""

    monitoring_agent: bool = Field(True, description="The eks-node-monitoring-agent add-on: "
                                   "node conditions for GPU (Xid, NVLink), kernel, network and "
                                   "storage faults.")
    auto_repair: bool = Field(True, description="Replace nodes whose conditions stay unhealthy "
                              "(managed node groups' nodeRepairConfig; Karpenter's NodeRepair).")


class GpuCapacityConfig(ConfigModel):
    """What launches GPU nodes for the pools of gpuNodeGroups (cluster.mode eks)."""

    engine: Literal["karpenter", "nodeGroups"] = Field(
        "karpenter", description="karpenter: NodePools that launch nodes for pending model pods "
        "(several instance types, capacity-type fallback, disruption budgets); nodeGroups: "
        "managed node groups grown by cluster-autoscaler.")
    karpenter: KarpenterConfig = Field(default_factory=KarpenterConfig,
                                       description="Karpenter settings (engine karpenter).")
    node_health: NodeHealthConfig = Field(default_factory=NodeHealthConfig,
                                          description="GPU node health and repair.")


def karpenter_capacity_types(config: GpuCapacityConfig, pool: str,
                             capacity_type: str) -> list[str]:
    """A pool's Karpenter capacity types in fallback order (`capacity_type`: the pool's own
    gpuNodeGroups[].capacityType, the default)."""
    configured = config.karpenter.pool(pool).capacity_types
    return list(configured) if configured else [KARPENTER_CAPACITY_TYPES[capacity_type]]
