"""Serving every model of the repository: the model servers' identity, who may reach them, and one
InferenceService part per model."""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
from tritonclient.grpc import model_config_pb2 as mc

from components.backends import serving_backend
from components.cold_start import fallback_objects, held_tracks, interceptor_peer
from components.config.errors import ConfigError, Problem
from components.config.serving import ServedModelConfig
from components.config.stack import StackConfig
from components.inference_service import InferenceService, InferenceServiceArgs
from components.k8s import custom_resource
from components.kserve import KSERVE, model_host
from components.mesh import GATEWAY_SELECTOR
from components.mesh import NAMESPACE as MESH_NAMESPACE
from components.model_plan import ModelPlan
from components.monitoring import NAMESPACE as MONITORING_NAMESPACE
from components.serving_backend import ServingBackend
from modelrepo.repository import Model, Repository
from modelrepo.triton import METRICS_PORT


def example_request(model: Model) -> dict[str, Any]:
    """A minimal valid V2 request: batch of 1, variable dims as 2, zeros."""
    inputs = []
    for tensor in model.config.input:
        dims = [2 if d == -1 else d for d in tensor.dims]
        shape = ([1] if model.config.max_batch_size > 0 else []) + dims
        count = 1
        for d in shape:
            count *= d
        datatype = mc.DataType.Name(tensor.data_type).removeprefix("TYPE_")
        datatype = "BYTES" if datatype == "STRING" else datatype
        zero: Any = "" if datatype == "BYTES" else (False if datatype == "BOOL" else 0)
        inputs.append({"name": tensor.name, "shape": shape, "datatype": datatype,
                       "data": [zero] * count})
    return {"inputs": inputs}


def curl_command(address: str, host: str, model: str, body: dict[str, Any]) -> str:
    return (f"curl -sS http://{address}/v2/models/{model}/infer -H {shlex.quote('Host: ' + host)}"
            f" -H 'Content-Type: application/json' -d {shlex.quote(json.dumps(body))}")


def plan_models(config: StackConfig, repository: Repository) -> list[ModelPlan]:
    """The models to serve and how, checked against the repository before anything is created.

    Each model is content-addressed by its own files: unless pinned, a model serves (and a canary
    tries) the hash of its own folder, so changing one model moves that model only. Every problem
    is reported at once.
    """
    serving = config.model_serving
    configured = dict(serving.models)
    problems: list[Problem] = [
        (("modelServing", "models", name), f"no such model in {config.model_repository.path}/ "
         f"(have {sorted(repository.models)})")
        for name in sorted(set(configured) - set(repository.models))]
    if not configured:
        floor = 2 if config.environment == "prod" else 1
        keda = config.platform.keda.enabled and config.platform.monitoring.enabled
        configured = {name: ServedModelConfig.model_validate({
                          "minReplicas": floor, "maxReplicas": max(floor, 4),
                          "autoscaler": "keda" if keda else "hpa"})
                      for name in repository.models}
    # Backend none serves nothing: its plans only say which versions the bucket holds.
    backend = serving_backend(serving.backend) or KSERVE
    plans = []
    default_pool = config.gpu_node_groups[0].name if config.gpu_node_groups else None
    for name, model in sorted(configured.items()):
        found = repository.models.get(name)
        if found is None:
            continue
        on_cpu = model.gpus == 0 or default_pool is None
        if on_cpu and "cpu" not in found.custom_configs:
            problems.append((("modelServing", "models", name, "gpus"), "serving on CPU needs "
                             f"{config.model_repository.path}/{name}/configs/cpu.pbtxt "
                             "(selected with --model-config-name=cpu)"))
        folder_version = found.content_hash
        version = model.version or folder_version
        canary = None
        if model.canary is not None:
            canary = model.canary.version or folder_version
            if canary == version:
                problems.append((("modelServing", "models", name, "canary", "version"),
                                 f"the canary must differ from the served version ({version}); "
                                 "pin `version` to the current one first"))
        plans.append(ModelPlan(
            name=name, namespace=serving.namespace, service_account=serving.service_account,
            storage_prefix=config.model_repository.prefix, version=version, config=model,
            gpu_pool=None if on_cpu else (model.gpu_pool or default_pool), canary_version=canary,
            example_request=example_request(found), backend=backend,
            triton_image_tag=config.platform.kserve.triton_image_tag,
            ingress_host=model_host(name, serving.namespace, config.platform.kserve.ingress_domain),
        ))
    if problems:
        raise ConfigError(problems)
    return plans


