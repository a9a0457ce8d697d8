"""mlserve: wires the platform's parts together from the validated stack configuration."""

from pathlib import Path

import pulumi

from components.autoscaling import Autoscaling, AutoscalingArgs
from components.aws_provider import aws_provider, stack_tags
from components.cert_manager import CertManager, CertManagerArgs
from components.cluster import Cluster, ClusterArgs
from components.cluster_autoscaler import ClusterAutoscaler, ClusterAutoscalerArgs
from components.existing_cluster import ExistingCluster, ExistingClusterArgs
from components.gpu_node_groups import GpuNodeGroups, GpuNodeGroupsArgs
from components.gpu_stack import GpuStack, GpuStackArgs
from components.load_balancer_controller import LoadBalancerController, LoadBalancerControllerArgs
from components.mesh import NAMESPACE as MESH_NAMESPACE
from components.mesh import Mesh, MeshArgs
from components.model_repository import (
    ModelRepository,
    ModelRepositoryArgs,
    model_versions,
    storage_uris,
)
from components.model_serving import ModelServing, ModelServingArgs
from components.model_store import ModelStore, ModelStoreArgs
from components.model_upload import (
    BucketAccess,
    ModelUpload,
    ModelUploadArgs,
    PinnedModelVersions,
    PinnedModelVersionsArgs,
)
from components.monitoring import GRAFANA_SERVICE, Monitoring, MonitoringArgs
from components.monitoring import NAMESPACE as MONITORING_NAMESPACE
from components.network import Network, NetworkArgs
from components.object_store import ObjectStore, ObjectStoreArgs, node_port_of
from components.seldon import SeldonCore, SeldonCoreArgs
from components.serving_platform import ServingPlatform, ServingPlatformArgs
from components.stack_inputs import load as load_stack_inputs
from components.storage import Storage, StorageArgs

# Validated in full before anything is registered: a bad stack file or a broken model touches
# nothing, and one error lists the problems of the config, the repository and the model plans.
inputs = load_stack_inputs(Path(__file__).parent)
config, model_repo, model_plans = inputs.config, inputs.repository, inputs.plans
# Each served version: the folder's (uploaded here) or pinned (already in the bucket, checked).
versions = model_versions(config, model_repo, model_plans)
stack = pulumi.get_stack()
cluster_name = config.cluster_name(stack)
eks = config.cluster.mode == "eks"
bucket = config.model_bucket
prefix = config.model_repository.prefix

# ---- The AWS half (cluster.mode eks): network, EKS, GPU nodes, the hardened model bucket.
network = cluster = gpu_nodes = model_store = uploaded_to_s3 = None
providers = {}
if eks:
    tags = stack_tags(config, stack)
    providers["aws"] = aws_provider(config, stack)
    on_aws = pulumi.ResourceOptions(providers=dict(providers))
    network = Network("network", NetworkArgs(config=config.network, cluster_name=cluster_name),
                      on_aws)
    cluster = Cluster(
        "cluster",
        ClusterArgs(
            cluster_name=cluster_name,
            config=config.cluster,
            system_nodes=config.system_node_group,
            region=config.region,
            private_subnet_ids=network.private_subnet_ids,
            instance_tags=tags,
        ),
        on_aws,
    )
    gpu_nodes = GpuNodeGroups(
        "gpu",
        GpuNodeGroupsArgs(
            groups=config.gpu_node_groups,
            cluster_name=cluster.eks.name,
            node_role_arn=cluster.node_role.arn,
            subnet_ids=network.private_subnet_ids,
            instance_tags=tags,
            depends_on=[cluster.system_nodes],
        ),
        on_aws,
    )
    if bucket.mode == "create":
        model_store = ModelStore(
            "models",
            ModelStoreArgs(
                cluster_name=cluster_name,
                bucket=bucket,
                serving=config.model_serving,
                oidc_provider_arn=cluster.oidc_provider_arn,
                oidc_issuer_url=cluster.oidc_issuer_url,
                region=config.region,
                prefix=prefix,
            ),
            on_aws,
        )
        if versions.uploads:
            uploaded_to_s3 = ModelRepository(
                "model-repo",
                ModelRepositoryArgs(repository=model_repo, bucket=model_store.bucket_name,
                                    prefix=prefix, models=sorted(versions.uploads),
                                    bucket_ready=model_store.ready),
                on_aws,
            )
    providers["kubernetes"] = cluster.provider
else:
    # ---- An existing cluster (an existing EKS, kind, minikube): no AWS resources at all.
    providers["kubernetes"] = ExistingCluster(
        "cluster", ExistingClusterArgs(kubeconfig=config.cluster.kubeconfig or "",
                                       context=config.cluster.context)).provider

