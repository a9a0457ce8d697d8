"""Where the platform stands: one interface, `Foundation`, with two implementations.

- `NewAwsAccount` (`cluster.mode: eks`): the AWS provider, the VPC, the EKS cluster and its
  GPU capacity, the gp3 StorageClass, the AWS-side controllers (load balancers, cluster
  autoscaling), and the model bucket: created here with the model pods' read-only role
  (`modelBucket.mode: create`), or one the stack doesn't own.
- `ExistingClusterAndBucket` (`cluster.mode: existing`: an existing EKS, kind, minikube): a
  Kubernetes provider for the given kubeconfig, and a bucket the stack doesn't own (an existing
  S3 bucket, or an S3-compatible store, MinIO in the cluster if asked). No AWS resources at all.

Either gives the rest of the program the same things: the providers, the bucket's name, how
model pods read it (`ModelReader`), the StorageClass for volumes, the storage URI of every
model version the stack serves (uploaded from the repository folder, or pinned and checked),
what the models wait for, and what the GPU daemons wait for.

The foundation is not a part of its own: the parts it creates stay at the top of the stack, as
the program has always registered them (their URNs, and so their state, are unchanged).

GPU capacity is an engine of the AWS foundation (`_gpu_capacity`, `gpuCapacity.engine`):
Karpenter's NodePools (the default; components/karpenter.py, gpu_capacity.py), or managed node
groups scaled by cluster-autoscaler. What it returns is what the GPU daemons and the models wait
for, so on destroy they go before the nodes.
"""

from __future__ import annotations

from abc import ABC
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import pulumi

from components.aws_provider import aws_provider, stack_tags
from components.cluster import Cluster, ClusterArgs
from components.cluster_autoscaler import ClusterAutoscaler, ClusterAutoscalerArgs
from components.config.stack import StackConfig
from components.existing_cluster import ExistingCluster, ExistingClusterArgs
from components.gpu_capacity import KarpenterGpuPools, KarpenterGpuPoolsArgs
from components.gpu_node_groups import GpuNodeGroups, GpuNodeGroupsArgs
from components.karpenter import Karpenter, KarpenterArgs
from components.load_balancer_controller import (
    LoadBalancerController,
    LoadBalancerControllerArgs,
)
from components.model_repository import (
    ModelRepository,
    ModelRepositoryArgs,
    ModelVersions,
    VersionRef,
)
from components.model_serving import ModelReader
from components.model_store import ModelStore, ModelStoreArgs
from components.model_upload import (
    BucketAccess,
    ModelUpload,
    ModelUploadArgs,
    PinnedModelVersions,
    PinnedModelVersionsArgs,
)
from components.network import Network, NetworkArgs
from components.object_store import ObjectStore, ObjectStoreArgs, node_port_of
from components.storage import Storage, StorageArgs
from modelrepo.repository import Repository


class HasStackOutputs(Protocol):
    """A part that names stack outputs of its own."""

    @property
    def stack_outputs(self) -> Mapping[str, Any]: ...


@dataclass
class ModelBucket:
    """The bucket holding the model versions, as the rest of the program uses it."""

    name: pulumi.Input[str]
    reader: ModelReader
    versions: dict[VersionRef, pulumi.Output[str]] = field(default_factory=dict)
    """(model, version) -> its storage URI, known once its objects are uploaded or verified."""
    ready: list[pulumi.Resource] = field(default_factory=list)
    """The model pods' identity and every version's objects: before any model server."""