def gateway_pod_monitor() -> dict[str, Any]:
    """Envoy's statistics of the ingress gateway (istio_requests_total per destination)."""
    return {
        "apiVersion": "monitoring.coreos.com/v1", "kind": "PodMonitor",
        "metadata": {"name": "istio-ingressgateway", "namespace": MESH_NAMESPACE},
        "spec": {"selector": {"matchLabels": {"istio": GATEWAY_SELECTOR}},
                 "podMetricsEndpoints": [{"port": "http-envoy-prom", "path": "/stats/prometheus",
                                          "interval": "15s"}]},
    }


def s3_annotations(region: str, role_arn: str | None,
                   endpoint: str | None = None) -> dict[str, str]:
    """Where KServe's storage-initializer finds the bucket: S3 with the pods' IRSA role (no
    keys), or an S3-compatible endpoint whose keys are in the account's Secret."""
    if endpoint is None:
        return {
            "eks.amazonaws.com/role-arn": role_arn or "",
            "serving.kserve.io/s3-region": region,
            "serving.kserve.io/s3-endpoint": f"s3.{region}.amazonaws.com",
            "serving.kserve.io/s3-usehttps": "1",
            "serving.kserve.io/s3-verifyssl": "1",
            "serving.kserve.io/s3-useanoncredential": "false",
        }
    https = endpoint.startswith("https://")
    return {
        "serving.kserve.io/s3-region": region,
        "serving.kserve.io/s3-endpoint": endpoint.split("://", 1)[1],
        "serving.kserve.io/s3-usehttps": "1" if https else "0",
        "serving.kserve.io/s3-verifyssl": "1" if https else "0",
        "serving.kserve.io/s3-useanoncredential": "false",
    }


def network_policy(namespace: str, backend: ServingBackend = KSERVE,
                   interceptor: bool = False) -> dict:
    """Model pods accept traffic only from the ingress gateway (and, where it holds requests
    while a model wakes, the KEDA HTTP add-on's interceptor) and from Prometheus."""
    peers = [{"namespaceSelector": {"matchLabels": {
                 "kubernetes.io/metadata.name": MESH_NAMESPACE}},
              "podSelector": {"matchLabels": {"istio": GATEWAY_SELECTOR}}},
             *([interceptor_peer()] if interceptor else [])]
    return {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "model-servers", "namespace": namespace},
        "spec": {
            "podSelector": {"matchExpressions": [{"key": backend.pod_label,
                                                   "operator": "Exists"}]},
            "policyTypes": ["Ingress"],
            "ingress": [
                {"from": peers,
                 "ports": [{"protocol": "TCP", "port": port} for port in backend.serving_ports]},
                {"from": [{"namespaceSelector": {"matchLabels": {
                              "kubernetes.io/metadata.name": MONITORING_NAMESPACE}},
                           "podSelector": {"matchLabels": {
                               "app.kubernetes.io/name": "prometheus"}}}],
                 "ports": [{"protocol": "TCP", "port": METRICS_PORT},
                           {"protocol": "TCP", "port": 15020}]},  # Istio's merged metrics
            ],
        },
    }


def endpoint(plan: ModelPlan, address: str) -> dict[str, Any]:
    """How a client reaches the model through the ingress gateway at `address`."""
    base, host = plan.backend.client_address(plan, address)
    return {
        "url": f"http://{base}/v2/models/{plan.name}/infer",
        "host": host,
        "curl": curl_command(base, host, plan.name, plan.example_request),
        "version": plan.version,
        "canaryVersion": plan.canary_version,
    }


@dataclass(frozen=True)
class ModelReader:
    """How model pods read the bucket: S3 through the pods' IRSA role, or an S3-compatible
    endpoint with keys."""

    role_arn: pulumi.Input[str] | None = None
    s3_endpoint: str | None = None
    """An S3-compatible endpoint as pods reach it; None for S3 with IRSA."""
    s3_credentials: tuple[pulumi.Input[str], pulumi.Input[str]] | None = None


@dataclass
class ModelServingArgs:
    plans: Sequence[ModelPlan]
    namespace: pulumi.Input[str]
    region: str
    bucket: pulumi.Input[str]
    reader: ModelReader
    ingress_address: pulumi.Input[str]
    depends_on: Sequence[pulumi.Resource] = field(default_factory=list)
    monitoring: pulumi.Resource | None = None
    http_add_on: pulumi.Resource | None = None
    """The KEDA HTTP add-on's release (components/cold_start.py), when a track is held while it
    wakes."""
    high_availability: bool = False


