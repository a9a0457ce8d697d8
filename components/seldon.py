"""Seldon Core v1 as the opt-in serving backend (the original tutorial's): the operator, its Istio
gateway, and the SeldonDeployment manifest each model is served by (Triton, KEDA on Triton's
backlog)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.gpu_node_groups import GPU_PRESENT_LABEL
from components.inference_service import (
    SELDON_PREDICTOR,
    ModelPlan,
    custom_resource,
    keda_triggers,
)
from components.k8s import BASELINE, GPU_TOLERATION, POOL_LABEL, helm_release, namespace
from components.mesh import GATEWAY_SELECTOR
from components.monitoring import PROMETHEUS_URL
from components.versions import TRITON_IMAGE

NAMESPACE = "seldon-system"
GATEWAY = "seldon-gateway"
RCLONE_SECRET = "seldon-rclone-irsa"
# The rclone storage initializer runs as this user: the projected IRSA token must be readable.
INITIALIZER_UID = 8888
# The Triton image's own unprivileged user (triton-server, uid 1000). The image declares no USER,
# so without an explicit uid runAsNonRoot would refuse to start it (triton-inference-server
# build.py: "Create a user that can be used to run triton as non-root ... ID 1000").
TRITON_UID = 1000


def seldon_values(mesh_namespace: str) -> dict[str, Any]:
    return {
        "istio": {"enabled": True, "gateway": f"{mesh_namespace}/{GATEWAY}"},
        "keda": {"enabled": True},
        # The chart creates its own webhook certificate; no cert-manager objects.
        "certManager": {"enabled": False},
        # The chart offers no nodeSelector: the operator has no GPU toleration, so the GPU
        # taint keeps it on the system nodes.
        "manager": {"cpuRequest": "100m", "memoryRequest": "200Mi", "cpuLimit": "500m",
                    "memoryLimit": "300Mi"},
    }


def gateway(mesh_namespace: str) -> dict[str, Any]:
    """The Istio Gateway Seldon's VirtualServices attach to (the chart doesn't create it)."""
    return {
        "apiVersion": "networking.istio.io/v1", "kind": "Gateway",
        "metadata": {"name": GATEWAY, "namespace": mesh_namespace},
        "spec": {"selector": {"istio": GATEWAY_SELECTOR},
                 "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"},
                              "hosts": ["*"]}]},
    }


def rclone_env(region: str) -> dict[str, str]:
    """rclone with env_auth and no keys uses the AWS SDK chain: IRSA's web-identity token.
    The region must be given: rclone otherwise assumes us-east-1."""
    return {"RCLONE_CONFIG_S3_TYPE": "s3", "RCLONE_CONFIG_S3_PROVIDER": "AWS",
            "RCLONE_CONFIG_S3_ENV_AUTH": "true", "RCLONE_CONFIG_S3_REGION": region}


def seldon_deployment(plan: ModelPlan, bucket: str) -> dict[str, Any]:
    config = plan.config
    gpus = {"nvidia.com/gpu": str(config.gpus)} if plan.gpu_pool else {}
    if config.autoscaler == "keda":
        scaling: dict[str, Any] = {"kedaSpec": {
            "pollingInterval": config.polling_seconds,
            "cooldownPeriod": config.cooldown_seconds,
            "minReplicaCount": config.min_replicas,
            "maxReplicaCount": config.max_replicas,
            "triggers": [{"type": "prometheus", "metadata": {
                "serverAddress": PROMETHEUS_URL, "query": query, "threshold": threshold}}
                for query, threshold in keda_triggers(plan)],
        }}
    else:
        scaling = {"hpaSpec": {
            "minReplicas": max(config.min_replicas, 1), "maxReplicas": config.max_replicas,
            "metricsv2": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                "type": "Utilization", "averageUtilization": config.target_cpu_utilization}}}],
        }}
    return {
        "apiVersion": "machinelearning.seldon.io/v1", "kind": "SeldonDeployment",
        "metadata": {"name": plan.name, "namespace": plan.namespace},
        "spec": {
            "protocol": "v2",
            "predictors": [{
                "name": SELDON_PREDICTOR,
                "graph": {
                    "name": plan.name,
                    "implementation": "TRITON_SERVER",
                    "modelUri": plan.storage_uri(bucket, plan.version),
                    "envSecretRefName": RCLONE_SECRET,
                    "serviceAccountName": plan.service_account,
                },
                "componentSpecs": [{
                    "spec": {
                        **({"nodeSelector": {GPU_PRESENT_LABEL: "true", POOL_LABEL: plan.gpu_pool},
                            "tolerations": [GPU_TOLERATION]} if plan.gpu_pool else {}),
                        # Pod Security `restricted` for the model pod, like KServe's.
                        "securityContext": {"fsGroup": INITIALIZER_UID, "runAsNonRoot": True,
                                            "runAsUser": TRITON_UID,
                                            "seccompProfile": {"type": "RuntimeDefault"}},
                        # Same name as the graph node: the operator keeps these fields.
                        "containers": [{
                            "name": plan.name,
                            "image": f"{TRITON_IMAGE}:{plan.triton_image_tag}",
                            "resources": {
                                "requests": {"cpu": config.cpu, "memory": config.memory, **gpus},
                                "limits": {"cpu": config.cpu, "memory": config.memory, **gpus},
                            },
                        }],
                    },
                    **scaling,
                }],
            }],
        },
    }


@dataclass
class SeldonCoreArgs:
    version: str
    mesh_namespace: str
    mesh_crds: pulumi.Resource
    depends_on: Sequence[pulumi.Resource] = field(default_factory=list)


class SeldonCore(pulumi.ComponentResource):
    def __init__(self, name: str, args: SeldonCoreArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlserve:seldon:SeldonCore", name, None, opts)
        ns = namespace(self, name, NAMESPACE, pod_security=BASELINE)
        custom_resource(self, f"{name}-gateway", gateway(args.mesh_namespace), [args.mesh_crds])
        self.release = helm_release(self, name, "seldon-core-operator", name="seldon-core",
                                    namespace=ns.metadata.name,
                                    values=seldon_values(args.mesh_namespace),
                                    depends_on=args.depends_on, version=args.version)
        self.register_outputs({"release": self.release.status})
