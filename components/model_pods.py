"""What every model server pod gets, whichever backend runs it: Triton's model arguments, equal
requests and limits, GPU placement, the drain on stop, the scaling windows, and the revision
digest a rollout is recognised by."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from components.config.serving import ServedModelConfig
from components.gpu_node_groups import GPU_PRESENT_LABEL
from components.k8s import GPU_TOLERATION, POOL_LABEL
from modelrepo.triton import METRICS_ARGS

if TYPE_CHECKING:
    from components.model_plan import ModelPlan

DO_NOT_DISRUPT = "karpenter.sh/do-not-disrupt"


def loading_protection(plan: ModelPlan) -> dict[str, str]:
    """Pod annotations: Karpenter won't consolidate or drift a node away from the pod for this
    long after it starts running, i.e. while Triton loads the model (karpenter v1.14.1
    docs/concepts/disruption.md, "Pod-Level Controls": a duration is time-based protection).
    Forceful methods (expiry, interruption, repair) are not held."""
    return {DO_NOT_DISRUPT: f"{plan.config.ready_timeout_minutes}m"}


DRAIN_SECONDS = 15
"""A stopping pod keeps serving this long, while the gateways learn it is gone."""
TERMINATION_GRACE_SECONDS = 60
"""Drain, then Triton's own wait for requests in flight (--exit-timeout-secs, 30 s)."""


def triton_model_args(plan: ModelPlan) -> list[str]:
    """What Triton is told about the model, on either backend: load this model only (the others
    of a repository are never touched, so one that fails to load can't take this server down),
    latency summaries for the SLO alert and dashboards, and on CPU the model's CPU config."""
    cpu_config = [] if plan.gpu_pool else ["--model-config-name=cpu"]
    return ["--model-control-mode=explicit", f"--load-model={plan.name}", *METRICS_ARGS,
            *cpu_config]


def model_resources(plan: ModelPlan) -> dict[str, Any]:
    """Requests equal to limits (CPU, memory, and the GPUs of a GPU model)."""
    gpus = {"nvidia.com/gpu": str(plan.config.gpus)} if plan.gpu_pool else {}
    amounts = {"cpu": plan.config.cpu, "memory": plan.config.memory, **gpus}
    return {"requests": dict(amounts), "limits": dict(amounts)}


def hpa_behavior(config: ServedModelConfig) -> dict[str, Any]:
    """The scaling windows the docs promise, as HPA behaviour: wait `scaleUpStabilizationSeconds`
    before scaling out again, `cooldownSeconds` before scaling in."""
    return {
        "scaleUp": {"stabilizationWindowSeconds": config.scale_up_stabilization_seconds},
        "scaleDown": {"stabilizationWindowSeconds": config.cooldown_seconds},
    }


def gpu_placement(plan: ModelPlan) -> dict[str, Any]:
    """A GPU model's pods on its pool's nodes, tolerating their taint (nothing for CPU models)."""
    return {"nodeSelector": {GPU_PRESENT_LABEL: "true", POOL_LABEL: plan.gpu_pool},
            "tolerations": [GPU_TOLERATION]} if plan.gpu_pool else {}


def revision(annotations: Mapping[str, str], labels: Mapping[str, str],
             pod_fields: Mapping[str, Any]) -> str:
    """Digest of what reaches a track's pod template: the server resource's labels and
    annotations that the controller copies onto the pods, and its pod-level fields. A new
    revision is a rolling update; the readiness budget selects its pods."""
    body = json.dumps({"annotations": annotations, "labels": labels, "predictor": pod_fields},
                      sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()[:12]
