"""mlserve: wires the platform's parts together from the validated stack configuration."""

import pulumi

from components import config as stack_config
from components.aws_provider import aws_provider, stack_tags
from components.cluster import Cluster, ClusterArgs
from components.gpu_node_groups import GpuNodeGroups, GpuNodeGroupsArgs
from components.model_store import ModelStore, ModelStoreArgs
from components.network import Network, NetworkArgs

# Validated in full before anything is registered: a bad stack file touches nothing.
config = stack_config.load()
stack = pulumi.get_stack()
cluster_name = config.cluster_name(stack)
tags = stack_tags(config, stack)
on_aws = pulumi.ResourceOptions(providers={"aws": aws_provider(config, stack)})

network = Network("network", NetworkArgs(config=config.network, cluster_name=cluster_name), on_aws)

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

model_store = ModelStore(
    "models",
    ModelStoreArgs(
        cluster_name=cluster_name,
        bucket=config.model_bucket,
        serving=config.model_serving,
        oidc_provider_arn=cluster.oidc_provider_arn,
        oidc_issuer_url=cluster.oidc_issuer_url,
    ),
    on_aws,
)

pulumi.export("vpcId", network.vpc_id)
pulumi.export("privateSubnetIds", network.private_subnet_ids)
pulumi.export("publicSubnetIds", network.public_subnet_ids)
pulumi.export("clusterName", cluster.eks.name)
pulumi.export("clusterEndpoint", cluster.eks.endpoint)
pulumi.export("kubeconfig", cluster.kubeconfig)
pulumi.export("oidcProviderArn", cluster.oidc_provider_arn)
pulumi.export("modelBucketName", model_store.bucket_name)
pulumi.export("modelReaderRoleArn", model_store.reader_role_arn)
pulumi.export("systemNodeGroupName", cluster.system_nodes.name_output)
pulumi.export("gpuNodeGroupNames", gpu_nodes.node_group_names)
