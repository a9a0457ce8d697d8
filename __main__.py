"""mlserve: the platform's parts, wired together from the validated stack configuration."""

from pathlib import Path

import pulumi

from components.autoscaling import Autoscaling, AutoscalingArgs
from components.backends import serving_backend
from components.cert_manager import CertManager, CertManagerArgs
from components.cold_start import ColdStart, ColdStartArgs, held_tracks, target_ports
from components.foundation import HasStackOutputs, NewAwsAccount, found
from components.gpu_stack import GpuStack, GpuStackArgs, needs_device_plugin
from components.mesh import NAMESPACE as MESH_NAMESPACE
from components.mesh import Mesh, MeshArgs
from components.model_repository import model_versions, storage_uris
from components.model_serving import ModelServing, ModelServingArgs
from components.monitoring import NAMESPACE as MONITORING_NAMESPACE
from components.monitoring import Monitoring, MonitoringArgs
from components.node_health import NodeHealth, NodeHealthArgs, addon_version
from components.serving_backend import RuntimeArgs
from components.serving_platform import ServingPlatform, ServingPlatformArgs
from components.stack_inputs import load as load_stack_inputs
from components.stack_inputs import secret_value

# Validated in full before anything is registered: a bad stack file or a broken model touches
# nothing, and one error lists the problems of the config, the repository and the model plans.
inputs = load_stack_inputs(Path(__file__).parent)
config, plans = inputs.config, inputs.plans
platform, ha = config.platform, config.high_availability
# Each served version: the folder's (uploaded) or pinned (already in the bucket, checked).
versions = model_versions(config, inputs.repository, plans)

# ---- Where the platform stands: a new AWS account (VPC, EKS, GPU capacity, the model bucket)
# or an existing cluster and bucket. Everything below uses its providers.
foundation = found(config, pulumi.get_stack(), inputs.repository, versions)
on_cluster = foundation.on_cluster

# ---- The cluster's platform (the config refuses any combination that couldn't work, e.g. KServe
# without cert-manager and Istio).
cert_manager = (CertManager("cert-manager", CertManagerArgs(high_availability=ha), on_cluster)
                if platform.cert_manager.enabled else None)
istio = platform.istio
mesh = (Mesh("mesh", MeshArgs(
    high_availability=ha, gateway_scheme=istio.gateway_scheme,
    gateway_source_ranges=istio.gateway_source_ranges,
    gateway_min_replicas=istio.gateway_min_replicas,
    gateway_service_type=istio.gateway_service_type, gateway_node_port=istio.gateway_node_port,
    load_balancer_controller=foundation.load_balancer_controller), on_cluster)
        if istio.enabled else None)
monitoring = (Monitoring("monitoring", MonitoringArgs(
    config=platform.monitoring,
    storage_class=platform.monitoring.storage_class or foundation.storage_class,
    high_availability=ha, grafana_admin_password=secret_value(config.grafana_admin_password),
    alert_webhook_url=secret_value(config.alert_webhook_url), region=config.region,
    oidc_provider_arn=foundation.oidc_provider_arn, oidc_issuer_url=foundation.oidc_issuer_url),
    on_cluster) if platform.monitoring.enabled else None)
autoscaling = Autoscaling("autoscaling", AutoscalingArgs(
    high_availability=ha, keda=platform.keda.enabled,
    metrics_server=platform.metrics_server.enabled), on_cluster)
keda = autoscaling.keda_crds
monitoring_crds = monitoring.release if monitoring else None
gpu_daemons = GpuStackArgs(
    device_plugin=needs_device_plugin(platform, config.gpu_node_groups),
    dcgm_exporter=platform.dcgm_exporter.enabled, monitoring=monitoring_crds,
    depends_on=foundation.gpu_capacity)
if gpu_daemons.wanted:
    GpuStack("gpu-stack", gpu_daemons, on_cluster)
# GPU node health on the stack's own EKS: the node monitoring agent, alerts on GPU faults and on
# GPU nodes not Ready (repair is the GPU capacity engine's, from gpuCapacity.nodeHealth).
if isinstance(foundation, NewAwsAccount):
    NodeHealth("node-health", NodeHealthArgs(
        cluster=foundation.cluster.eks, addon_version=addon_version(config.cluster),
        monitoring_agent=config.gpu_capacity.node_health.monitoring_agent,
        monitoring_namespace=MONITORING_NAMESPACE if monitoring else None,
        monitoring=monitoring_crds, karpenter=foundation.karpenter_release,
        depends_on=[foundation.cluster.system_nodes]), on_cluster)

# ---- Serving: KServe's platform (the meshed model namespace), the backend's runtime, the models.
backend = serving_backend(config.model_serving.backend)
served = serving = None
if platform.kserve.enabled:
    assert cert_manager is not None and mesh is not None, "the config requires both"
    serving = ServingPlatform("serving", ServingPlatformArgs(
        ingress_domain=platform.kserve.ingress_domain,
        triton_image_tag=platform.kserve.triton_image_tag,
        model_namespace=config.model_serving.namespace, environment=config.environment,
        cert_manager=cert_manager.release, mesh_crds=mesh.base, mesh_control_plane=mesh.istiod,
        # KServe looks for KEDA's CRDs once, at start-up.
        depends_on=keda), on_cluster)
    if backend is not None:
        runtime = backend.install_runtime(backend.name, RuntimeArgs(
            kserve_runtimes=serving.runtimes, mesh_namespace=MESH_NAMESPACE, mesh_crds=mesh.base,
            mesh_control_plane=mesh.istiod, cert_manager=cert_manager.release,
            settings=config.model_serving, depends_on=keda), on_cluster)
        # A model at zero replicas holds its requests while it wakes (KServe): the KEDA HTTP
        # add-on's interceptor, next to KEDA (the config requires KEDA and monitoring there).
        http_add_on = None
        if held_tracks(plans):
            assert autoscaling.keda is not None, "the config requires KEDA"
            http_add_on = ColdStart("cold-start", ColdStartArgs(
                high_availability=ha, model_ports=target_ports(plans), keda=autoscaling.keda,
                mesh_control_plane=mesh.istiod,
                monitoring=monitoring_crds), on_cluster).release
        served = ModelServing("model-serving", ModelServingArgs(
            plans=plans, namespace=serving.model_namespace, region=config.region,
            bucket=foundation.bucket.name, reader=foundation.bucket.reader,
            ingress_address=istio.external_address or mesh.ingress_hostname,
            # Runtime, identity, model files, the autoscaler and the GPU capacity exist before
            # any model; on destroy the models go first, then the GPU nodes.
            depends_on=[runtime, *foundation.bucket.ready, *keda, *foundation.gpu_capacity],
            monitoring=monitoring_crds, http_add_on=http_add_on, high_availability=ha),
            on_cluster)

# ---- Outputs: per model the version it serves (stable track; canaries are in `models`) and
# where it lies, then each part's own.
outputs = {"modelVersions": {plan.name: plan.version for plan in plans},
           "modelStorageUris": storage_uris(plans, foundation.bucket.versions)}
parts: tuple[HasStackOutputs | None, ...] = (foundation, monitoring, serving, served)
for part in filter(None, parts):
    outputs.update(part.stack_outputs)
for key, value in outputs.items():
    pulumi.export(key, value)
