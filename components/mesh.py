"""Istio: CRDs and control plane, the ingress gateway behind an NLB, and the `istio` IngressClass
that KServe's Standard-mode Ingresses use."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.k8s import BASELINE, SYSTEM_NODE_SELECTOR, helm_release, namespace, resources

NAMESPACE = "istio-system"
# Istio's Kubernetes-Ingress support selects gateway pods labelled istio=<ingressSelector> and
# reports the address of Service <ingressService> (both in istiod's namespace): the gateway
# release is named so both defaults match.
GATEWAY_RELEASE = "istio-ingressgateway"
# The gateway pods' `istio` label, which Gateways select.
GATEWAY_SELECTOR = GATEWAY_RELEASE.removeprefix("istio-")
INGRESS_CLASS = "istio"
INGRESS_CONTROLLER = "istio.io/ingress-controller"


def istiod_values(high_availability: bool) -> dict[str, Any]:
    replicas = 2 if high_availability else 1
    return {
        "autoscaleMin": replicas,
        "autoscaleMax": 5,
        "replicaCount": replicas,
        "nodeSelector": SYSTEM_NODE_SELECTOR,
        "resources": resources("100m", "256Mi", memory_limit="1Gi"),
        # Native sidecars: the proxy starts as an init container (restartPolicy: Always) ahead
        # of the others, so KServe's storage-initializer init container can reach S3 through the
        # mesh instead of hanging before the proxy exists (kserve#2461). Chosen over excluding
        # S3 from interception, which would bypass the mesh's egress policy and need the S3
        # CIDRs per region. Explicit, so it doesn't rest on auto-detection of node versions.
        "env": {"ENABLE_NATIVE_SIDECARS": "true"},
        "meshConfig": {
            "accessLogFile": "/dev/stdout",
            "ingressClass": INGRESS_CLASS,
            "ingressControllerMode": "STRICT",
            "ingressService": GATEWAY_RELEASE,
            "ingressSelector": GATEWAY_SELECTOR,
        },
        "global": {"defaultPodDisruptionBudget": {"enabled": high_availability}},
    }


def gateway_service(*, scheme: str, source_ranges: Sequence[str], service_type: str,
                    node_port: int | None, aws_load_balancer: bool) -> dict[str, Any]:
    if service_type == "NodePort":
        ports = [{"name": "status-port", "port": 15021, "protocol": "TCP", "targetPort": 15021},
                 {"name": "http2", "port": 80, "protocol": "TCP", "targetPort": 80,
                  **({"nodePort": node_port} if node_port else {})}]
        return {"type": "NodePort", "ports": ports}
    service: dict[str, Any] = {"type": "LoadBalancer",
                               "loadBalancerSourceRanges": list(source_ranges)}
    if aws_load_balancer:
        service["annotations"] = {
            # An NLB from the AWS Load Balancer Controller, targeting pod IPs directly.
            "service.beta.kubernetes.io/aws-load-balancer-type": "external",
            "service.beta.kubernetes.io/aws-load-balancer-nlb-target-type": "ip",
            "service.beta.kubernetes.io/aws-load-balancer-scheme": scheme,
            "service.beta.kubernetes.io/aws-load-balancer-healthcheck-port": "15021",
            "service.beta.kubernetes.io/aws-load-balancer-healthcheck-path": "/healthz/ready",
            "service.beta.kubernetes.io/aws-load-balancer-healthcheck-protocol": "http",
        }
    return service


def gateway_values(*, scheme: str, source_ranges: Sequence[str], min_replicas: int,
                   high_availability: bool, service_type: str = "LoadBalancer",
                   node_port: int | None = None, aws_load_balancer: bool = True,
                   ) -> dict[str, Any]:
    floor = max(min_replicas, 2 if high_availability else 1)
    return {
        "service": gateway_service(scheme=scheme, source_ranges=source_ranges,
                                   service_type=service_type, node_port=node_port,
                                   aws_load_balancer=aws_load_balancer),
        "autoscaling": {"enabled": True, "minReplicas": floor, "maxReplicas": max(floor, 5)},
        "podDisruptionBudget": {"minAvailable": 1} if floor > 1 else {},
        "nodeSelector": SYSTEM_NODE_SELECTOR,
        "resources": resources("100m", "128Mi", memory_limit="1Gi"),
    }


@dataclass
class MeshArgs:
    high_availability: bool
    gateway_scheme: str = "internet-facing"
    gateway_source_ranges: Sequence[str] = ()
    gateway_min_replicas: int = 1
    gateway_service_type: str = "LoadBalancer"
    gateway_node_port: int | None = None
    load_balancer_controller: pulumi.Resource | None = None
    """The gateway's NLB is created and deleted by this controller, so the gateway depends on it:
    on destroy the NLB goes while the controller still runs, before subnets and the VPC."""
    depends_on: Sequence[pulumi.Resource] = field(default_factory=list)


class Mesh(pulumi.ComponentResource):
    base: k8s.helm.v3.Release
    istiod: k8s.helm.v3.Release
    gateway: k8s.helm.v3.Release

    def __init__(self, name: str, args: MeshArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlserve:mesh:Mesh", name, None, opts)
        ns = namespace(self, name, NAMESPACE, pod_security=BASELINE)
        self.base = helm_release(self, name, "istio-base", name="istio-base",
                                 namespace=ns.metadata.name,
                                 values={"defaultRevision": "default"},
                                 depends_on=args.depends_on)
        self.istiod = helm_release(self, name, "istiod", name="istiod",
                                   namespace=ns.metadata.name,
                                   values=istiod_values(args.high_availability),
                                   depends_on=[self.base])
        self.gateway = helm_release(
            self, name, "istio-gateway", name=GATEWAY_RELEASE, namespace=ns.metadata.name,
            values=gateway_values(scheme=args.gateway_scheme,
                                  source_ranges=args.gateway_source_ranges,
                                  min_replicas=args.gateway_min_replicas,
                                  high_availability=args.high_availability,
                                  service_type=args.gateway_service_type,
                                  node_port=args.gateway_node_port,
                                  aws_load_balancer=args.load_balancer_controller is not None),
            depends_on=[self.istiod, *([args.load_balancer_controller]
                                       if args.load_balancer_controller else [])],
        )
        self.ingress_class = k8s.networking.v1.IngressClass(
            f"{name}-ingress-class",
            metadata={"name": INGRESS_CLASS},
            spec={"controller": INGRESS_CONTROLLER},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.istiod]),
        )
        # The NLB's DNS name, read back from the Service the gateway chart created.
        service = k8s.core.v1.Service.get(
            f"{name}-gateway-service", pulumi.Output.concat(ns.metadata.name, "/", GATEWAY_RELEASE),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.gateway]))
        self.ingress_hostname: pulumi.Output[str] = service.status.apply(
            lambda status: _load_balancer_address(status))
        self.namespace = ns.metadata.name
        self.register_outputs({"namespace": self.namespace,
                               "ingressClass": self.ingress_class.metadata.name,
                               "ingressHostname": self.ingress_hostname,
                               "gateway": self.gateway.status})


def _load_balancer_address(status: Any) -> str:
    ingress = (status.load_balancer.ingress if status and status.load_balancer else None) or []
    if not ingress:
        return "<pending: the NLB has no address yet>"
    return ingress[0].hostname or ingress[0].ip or ""
