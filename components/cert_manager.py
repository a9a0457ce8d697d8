"""cert-manager: issues the webhook certificates KServe's controller needs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi

from components.k8s import BASELINE, SYSTEM_NODE_SELECTOR, helm_release, namespace, resources

NAMESPACE = "cert-manager"


def cert_manager_values(high_availability: bool) -> dict[str, Any]:
    replicas = 2 if high_availability else 1
    placed = {"nodeSelector": SYSTEM_NODE_SELECTOR}
    return {
        "crds": {"enabled": True, "keep": True},
        "replicaCount": replicas,
        "podDisruptionBudget": {"enabled": high_availability},
        "resources": resources("50m", "128Mi", memory_limit="256Mi"),
        **placed,
        "prometheus": {"enabled": True, "servicemonitor": {"enabled": False}},
        "webhook": {"replicaCount": replicas,
                    "podDisruptionBudget": {"enabled": high_availability},
                    "resources": resources("20m", "64Mi", memory_limit="128Mi"), **placed},
        "cainjector": {"replicaCount": replicas,
                       "podDisruptionBudget": {"enabled": high_availability},
                       "resources": resources("20m", "128Mi", memory_limit="256Mi"), **placed},
        "startupapicheck": {"resources": resources("10m", "32Mi", memory_limit="64Mi"),
                            **placed},
    }


@dataclass
class CertManagerArgs:
    high_availability: bool


class CertManager(pulumi.ComponentResource):
    def __init__(self, name: str, args: CertManagerArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlserve:cert_manager:CertManager", name, None, opts)
        ns = namespace(self, name, NAMESPACE, pod_security=BASELINE)
        self.release = helm_release(self, name, "cert-manager", name="cert-manager",
                                    namespace=ns.metadata.name,
                                    values=cert_manager_values(args.high_availability))
        self.register_outputs({"namespace": ns.metadata.name, "release": self.release.status})