class Foundation(ABC):
    """Where the platform stands. Every attribute is set by the implementation's constructor."""

    providers: dict[str, pulumi.ProviderResource]
    """The stack's explicit providers (`kubernetes`, and `aws` where the stack uses AWS)."""
    bucket: ModelBucket
    storage_class: pulumi.Input[str]
    """The StorageClass for the platform's volumes; "" for the cluster's default."""
    gpu_capacity: list[pulumi.Resource]
    """What provides GPU nodes: the GPU daemons wait for it, so the nodes outlive them."""
    load_balancer_controller: pulumi.Resource | None = None
    """The release that turns Services of type LoadBalancer into load balancers (and so must
    outlive them)."""
    oidc_provider_arn: pulumi.Input[str] | None = None
    oidc_issuer_url: pulumi.Input[str] | None = None
    """The cluster's IRSA issuer, for parts that get an AWS role (EKS only)."""
    karpenter_release: pulumi.Resource | None = None
    """Karpenter's controller release, where it is the GPU capacity engine."""

    @property
    def on_cluster(self) -> pulumi.ResourceOptions:
        """Options of every part on the cluster: the stack's providers, nothing default."""
        return pulumi.ResourceOptions(providers=dict(self.providers))

    @property
    def stack_outputs(self) -> dict[str, Any]:
        """The stack outputs about the foundation."""
        reader = self.bucket.reader.role_arn
        return {"modelBucketName": self.bucket.name,
                **({"modelReaderRoleArn": reader} if reader is not None else {})}


def _bucket_access(config: StackConfig, bucket: pulumi.Input[str],
                   credentials: tuple[pulumi.Input[str], pulumi.Input[str]] | None,
                   ) -> BucketAccess:
    """How the machine running `pulumi up` reaches the bucket (boto3)."""
    return BucketAccess(bucket=bucket, prefix=config.model_repository.prefix,
                        region=config.region, endpoint=config.model_bucket.endpoint,
                        access_key_id=credentials[0] if credentials else None,
                        secret_access_key=credentials[1] if credentials else None)


def _pinned(versions: ModelVersions, access: BucketAccess,
            depends_on: Sequence[pulumi.Resource]) -> PinnedModelVersions | None:
    """Pinned versions are never uploaded: each is checked to be in the bucket, intact."""
    if not versions.pinned:
        return None
    return PinnedModelVersions("model-pins", PinnedModelVersionsArgs(
        pinned=versions.pinned, access=access, depends_on=depends_on))


def _with_versions(bucket: ModelBucket, uploaded: ModelRepository | ModelUpload | None,
                   pinned: PinnedModelVersions | None) -> ModelBucket:
    """The bucket with the versions uploaded to it and those pinned in it: each version's URI,
    and the parts models wait for."""
    for part in (uploaded, pinned):
        if part is not None:
            bucket.versions.update(part.ready)
            bucket.ready.append(part)
    return bucket


def owned_bucket(config: StackConfig, repository: Repository, versions: ModelVersions,
                 cluster_name: str, cluster: Cluster, on_aws: pulumi.ResourceOptions,
                 ) -> ModelBucket:
    """`modelBucket.mode: create`: the hardened bucket and the model pods' IRSA role, and the
    folder's versions as the bucket's objects (components/model_repository.py)."""
    prefix = config.model_repository.prefix
    store = ModelStore(
        "models",
        ModelStoreArgs(cluster_name=cluster_name, bucket=config.model_bucket,
                       serving=config.model_serving,
                       oidc_provider_arn=cluster.oidc_provider_arn,
                       oidc_issuer_url=cluster.oidc_issuer_url, region=config.region,
                       prefix=prefix),
        on_aws)
    uploaded = ModelRepository(
        "model-repo",
        ModelRepositoryArgs(repository=repository, bucket=store.bucket_name, prefix=prefix,
                            models=sorted(versions.uploads), bucket_ready=store.ready),
        on_aws) if versions.uploads else None
    access = _bucket_access(config, store.bucket_name, None)
    bucket = ModelBucket(name=store.bucket_name,
                         reader=ModelReader(role_arn=store.reader_role_arn), ready=[store.reader])
    return _with_versions(bucket, uploaded, _pinned(versions, access, []))


