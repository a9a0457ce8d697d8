"""Rules of the GPU capacity engine (components/config/gpu_capacity.py): Karpenter's pool
settings name real pools, Karpenter pools keep no nodes of their own (prod's on-demand rule for
Karpenter pools is in rules/prod.py)."""

from __future__ import annotations

from collections.abc import Iterator

from components.config.errors import Problem
from components.config.stack import StackConfig


def _karpenter(config: StackConfig) -> bool:
    return config.cluster.mode == "eks" and config.gpu_capacity.engine == "karpenter"


def karpenter_pools_are_gpu_pools(config: StackConfig) -> Iterator[Problem]:
    names = [g.name for g in config.gpu_node_groups]
    for name in config.gpu_capacity.karpenter.pools:
        if name not in names:
            yield (("gpuCapacity", "karpenter", "pools", name),
                   f"must name one of gpuNodeGroups {names}")


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
