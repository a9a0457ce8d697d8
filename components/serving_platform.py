"""KServe in Standard (raw Deployment) mode with the Triton runtime, and the mesh-secured
namespace models are served from."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.k8s import (
    BASELINE,
    PRIVILEGED,
    SYSTEM_NODE_SELECTOR,
    helm_release,
    namespace,
    resources,
)
from components.mesh import GATEWAY_SELECTOR, INGRESS_CLASS
from components.versions import TRITON_IMAGE

NAMESPACE = "kserve"
TRITON_RUNTIME = "kserve-tritonserver"
MODELS_GATEWAY = "models-gateway"


def models_gateway(namespace: str, domain: str) -> dict[str, Any]:
    """The ingress gateway's listener for model hosts; only VirtualServices in the model
    namespace may bind to it."""
    return {
        "apiVersion": "networking.istio.io/v1", "kind": "Gateway",
        "metadata": {"name": MODELS_GATEWAY, "namespace": namespace},
        "spec": {"selector": {"istio": GATEWAY_SELECTOR},
                 "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"},
                              "hosts": [f"{namespace}/*.{domain}"]}]},
    }


def kserve_values(*, ingress_domain: str) -> dict[str, Any]:
    return {
        "kserve": {
            "controller": {
                # Raw Deployments + HPA/KEDA, no Knative. The chart's default is Knative.
                "deploymentMode": "Standard",
                "gateway": {
                    "domain": ingress_domain,
                    "urlScheme": "http",
                    "ingressGateway": {"className": INGRESS_CLASS, "enableGatewayApi": False},
                    # v0.20's Standard-mode Ingress routes only to the stable predictor, so a
                    # canary would get no traffic: the stack routes each model with its own
                    # weighted VirtualService instead (components/kserve.py).
                    "disableIngressCreation": True,
                },
                "nodeSelector": SYSTEM_NODE_SELECTOR,
                "resources": resources("100m", "300Mi", memory_limit="512Mi"),
            },
        },
    }


def runtime_values(*, triton_image_tag: str) -> dict[str, Any]:
    return {
        "kserve": {
            "servingruntime": {
                # Off by default in the chart: without it there is no kserve-tritonserver.
                "enabled": True,
                "tritonserver": {"image": TRITON_IMAGE, "tag": triton_image_tag},
            },
        },
    }


@dataclass
class ServingPlatformArgs:
    ingress_domain: str
    triton_image_tag: str
    model_namespace: str
    environment: str
    cert_manager: pulumi.Resource
    """KServe's webhooks need certificates from cert-manager before the controller can start."""
    mesh_crds: pulumi.Resource
    """Istio's CRDs (PeerAuthentication)."""
    mesh_control_plane: pulumi.Resource
    depends_on: Sequence[pulumi.Resource] = field(default_factory=list)


class ServingPlatform(pulumi.ComponentResource):
    runtimes: k8s.helm.v3.Release

    def __init__(self, name: str, args: ServingPlatformArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlserve:serving_platform:ServingPlatform", name, None, opts)
        ns = namespace(self, name, NAMESPACE, pod_security=BASELINE)
        crds = helm_release(self, name, "kserve-crd", name="kserve-crd",
                            namespace=ns.metadata.name, values={}, depends_on=args.depends_on)
        controller = helm_release(
            self, name, "kserve-resources", name="kserve", namespace=ns.metadata.name,
            values=kserve_values(ingress_domain=args.ingress_domain),
            depends_on=[crds, args.cert_manager, args.mesh_control_plane, *args.depends_on])
        self.runtimes = helm_release(
            self, name, "kserve-runtime-configs", name="kserve-runtime-configs",
            namespace=ns.metadata.name,
            values=runtime_values(triton_image_tag=args.triton_image_tag),
            depends_on=[controller])

        # Sidecars are injected here. Without the Istio CNI plugin, the injected istio-init
        # container needs NET_ADMIN/NET_RAW, which the baseline and restricted levels refuse, so
        # enforcement is `privileged` while warn/audit report anything short of `restricted`.
        models = namespace(self, name, args.model_namespace, pod_security=PRIVILEGED,
                           labels={"istio-injection": "enabled",
                                   # Policies read the environment here on clusters the stack
                                   # didn't create (no AWS provider to carry the tag).
                                   "mlserve.io/environment": args.environment})
        # Only mutual-TLS traffic reaches model pods: plaintext from outside the mesh is refused.
        self.mtls = k8s.apiextensions.CustomResource(
            f"{name}-models-mtls",
            api_version="security.istio.io/v1",
            kind="PeerAuthentication",
            metadata={"name": "default", "namespace": models.metadata.name},
            spec={"mtls": {"mode": "STRICT"}},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[args.mesh_crds]),
        )
        gateway = models_gateway(args.model_namespace, args.ingress_domain)
        self.gateway = k8s.apiextensions.CustomResource(
            f"{name}-models-gateway", api_version=gateway["apiVersion"], kind=gateway["kind"],
            metadata={**gateway["metadata"], "namespace": models.metadata.name},
            spec=gateway["spec"],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[args.mesh_crds]))
        self.model_namespace = models.metadata.name
        self.stack_outputs = {"modelNamespace": self.model_namespace}
        self.register_outputs({"namespace": ns.metadata.name,
                               "modelNamespace": self.model_namespace,
                               "tritonRuntime": TRITON_RUNTIME,
                               "runtimes": self.runtimes.status})