def foreign_bucket(config: StackConfig, repository: Repository, versions: ModelVersions,
                   on_cluster: pulumi.ResourceOptions) -> ModelBucket:
    """A bucket the stack doesn't own (`existing` S3, `s3Compatible`): the folder's versions are
    published into it by boto3 (components/model_upload.py); with `platform.minio` the store is
    MinIO in the cluster, with generated keys unless given."""
    settings = config.model_bucket
    credentials: tuple[pulumi.Input[str], pulumi.Input[str]] | None = None
    if config.model_store_access_key_id and config.model_store_secret_access_key:
        credentials = (config.model_store_access_key_id.get_secret_value(),
                       config.model_store_secret_access_key.get_secret_value())
    cluster_endpoint = settings.cluster_endpoint or settings.endpoint
    store_ready: list[pulumi.Resource] = []
    if config.platform.minio.enabled:
        store = ObjectStore(
            "object-store",
            ObjectStoreArgs(bucket=settings.name or "", credentials=credentials,
                            node_port=node_port_of(settings.endpoint)),
            on_cluster)
        credentials, store_ready = store.credentials, [store.release]
        cluster_endpoint = settings.cluster_endpoint or store.cluster_endpoint
    access = _bucket_access(config, settings.name or "", credentials)
    uploaded = ModelUpload(
        "model-upload",
        ModelUploadArgs(repository=repository, models=sorted(versions.uploads), access=access,
                        depends_on=store_ready)) if versions.uploads else None
    reader = ModelReader(
        role_arn=settings.reader_role_arn,
        s3_endpoint=cluster_endpoint if settings.mode == "s3Compatible" else None,
        s3_credentials=credentials)
    bucket = ModelBucket(name=settings.name or "", reader=reader)
    return _with_versions(bucket, uploaded, _pinned(versions, access, store_ready))