bucket_name = model_store.bucket_name if model_store else bucket.name
reader_role_arn = model_store.reader_role_arn if model_store else bucket.reader_role_arn

# ---- Kubernetes platform layer: everything below uses the cluster's one Kubernetes provider,
# which (on EKS) waits for the admin access entries and the system nodes.
platform = config.platform
ha = config.high_availability
on_cluster = pulumi.ResourceOptions(providers=providers)

storage = Storage("storage", StorageArgs(), on_cluster) if eks else None

load_balancer_controller = None
if platform.load_balancer_controller.enabled and cluster is not None:
    load_balancer_controller = LoadBalancerController(
        "lb-controller",
        LoadBalancerControllerArgs(
            cluster_name=cluster_name, region=config.region, vpc_id=network.vpc_id,
            oidc_provider_arn=cluster.oidc_provider_arn, oidc_issuer_url=cluster.oidc_issuer_url,
            high_availability=ha, network=network),
        on_cluster,
    )

cert_manager = None
if platform.cert_manager.enabled:
    cert_manager = CertManager("cert-manager", CertManagerArgs(high_availability=ha), on_cluster)

mesh = None
if platform.istio.enabled:
    mesh = Mesh(
        "mesh",
        MeshArgs(
            high_availability=ha,
            gateway_scheme=platform.istio.gateway_scheme,
            gateway_source_ranges=platform.istio.gateway_source_ranges,
            gateway_min_replicas=platform.istio.gateway_min_replicas,
            gateway_service_type=platform.istio.gateway_service_type,
            gateway_node_port=platform.istio.gateway_node_port,
            load_balancer_controller=load_balancer_controller.release
            if load_balancer_controller else None,
        ),
        on_cluster,
    )

monitoring = None
if platform.monitoring.enabled:
    monitoring = Monitoring(
        "monitoring",
        MonitoringArgs(
            config=platform.monitoring,
            storage_class=platform.monitoring.storage_class
            or (storage.class_name if storage else ""),
            high_availability=ha,
            grafana_admin_password=config.grafana_admin_password.get_secret_value()
            if config.grafana_admin_password else None,
            alert_webhook_url=pulumi.Output.secret(config.alert_webhook_url.get_secret_value())
            if config.alert_webhook_url else None,
            region=config.region,
            oidc_provider_arn=cluster.oidc_provider_arn if cluster else None,
            oidc_issuer_url=cluster.oidc_issuer_url if cluster else None),
        on_cluster,
    )

autoscaling = Autoscaling(
    "autoscaling",
    AutoscalingArgs(high_availability=ha, keda=platform.keda.enabled,
                    metrics_server=platform.metrics_server.enabled),
    on_cluster,
)

if platform.cluster_autoscaler.enabled and cluster is not None:
    ClusterAutoscaler(
        "cluster-autoscaler",
        ClusterAutoscalerArgs(
            cluster_name=cluster_name, region=config.region,
            oidc_provider_arn=cluster.oidc_provider_arn, oidc_issuer_url=cluster.oidc_issuer_url,
            config=platform.cluster_autoscaler),
        on_cluster,
    )

needs_device_plugin = any(g.ami_type.startswith("AL2023") for g in config.gpu_node_groups)
if platform.dcgm_exporter.enabled or (platform.nvidia_device_plugin.enabled
                                      and needs_device_plugin):
    GpuStack(
        "gpu-stack",
        GpuStackArgs(
            device_plugin=platform.nvidia_device_plugin.enabled and needs_device_plugin,
            dcgm_exporter=platform.dcgm_exporter.enabled,
            monitoring=monitoring.release if monitoring else None,
            # GPU nodes outlive the daemons that run on them.
            depends_on=[gpu_nodes] if gpu_nodes else []),
        on_cluster,
    )

serving = None
if platform.kserve.enabled and cert_manager is not None and mesh is not None:
    serving = ServingPlatform(
        "serving",
        ServingPlatformArgs(
            ingress_domain=platform.kserve.ingress_domain,
            triton_image_tag=platform.kserve.triton_image_tag,
            model_namespace=config.model_serving.namespace,
            environment=config.environment,
            cert_manager=cert_manager.release,
            mesh_crds=mesh.base,
            mesh_control_plane=mesh.istiod,
            # KServe looks for KEDA's CRDs once, at start-up.
            depends_on=[autoscaling.keda] if autoscaling.keda else []),
        on_cluster,
    )

