"""Pod autoscaling: KEDA (scales model servers on Triton's Prometheus metrics) and metrics-server
(CPU/memory for HPA)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi

from components.k8s import BASELINE, SYSTEM_NODE_SELECTOR, helm_release, namespace, resources

KEDA_NAMESPACE = "keda"
METRICS_SERVER_NAMESPACE = "kube-system"


def keda_values(high_availability: bool) -> dict[str, Any]:
    replicas = 2 if high_availability else 1
    budget = {"minAvailable": 1} if high_availability else {}
    return {
        "nodeSelector": SYSTEM_NODE_SELECTOR,
        "operator": {"replicaCount": replicas, "nodeSelector": SYSTEM_NODE_SELECTOR},
        "metricsServer": {"replicaCount": replicas, "nodeSelector": SYSTEM_NODE_SELECTOR},
        "webhooks": {"replicaCount": replicas, "nodeSelector": SYSTEM_NODE_SELECTOR},
        "podDisruptionBudget": {"operator": budget, "metricServer": budget, "webhooks": budget},
        "resources": {
            "operator": resources("100m", "128Mi", memory_limit="512Mi"),
            "metricServer": resources("100m", "128Mi", memory_limit="512Mi"),
            "webhooks": resources("50m", "64Mi", memory_limit="256Mi"),
        },
    }


def metrics_server_values(high_availability: bool) -> dict[str, Any]:
    return {
        "replicas": 2 if high_availability else 1,
        "podDisruptionBudget": {"enabled": high_availability, "minAvailable": 1},
        "nodeSelector": SYSTEM_NODE_SELECTOR,
        "resources": resources("50m", "64Mi", memory_limit="256Mi"),
    }


@dataclass
class AutoscalingArgs:
    high_availability: bool
    keda: bool = True
    metrics_server: bool = True


class Autoscaling(pulumi.ComponentResource):
    keda: pulumi.Resource | None
    keda_crds: list[pulumi.Resource]
    """What a part that reads KEDA's CRDs waits for: KEDA's release, or nothing without KEDA."""

    def __init__(self, name: str, args: AutoscalingArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlserve:autoscaling:Autoscaling", name, None, opts)
        self.keda = None
        outputs: dict[str, Any] = {}
        if args.keda:
            ns = namespace(self, name, KEDA_NAMESPACE, pod_security=BASELINE)
            self.keda = helm_release(self, name, "keda", name="keda", namespace=ns.metadata.name,
                                     values=keda_values(args.high_availability))
            outputs["keda"] = self.keda.status
        if args.metrics_server:
            metrics = helm_release(self, name, "metrics-server", name="metrics-server",
                                   namespace=METRICS_SERVER_NAMESPACE,
                                   values=metrics_server_values(args.high_availability))
            outputs["metricsServer"] = metrics.status
        self.keda_crds = [self.keda] if self.keda is not None else []
        self.register_outputs(outputs)