class ModelServing(pulumi.ComponentResource):
    def __init__(self, name: str, args: ModelServingArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlserve:model_serving:ModelServing", name, None, opts)
        if not args.plans:
            raise ValueError("nothing to serve")
        first = args.plans[0]
        backend = first.backend
        if any(plan.backend is not backend for plan in args.plans):
            raise ValueError("the models of one namespace are served by one backend")
        reader, credentials = args.reader, None
        if reader.s3_credentials is not None:
            # KServe reads S3 keys from the secrets its service account lists, and the endpoint
            # settings from that Secret's own annotations.
            credentials = k8s.core.v1.Secret(
                f"{name}-s3-credentials",
                metadata={"name": "model-store-credentials", "namespace": args.namespace,
                          "annotations": s3_annotations(args.region, None, reader.s3_endpoint)},
                type="Opaque",
                string_data={"AWS_ACCESS_KEY_ID": pulumi.Output.secret(reader.s3_credentials[0]),
                             "AWS_SECRET_ACCESS_KEY":
                                 pulumi.Output.secret(reader.s3_credentials[1])},
                opts=pulumi.ResourceOptions(parent=self))
        account = k8s.core.v1.ServiceAccount(
            f"{name}-sa",
            metadata={"name": first.service_account, "namespace": args.namespace,
                      # IRSA: the role and where S3 is. With an S3-compatible store the
                      # settings live on the credentials Secret instead.
                      "annotations": pulumi.Output.from_input(reader.role_arn).apply(
                          lambda arn: s3_annotations(args.region, arn))
                      if reader.s3_endpoint is None else {}},
            secrets=[{"name": "model-store-credentials"}] if credentials is not None else None,
            # Triton needs no Kubernetes API access; IRSA and Istio use their own projected
            # tokens.
            automount_service_account_token=False,
            opts=pulumi.ResourceOptions(parent=self,
                                        depends_on=[credentials] if credentials else []))
        held = held_tracks(args.plans)
        policy = network_policy(first.namespace, backend, interceptor=bool(held))
        k8s.networking.v1.NetworkPolicy(
            f"{name}-netpol", metadata={**policy["metadata"], "namespace": args.namespace},
            spec=policy["spec"], opts=pulumi.ResourceOptions(parent=self))
        ready: list[pulumi.Resource] = [
            *args.depends_on, account,
            *backend.namespace_objects(self, name, args.namespace, args.region)]
        cold_start: list[pulumi.Resource] = []
        if held:
            if args.http_add_on is None:
                raise ValueError("a track held while it wakes needs the KEDA HTTP add-on")
            cold_start = [args.http_add_on, *self._fallback(name, args)]
        woken_by_gateway = any(
            track.min_replicas == 0 and ((plan, track) not in held
                                         or plan.backend.grpc_direct_while_held)
            for plan in args.plans for track in plan.tracks)
        if args.monitoring is not None and woken_by_gateway:
            # Scale from zero reads the gateway's request metrics (Triton has none at zero).
            custom_resource(self, f"{name}-gateway-monitor", gateway_pod_monitor(), ready)
        self.models = {
            plan.name: InferenceService(
                f"{name}-{plan.name}",
                InferenceServiceArgs(plan=plan, bucket=args.bucket, depends_on=ready,
                                     monitoring=args.monitoring, cold_start=cold_start),
                pulumi.ResourceOptions(parent=self))
            for plan in args.plans
        }
        self.endpoints: pulumi.Output[dict[str, dict[str, Any]]] = pulumi.Output.from_input(
            args.ingress_address).apply(lambda address: {
                plan.name: endpoint(plan, address) for plan in args.plans})
        self.stack_outputs = {"models": self.endpoints}
        self.register_outputs({"models": self.endpoints})

    def _fallback(self, name: str, args: ModelServingArgs) -> list[pulumi.Resource]:
        """The answer past the cold-start budget: 503 with Retry-After (components/cold_start.py).
        """
        objects = {manifest["kind"]: manifest for manifest in fallback_objects(
            args.plans, args.plans[0].namespace, args.high_availability)}

        def metadata(kind: str) -> Any:
            return {**objects[kind]["metadata"], "namespace": args.namespace}

        def spec(kind: str) -> Any:
            return objects[kind]["spec"]

        opts = pulumi.ResourceOptions(parent=self)
        config = k8s.core.v1.ConfigMap(f"{name}-fallback-config", metadata=metadata("ConfigMap"),
                                       data=objects["ConfigMap"]["data"], opts=opts)
        return [
            config,
            k8s.apps.v1.Deployment(f"{name}-fallback", metadata=metadata("Deployment"),
                                   spec=spec("Deployment"),
                                   opts=pulumi.ResourceOptions(parent=self, depends_on=[config])),
            k8s.core.v1.Service(f"{name}-fallback", metadata=metadata("Service"),
                                spec=spec("Service"), opts=opts),
            k8s.networking.v1.NetworkPolicy(f"{name}-fallback-netpol",
                                            metadata=metadata("NetworkPolicy"),
                                            spec=spec("NetworkPolicy"), opts=opts),
        ]