backend = config.model_serving.backend
server_runtime = serving.runtimes if serving is not None and backend == "kserve" else None
if backend == "seldon" and mesh is not None and serving is not None and cert_manager is not None:
    server_runtime = SeldonCore(
        "seldon",
        SeldonCoreArgs(version=config.model_serving.seldon.version,
                       mesh_namespace=MESH_NAMESPACE, mesh_crds=mesh.base,
                       cert_manager=cert_manager.release,
                       depends_on=[*([autoscaling.keda] if autoscaling.keda else []),
                                   mesh.istiod]),
        on_cluster,
    ).release

# ---- Model versions in a bucket the stack doesn't own (existing S3, MinIO): the folder's are
# uploaded; in any bucket, pinned ones are checked to be there and intact.
object_store = uploaded = pinned = None
credentials = None
if config.model_store_access_key_id and config.model_store_secret_access_key:
    credentials = (config.model_store_access_key_id.get_secret_value(),
                   config.model_store_secret_access_key.get_secret_value())
if platform.minio.enabled:
    object_store = ObjectStore(
        "object-store",
        ObjectStoreArgs(bucket=bucket.name or "", credentials=credentials,
                        node_port=node_port_of(bucket.endpoint)),
        on_cluster)
    credentials = object_store.credentials
access = BucketAccess(bucket=bucket_name, prefix=prefix, region=config.region,
                      endpoint=bucket.endpoint,
                      access_key_id=credentials[0] if credentials else None,
                      secret_access_key=credentials[1] if credentials else None)
store_ready = [object_store.release] if object_store else []
if bucket.mode != "create" and versions.uploads:
    uploaded = ModelUpload(
        "model-upload",
        ModelUploadArgs(repository=model_repo, models=sorted(versions.uploads), access=access,
                        depends_on=store_ready))
if uploaded_to_s3 is not None:
    uploaded = uploaded_to_s3
if versions.pinned:
    pinned = PinnedModelVersions(
        "model-pins", PinnedModelVersionsArgs(pinned=versions.pinned, access=access,
                                              depends_on=store_ready))
model_storage_uris = storage_uris(model_plans, {**(uploaded.ready if uploaded else {}),
                                                **(pinned.ready if pinned else {})})

served = None
if server_runtime is not None and mesh is not None and serving is not None:
    served = ModelServing(
        "model-serving",
        ModelServingArgs(
            plans=model_plans,
            namespace=serving.model_namespace,
            region=config.region,
            bucket=bucket_name,
            reader_role_arn=reader_role_arn,
            ingress_address=platform.istio.external_address or mesh.ingress_hostname,
            backend=backend,
            s3_endpoint=(bucket.cluster_endpoint
                         or (object_store.cluster_endpoint if object_store else bucket.endpoint))
            if bucket.mode == "s3Compatible" else None,
            s3_credentials=credentials,
            # Runtime, identity, model files and the autoscaler exist before any model; on
            # destroy the models go first.
            depends_on=[server_runtime, *([model_store.reader] if model_store else []),
                        *([uploaded] if uploaded else []), *([pinned] if pinned else []),
                        *([autoscaling.keda] if autoscaling.keda else [])],
            monitoring=monitoring.release if monitoring else None),
        on_cluster,
    )

if network is not None and cluster is not None and gpu_nodes is not None:
    pulumi.export("vpcId", network.vpc_id)
    pulumi.export("privateSubnetIds", network.private_subnet_ids)
    pulumi.export("publicSubnetIds", network.public_subnet_ids)
    pulumi.export("clusterName", cluster.eks.name)
    pulumi.export("clusterEndpoint", cluster.eks.endpoint)
    pulumi.export("kubeconfig", cluster.kubeconfig)
    pulumi.export("oidcProviderArn", cluster.oidc_provider_arn)
    pulumi.export("systemNodeGroupName", cluster.system_nodes.name_output)
    pulumi.export("gpuNodeGroupNames", gpu_nodes.node_group_names)
pulumi.export("modelBucketName", bucket_name)
if reader_role_arn is not None:
    pulumi.export("modelReaderRoleArn", reader_role_arn)
# Per model: the version it serves (stable track; canaries are in `models`) and where it lies.
pulumi.export("modelVersions", {plan.name: plan.version for plan in model_plans})
pulumi.export("modelStorageUris", model_storage_uris)
if monitoring is not None:
    pulumi.export("prometheusUrl", monitoring.prometheus_url)
    pulumi.export("grafanaAdminPassword", monitoring.grafana_admin_password)
    pulumi.export("grafanaPortForward",
                  f"kubectl -n {MONITORING_NAMESPACE} port-forward svc/{GRAFANA_SERVICE} 3000:80")
    if monitoring.alert_topic_arn is not None:
        pulumi.export("alertTopicArn", monitoring.alert_topic_arn)
if serving is not None:
    pulumi.export("modelNamespace", serving.model_namespace)
if served is not None:
    pulumi.export("models", served.endpoints)
