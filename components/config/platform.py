"""The `platform` section: the Kubernetes platform parts, each switched on or off and tuned."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from components import versions
from components.config.errors import ConfigError
from components.config.types import SNS_TOPIC_ARN, Cidr, ConfigModel


class PartConfig(ConfigModel):
    """A platform part that can be switched off per stack."""

    enabled: bool = Field(True, description="Install this part.")


class IstioConfig(PartConfig):
    gateway_scheme: Literal["internet-facing", "internal"] = Field(
        "internet-facing", description="Scheme of the ingress gateway's NLB."
    )
    gateway_source_ranges: list[Cidr] = Field(
        default_factory=list,
        description="CIDRs allowed to reach the ingress NLB; empty = anywhere.",
    )
    gateway_min_replicas: int = Field(1, ge=1, le=20, description="Ingress gateway pods (floor).")
    gateway_service_type: Literal["LoadBalancer", "NodePort"] = Field(
        "LoadBalancer", description="LoadBalancer (an NLB on EKS) or NodePort (kind, minikube).")
    gateway_node_port: int | None = Field(None, ge=30000, le=32767,
                                          description="NodePort of the gateway's HTTP port.")
    external_address: str | None = Field(
        None, pattern=r"^[\w.-]+(:\d+)?$",
        description="host[:port] clients use, for the stack outputs; default: the load "
        "balancer's address.")


class KServeConfig(PartConfig):
    ingress_domain: str = Field(
        "example.com", pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)+[a-z]{2,63}$",
        description="Domain of model hosts: <model>-<namespace>.<domain>.",
    )
    triton_image_tag: str = Field(versions.TRITON_IMAGE_TAG, pattern=r"^\d{2}\.\d{2}-py3$",
                                  description="Triton container tag for kserve-tritonserver.")


class AlertsConfig(ConfigModel):
    """Where Alertmanager sends alerts: an SNS topic (through IRSA, no keys), a Slack or webhook
    endpoint (its URL a Pulumi secret, delivered in a Kubernetes Secret), or both."""

    sns_topic: str | None = Field(
        None, pattern=r"^(create|" + SNS_TOPIC_ARN[1:-1] + r")$",
        description="`create`: an encrypted SNS topic owned by the stack (output alertTopicArn; "
        "subscribe your on-call to it); or the ARN of an existing topic in the stack's account.")
    webhook: Literal["slack", "webhook"] | None = Field(
        None, description="slack: a Slack incoming webhook; webhook: any Alertmanager webhook "
        "receiver. The URL is the secret alertWebhookUrl.")
    slack_channel: str | None = Field(None, pattern=r"^[#@]?[\w.-]{1,80}$",
                                      description="slack: channel override (default: the "
                                      "webhook's own channel).")

    @model_validator(mode="after")
    def _channel(self) -> AlertsConfig:
        if self.slack_channel and self.webhook != "slack":
            raise ConfigError([(("slackChannel",), "only with webhook slack")])
        return self

    @property
    def configured(self) -> bool:
        return bool(self.sns_topic or self.webhook)


class MonitoringConfig(PartConfig):
    retention: str = Field("15d", pattern=r"^\d+(h|d|w|y)$", description="Prometheus retention.")
    prometheus_storage_gib: int = Field(50, ge=10, le=16384,
                                        description="Prometheus volume (gp3).")
    alertmanager: bool = Field(True, description="Run Alertmanager.")
    alerts: AlertsConfig = Field(default_factory=AlertsConfig,
                                 description="Alert receivers; at least one in prod.")
    storage_class: str | None = Field(None, description="Prometheus volume's StorageClass; "
                                      "default: gp3 on EKS, the cluster's default otherwise.")


class ClusterAutoscalerConfig(PartConfig):
    expander: Literal["least-waste", "most-pods", "random"] = Field(
        "least-waste", description="How to pick a node group to grow."
    )
    scale_down_unneeded_time: str = Field("10m", pattern=r"^\d+(s|m|h)$",
                                          description="Idle time before a node is removed.")
    scale_down_utilization_threshold: float = Field(
        0.5, gt=0, le=1, description="CPU/memory requests share below which a node may go."
    )
    scale_down_gpu_utilization_threshold: float = Field(
        0.5, gt=0, le=1, description="GPU requests share below which a GPU node may go."
    )


class PlatformConfig(ConfigModel):
    """The Kubernetes platform layer: each part can be switched off or tuned."""

    high_availability: bool | None = Field(
        None, description="Two+ replicas and PodDisruptionBudgets for controllers; "
        "default: on in prod only."
    )
    cert_manager: PartConfig = Field(default_factory=PartConfig,
                                     description="cert-manager (KServe's webhook certificates).")
    load_balancer_controller: PartConfig = Field(default_factory=PartConfig,
                                                 description="AWS Load Balancer Controller.")
    istio: IstioConfig = Field(default_factory=IstioConfig,
                               description="Istio base, istiod and the ingress gateway.")
    kserve: KServeConfig = Field(default_factory=KServeConfig,
                                 description="KServe in Standard (raw) mode with Triton.")
    keda: PartConfig = Field(default_factory=PartConfig, description="KEDA event autoscaling.")
    monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig,
                                         description="kube-prometheus-stack.")
    nvidia_device_plugin: PartConfig = Field(
        default_factory=PartConfig,
        description="NVIDIA device plugin on AL2023 GPU nodes (Bottlerocket has its own).",
    )
    dcgm_exporter: PartConfig = Field(default_factory=PartConfig,
                                      description="GPU metrics (DCGM) into Prometheus.")
    metrics_server: PartConfig = Field(default_factory=PartConfig,
                                       description="metrics-server (HPA on CPU/memory).")
    cluster_autoscaler: ClusterAutoscalerConfig = Field(
        default_factory=ClusterAutoscalerConfig, description="cluster-autoscaler."
    )
    minio: PartConfig = Field(default_factory=lambda: PartConfig.model_validate({"enabled": False}),
                              description="A MinIO server in the cluster as the S3-compatible "
                              "model store (local stacks).")

    @model_validator(mode="after")
    def _requirements(self) -> PlatformConfig:
        needs = (
            ("kserve", "certManager", self.kserve.enabled and not self.cert_manager.enabled),
            ("kserve", "istio", self.kserve.enabled and not self.istio.enabled),
            ("dcgmExporter", "monitoring",
             self.dcgm_exporter.enabled and not self.monitoring.enabled),
        )
        problems = [((part, "enabled"), f"needs {dependency}.enabled, "
                                        f"which is false")
                    for part, dependency, broken in needs if broken]
        if problems:
            raise ConfigError(problems)
        return self
