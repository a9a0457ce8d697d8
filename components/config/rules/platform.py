"""Rules between the platform's parts, the cluster and the node pools."""

from __future__ import annotations

from collections.abc import Iterator

from pydantic.alias_generators import to_snake

from components.config.errors import Problem
from components.config.stack import StackConfig


def unique_pool_names(config: StackConfig) -> Iterator[Problem]:
    names = [g.name for g in config.gpu_node_groups]
    for index, name in enumerate(names):
        if name in names[:index]:
            yield ("gpuNodeGroups", index, "name"), f"must be unique, got {name!r} twice"


def eks_needs_gpu_pools(config: StackConfig) -> Iterator[Problem]:
    if config.cluster.mode == "eks" and not config.gpu_node_groups:
        yield ("gpuNodeGroups",), "must have at least 1 item(s) with cluster.mode eks"


def gateway_load_balancer_needs_controller(config: StackConfig) -> Iterator[Problem]:
    istio = config.platform.istio
    if (config.cluster.mode == "eks" and istio.enabled
            and istio.gateway_service_type == "LoadBalancer"
            and not config.platform.load_balancer_controller.enabled):
        # The gateway's NLB comes from the controller.
        yield (("platform", "istio", "enabled"),
               "needs loadBalancerController.enabled, which is false")


def aws_parts_need_eks(config: StackConfig) -> Iterator[Problem]:
    if config.cluster.mode == "eks":
        return
    for part in ("loadBalancerController", "clusterAutoscaler"):
        if getattr(config.platform, to_snake(part)).enabled:
            yield ("platform", part, "enabled"), "needs cluster.mode eks"
    if config.model_bucket.mode == "create":
        yield (("modelBucket", "mode"),
               "create needs cluster.mode eks; use existing or s3Compatible")


def gateway_node_port_needs_node_port_service(config: StackConfig) -> Iterator[Problem]:
    istio = config.platform.istio
    if istio.gateway_node_port and istio.gateway_service_type != "NodePort":
        yield ("platform", "istio", "gatewayNodePort"), "needs gatewayServiceType NodePort"


def backend_needs_its_platform(config: StackConfig) -> Iterator[Problem]:
    serving, platform = config.model_serving, config.platform
    if serving.backend == "seldon" and not (platform.istio.enabled and platform.keda.enabled
                                            and platform.kserve.enabled):
        yield (("modelServing", "backend"), "seldon needs platform.istio, platform.keda and "
               "platform.kserve enabled (the serving platform owns the meshed model namespace)")
    if serving.backend == "seldon" and config.model_bucket.mode == "s3Compatible":
        yield (("modelServing", "backend"),
               "seldon reads S3 through IRSA only; use kserve with an S3-compatible store")
    if serving.backend == "kserve" and not platform.kserve.enabled:
        yield ("modelServing", "backend"), "kserve needs platform.kserve.enabled"


def gpu_pools_have_a_device_plugin(config: StackConfig) -> Iterator[Problem]:
    """Nodes advertise nvidia.com/gpu only through a device plugin: the stack installs NVIDIA's
    on AL2023 nodes; Bottlerocket's NVIDIA AMI ships one. (Checked while models are served: the
    platform alone, backend none, may leave GPUs to the cluster's own owners.)"""
    if (config.cluster.mode != "eks" or config.platform.nvidia_device_plugin.enabled
            or config.model_serving.backend == "none"):
        return
    for index, pool in enumerate(config.gpu_node_groups):
        if pool.ami_type.startswith("AL2023"):
            yield (("gpuNodeGroups", index, "amiType"),
                   f"{pool.ami_type} needs platform.nvidiaDevicePlugin.enabled (the AMI has no "
                   "device plugin, so no pod could get a GPU); or use BOTTLEROCKET_x86_64_NVIDIA")


def empty_pools_need_an_autoscaler(config: StackConfig) -> Iterator[Problem]:
    """Without cluster-autoscaler a pool keeps its desiredSize: at 0 it never gets a node.
    (Checked while models are served, like the device plugin.)"""
    if (config.cluster.mode != "eks" or config.platform.cluster_autoscaler.enabled
            or config.model_serving.backend == "none"
            or config.gpu_capacity.engine == "karpenter"):  # Karpenter launches them
        return
    for index, pool in enumerate(config.gpu_node_groups):
        if not (pool.desired_size if pool.desired_size is not None else pool.min_size):
            yield (("gpuNodeGroups", index, "minSize"),
                   "0 (with no desiredSize) needs platform.clusterAutoscaler.enabled: nothing "
                   "else would ever add a node, so no model could run on the pool")


def alert_receivers_have_what_they_need(config: StackConfig) -> Iterator[Problem]:
    monitoring = config.platform.monitoring
    alerts = monitoring.alerts
    where = ("platform", "monitoring", "alerts")
    if alerts.configured and not (monitoring.enabled and monitoring.alertmanager):
        yield where, "needs platform.monitoring.enabled and alertmanager"
    if alerts.sns_topic and config.cluster.mode != "eks":
        yield (*where, "snsTopic"), "needs cluster.mode eks (Alertmanager publishes through IRSA)"
    if alerts.webhook and config.alert_webhook_url is None:
        yield (*where, "webhook"), "needs the secret alertWebhookUrl"
    if config.alert_webhook_url is not None and not alerts.webhook:
        yield ("alertWebhookUrl",), "set only with platform.monitoring.alerts.webhook"
