"""The cross-section rules: each a small named function that reads a validated StackConfig and
yields (key path, message) for each problem, the message without the key.

Rules run even when other sections are invalid: a rule that reads an invalid section is skipped
(`check_rules`), every other rule still reports, so one run lists every problem. They run in the
order of RULES, which is the order of the report.

By theme: `platform` (parts, cluster, pools), `storage` (the model store), `models` (each served
model), `capacity` (pods fit nodes, pools hold rollouts), `prod` (the prod baseline), `accounts`
(partitions, accounts, zones); `scope` holds what they share.
"""

from __future__ import annotations

from components.config.errors import Problem
from components.config.rules import (
    accounts,
    capacity,
    gpu_capacity,
    models,
    platform,
    prod,
    storage,
)
from components.config.rules.scope import (
    InvalidSection,
    Rule,
    SectionUnavailable,
    is_valid,
)
from components.config.stack import StackConfig

__all__ = ["RULES", "InvalidSection", "Rule", "SectionUnavailable", "check_rules", "is_valid"]

RULES: tuple[Rule, ...] = (
    platform.unique_pool_names,
    platform.eks_needs_gpu_pools,
    platform.gateway_load_balancer_needs_controller,
    platform.aws_parts_need_eks,
    storage.bucket_mode_fields,
    storage.promotion_readers_need_own_bucket,
    storage.store_credentials,
    storage.minio_placement,
    platform.gateway_node_port_needs_node_port_service,
    platform.backend_needs_its_platform,
    models.model_placement,
    models.model_replica_floor,
    models.model_canary,
    models.model_host_fits,
    models.model_names_fit,
    models.seldon_hpa_has_no_behaviour,
    models.model_namespace_not_reserved,
    capacity.model_fits_its_nodes,
    capacity.pools_hold_model_floors,
    platform.gpu_pools_have_a_device_plugin,
    platform.empty_pools_need_an_autoscaler,
    models.model_autoscaler_parts,
    prod.prod_keeps_models_warm,
    prod.prod_bucket_kept,
    prod.public_endpoint_restricted,
    prod.prod_deletion_protection,
    prod.prod_audit_log_retention,
    prod.prod_flow_logs,
    prod.prod_nat_per_az,
    prod.prod_high_availability,
    prod.prod_system_nodes_spread,
    prod.prod_model_capacity_on_demand,
    prod.waivers_only_in_prod,
    prod.prod_alerts_reach_someone,
    platform.alert_receivers_have_what_they_need,
    accounts.principals_in_the_regions_partition,
    accounts.promotion_readers_in_the_regions_partition,
    accounts.principals_in_the_stacks_account,
    accounts.prod_account_pinned,
    accounts.availability_zones_in_the_region,
    gpu_capacity.karpenter_pools_are_gpu_pools,
    gpu_capacity.karpenter_pools_start_empty,
    prod.prod_karpenter_capacity_on_demand,
)


def check_rules(config: StackConfig) -> list[Problem]:
    """Every cross-section problem; rules that need an invalid section are skipped."""
    problems: list[Problem] = []
    for check in RULES:
        try:
            problems += list(check(config))
        except SectionUnavailable:
            continue
    return problems
