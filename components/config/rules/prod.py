"""Prod hardening: the same baseline the policy pack enforces (policy/baseline.py)."""

from __future__ import annotations

from collections.abc import Iterator

from components.config.errors import Problem
from components.config.rules.scope import prod, prod_on_eks, served_models, waived
from components.config.stack import StackConfig
from policy import baseline


def prod_keeps_models_warm(config: StackConfig) -> Iterator[Problem]:
    if config.environment == "prod" and config.model_serving.allow_scale_to_zero:
        yield ("modelServing", "allowScaleToZero"), "must be false in prod"


def prod_bucket_kept(config: StackConfig) -> Iterator[Problem]:
    if config.environment != "prod":
        return
    bucket = config.model_bucket
    if not bucket.protect and bucket.mode == "create":
        yield ("modelBucket", "protect"), "must be true in prod, got false"
    if bucket.force_destroy:
        yield ("modelBucket", "forceDestroy"), "must be false in prod, got true"


def public_endpoint_restricted(config: StackConfig) -> Iterator[Problem]:
    cidrs = config.cluster.public_access_cidrs
    if not cidrs or config.cluster.mode != "eks" or baseline.non_public(cidrs):
        return  # private endpoint only; private CIDRs are the cluster section's own error
    if problem := baseline.public_endpoint_problem(list(cidrs), prod(config)):
        yield ("cluster", "publicAccessCidrs"), problem


def prod_deletion_protection(config: StackConfig) -> Iterator[Problem]:
    if prod_on_eks(config) and not config.cluster.deletion_protection:
        yield ("cluster", "deletionProtection"), "must be true in prod, got false"


def prod_audit_log_retention(config: StackConfig) -> Iterator[Problem]:
    floor = baseline.PROD_MIN_AUDIT_LOG_RETENTION_DAYS
    days = config.cluster.log_retention_days
    if prod_on_eks(config) and days < floor:
        yield ("cluster", "logRetentionDays"), f"must be >= {floor} in prod (audit trail), got {days}"


def prod_flow_logs(config: StackConfig) -> Iterator[Problem]:
    network = config.network
    if not prod_on_eks(config) or network.existing_vpc is not None:
        return
    floor = baseline.PROD_MIN_FLOW_LOG_RETENTION_DAYS
    days = network.flow_log_retention_days
    if days == 0:
        yield ("network", "flowLogRetentionDays"), "0 turns flow logs off, not allowed in prod"
    elif days < floor:
        yield ("network", "flowLogRetentionDays"), f"must be >= {floor} in prod, got {days}"


def prod_nat_per_az(config: StackConfig) -> Iterator[Problem]:
    network = config.network
    if (prod_on_eks(config) and network.existing_vpc is None
            and network.nat_gateways == "single" and not waived(config, "singleNatGateway")):
        yield (("network", "natGateways"), "must be perAz in prod (or waive it: prodWaivers: "
               "[singleNatGateway])")


def prod_high_availability(config: StackConfig) -> Iterator[Problem]:
    if prod(config) and config.platform.high_availability is False:
        yield ("platform", "highAvailability"), "must be true (or unset) in prod, got false"


def prod_system_nodes_spread(config: StackConfig) -> Iterator[Problem]:
    floor = baseline.PROD_MIN_SYSTEM_NODES
    size = config.system_node_group.min_size
    if prod_on_eks(config) and size < floor:
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


def prod_model_capacity_on_demand(config: StackConfig) -> Iterator[Problem]:
    if not prod(config) or waived(config, "spotModelCapacity"):
        return
    serving = model_pools(config)
    for index, group in enumerate(config.gpu_node_groups):
        if group.capacity_type == "SPOT" and group.name in serving:
            yield (("gpuNodeGroups", index, "capacityType"),
                   f"pool {group.name!r} serves models: must be ON_DEMAND in prod (or waive it: "
                   "prodWaivers: [spotModelCapacity])")


def waivers_only_in_prod(config: StackConfig) -> Iterator[Problem]:
    if config.prod_waivers and not prod(config):
        yield ("prodWaivers",), f"only applies to environment prod, got {config.environment!r}"


def prod_alerts_reach_someone(config: StackConfig) -> Iterator[Problem]:
    monitoring = config.platform.monitoring
    if not prod(config):
        return
    if not monitoring.enabled:
        yield ("platform", "monitoring", "enabled"), "must be true in prod (alerts)"
    elif not monitoring.alertmanager:
        yield ("platform", "monitoring", "alertmanager"), "must be true in prod"
    elif not monitoring.alerts.configured:
        yield (("platform", "monitoring", "alerts"), "must name a receiver in prod (snsTopic "
               "and/or webhook): Alertmanager's default receiver notifies nobody")


def prod_karpenter_capacity_on_demand(config: StackConfig) -> Iterator[Problem]:
    """Karpenter's twin of prod_model_capacity_on_demand: no spot NodePool for a model pool."""
    if (not prod_on_eks(config) or config.gpu_capacity.engine != "karpenter"
            or waived(config, "spotModelCapacity")):
        return
    serving = model_pools(config)
    for pool in config.gpu_node_groups:
        if pool.name in serving and "spot" in (config.gpu_capacity.karpenter.pool(pool.name)
                                               .capacity_types or []):
            yield (("gpuCapacity", "karpenter", "pools", pool.name, "capacityTypes"),
                   f"pool {pool.name!r} serves models: spot is not allowed in prod (or waive "
                   "it: prodWaivers: [spotModelCapacity])")
