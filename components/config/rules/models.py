"""Rules of each served model: where it runs, its replicas, its names, its autoscaler."""

from __future__ import annotations

from collections.abc import Iterator

from components import naming
from components.config.errors import Problem
from components.config.rules.scope import served_models
from components.config.stack import StackConfig
from policy import baseline


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


def model_replica_floor(config: StackConfig) -> Iterator[Problem]:
    for where, _, model in served_models(config):
        if model.min_replicas == 0 and not config.model_serving.allow_scale_to_zero:
            yield (*where, "minReplicas"), "0 needs modelServing.allowScaleToZero"
        floor = baseline.PROD_MIN_MODEL_REPLICAS
        if config.environment == "prod" and model.min_replicas < floor:
            yield (*where, "minReplicas"), f"must be >= {floor} in prod, got {model.min_replicas}"


def model_canary(config: StackConfig) -> Iterator[Problem]:
    for where, _, model in served_models(config):
        if model.canary is None:
            continue
        if config.model_serving.backend != "kserve":
            yield (*where, "canary"), "needs backend kserve"


def model_host_fits(config: StackConfig) -> Iterator[Problem]:
    for where, name, _ in served_models(config):
        if len(f"{name}-{config.model_serving.namespace}") > 63:
            yield (where, "<model>-<namespace> is the host's first label and must be at most "
                   "63 characters")


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
                       "kserve", "keda", "keda-http", "monitoring", "cert-manager", "nvidia",
                       "minio", "seldon-system")


def model_namespace_not_reserved(config: StackConfig) -> Iterator[Problem]:
    namespace = config.model_serving.namespace
    if namespace in RESERVED_NAMESPACES or namespace.startswith("kube-"):
        yield (("modelServing", "namespace"), f"{namespace!r} belongs to the cluster or the "
               "platform; models need a namespace of their own")


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