class NewAwsAccount(Foundation):
    """An empty AWS account made into the platform's ground (`cluster.mode: eks`)."""

    def __init__(self, config: StackConfig, stack: str, repository: Repository,
                 versions: ModelVersions):
        cluster_name = config.cluster_name(stack)
        tags = stack_tags(config, stack)
        aws = aws_provider(config, stack)
        on_aws = pulumi.ResourceOptions(providers={"aws": aws})
        self.network = Network("network", NetworkArgs(config=config.network,
                                                      cluster_name=cluster_name), on_aws)
        self.cluster = Cluster(
            "cluster",
            ClusterArgs(cluster_name=cluster_name, config=config.cluster,
                        system_nodes=config.system_node_group, region=config.region,
                        private_subnet_ids=self.network.private_subnet_ids, instance_tags=tags),
            on_aws)
        # Everything Kubernetes goes through the cluster's provider, which waits for the admin
        # access entries and the system nodes.
        self.providers = {"aws": aws, "kubernetes": self.cluster.provider}
        self.oidc_provider_arn = self.cluster.oidc_provider_arn
        self.oidc_issuer_url = self.cluster.oidc_issuer_url
        self.storage_class = Storage("storage", StorageArgs(), self.on_cluster).class_name
        self.gpu_capacity = self._gpu_capacity(config, cluster_name, tags, on_aws)
        if config.platform.load_balancer_controller.enabled:
            self.load_balancer_controller = LoadBalancerController(
                "lb-controller",
                LoadBalancerControllerArgs(
                    cluster_name=cluster_name, region=config.region,
                    vpc_id=self.network.vpc_id, oidc_provider_arn=self.cluster.oidc_provider_arn,
                    oidc_issuer_url=self.cluster.oidc_issuer_url,
                    high_availability=config.high_availability, network=self.network),
                self.on_cluster).release
        self.bucket = (owned_bucket(config, repository, versions, cluster_name, self.cluster,
                                    on_aws)
                       if config.model_bucket.mode == "create"
                       else foreign_bucket(config, repository, versions, self.on_cluster))

    def _gpu_capacity(self, config: StackConfig, cluster_name: str, tags: dict[str, str],
                      on_aws: pulumi.ResourceOptions) -> list[pulumi.Resource]:
        """The GPU capacity engine of `gpuCapacity.engine`. Returns what GPU daemons and the
        models wait for. cluster-autoscaler (when enabled) also scales the system node group."""
        self.gpu_nodes: GpuNodeGroups | KarpenterGpuPools
        if config.gpu_capacity.engine == "karpenter":
            self.gpu_nodes = self._karpenter(config, cluster_name, tags)
        else:
            self.gpu_nodes = GpuNodeGroups(
                "gpu",
                GpuNodeGroupsArgs(groups=config.gpu_node_groups,
                                  cluster_name=self.cluster.eks.name,
                                  node_role_arn=self.cluster.node_role.arn,
                                  subnet_ids=self.network.private_subnet_ids, instance_tags=tags,
                                  node_repair=config.gpu_capacity.node_health.auto_repair,
                                  depends_on=[self.cluster.system_nodes]),
                on_aws)
        if config.platform.cluster_autoscaler.enabled:
            ClusterAutoscaler(
                "cluster-autoscaler",
                ClusterAutoscalerArgs(
                    cluster_name=cluster_name, region=config.region,
                    oidc_provider_arn=self.cluster.oidc_provider_arn,
                    oidc_issuer_url=self.cluster.oidc_issuer_url,
                    config=config.platform.cluster_autoscaler),
                self.on_cluster)
        return [self.gpu_nodes]

    def _karpenter(self, config: StackConfig, cluster_name: str,
                   tags: dict[str, str]) -> KarpenterGpuPools:
        """Karpenter on the system nodes, and each GPU pool as an EC2NodeClass and weighted
        NodePools. Its metrics are scraped by a ServiceMonitor of components/node_health.py
        (the monitoring stack comes after the foundation)."""
        existing_vpc = config.network.existing_vpc
        karpenter = Karpenter(
            "karpenter",
            KarpenterArgs(
                cluster_name=cluster_name, region=config.region, cluster=self.cluster.eks,
                private_subnet_ids=self.network.private_subnet_ids,
                subnet_count=len(existing_vpc.private_subnet_ids) if existing_vpc
                else config.network.az_count,
                node_repair=config.gpu_capacity.node_health.auto_repair,
                high_availability=config.high_availability, instance_tags=tags),
            self.on_cluster)
        self.karpenter_release = karpenter.release
        return KarpenterGpuPools(
            "gpu",
            KarpenterGpuPoolsArgs(
                pools=config.gpu_node_groups, capacity=config.gpu_capacity,
                cluster_name=cluster_name, node_role_name=karpenter.node_role_name,
                controller=karpenter.release, crds=karpenter.crds,
                instance_tags=tags),
            self.on_cluster)

    @property
    def stack_outputs(self) -> dict[str, Any]:
        network, cluster = self.network, self.cluster
        return {
            "vpcId": network.vpc_id,
            "privateSubnetIds": network.private_subnet_ids,
            "publicSubnetIds": network.public_subnet_ids,
            "clusterName": cluster.eks.name,
            "clusterEndpoint": cluster.eks.endpoint,
            "kubeconfig": cluster.kubeconfig,
            "oidcProviderArn": cluster.oidc_provider_arn,
            "systemNodeGroupName": cluster.system_nodes.name_output,
            **({"gpuNodeGroupNames": self.gpu_nodes.node_group_names}
               if isinstance(self.gpu_nodes, GpuNodeGroups)
               else {"gpuNodePools": self.gpu_nodes.node_pool_names}),
            **super().stack_outputs,
        }


class ExistingClusterAndBucket(Foundation):
    """A cluster and a bucket that exist (`cluster.mode: existing`): no AWS resources at all."""

    def __init__(self, config: StackConfig, stack: str, repository: Repository,
                 versions: ModelVersions):
        cluster = ExistingCluster("cluster", ExistingClusterArgs(
            kubeconfig=config.cluster.kubeconfig or "", context=config.cluster.context))
        self.providers = {"kubernetes": cluster.provider}
        self.storage_class = ""
        # GPU nodes, if any, are the cluster owner's.
        self.gpu_capacity = []
        self.bucket = foreign_bucket(config, repository, versions, self.on_cluster)


def found(config: StackConfig, stack: str, repository: Repository,
          versions: ModelVersions) -> Foundation:
    """The foundation `cluster.mode` asks for."""
    kind = NewAwsAccount if config.cluster.mode == "eks" else ExistingClusterAndBucket
    return kind(config, stack, repository, versions)
