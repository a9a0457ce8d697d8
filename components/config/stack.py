"""The whole `mlserve:` namespace of a stack: StackConfig, whose sections are the other modules'
models (validated by components/config/validate.py)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    Field,
    SecretStr,
)

from components.config.bucket import ModelBucketConfig, ModelRepositoryConfig
from components.config.cluster import ClusterConfig
from components.config.gpu_capacity import GpuCapacityConfig
from components.config.network import NetworkConfig
from components.config.nodes import GpuNodeGroupConfig, SystemNodeGroupConfig
from components.config.platform import PlatformConfig
from components.config.serving import ModelServingConfig
from components.config.types import ConfigModel, HttpsSecret, KnownRegion
from policy import baseline

Environment = Literal["dev", "staging", "prod", "local"]


def _no_reserved_tags(value: dict[str, str]) -> dict[str, str]:
    reserved = sorted(k for k in value if k.lower().startswith("aws:"))
    if reserved:
        raise ValueError(f"must not use the reserved aws: prefix, got {reserved}")
    return value


class StackConfig(ConfigModel):
    """The whole `mlserve:` namespace of a stack."""

    environment: Environment = Field(description="dev, staging, prod or local; prod adds strict "
                                     "rules.")
    region: KnownRegion = Field(
        description="AWS region (one where EKS is offered).")
    account_id: str | None = Field(
        None, pattern=r"^\d{12}$",
        description="The AWS account the stack deploys to. Required in prod: the AWS provider "
        "refuses credentials of any other account, and every principal must belong to it.")
    prod_waivers: list[Literal[tuple(baseline.WAIVERS)]] = Field(  # type: ignore[valid-type]
        default_factory=list,
        description="Prod rules waived on purpose: " + "; ".join(
            f"{name}: {why}" for name, why in baseline.WAIVERS.items()) + ".")
    tags: Annotated[dict[Annotated[str, Field(min_length=1, max_length=128)],
                         Annotated[str, Field(max_length=256)]],
                    AfterValidator(_no_reserved_tags)] = Field(
        default_factory=dict, description="Tags for every AWS resource (with mlserve's own)."
    )
    network: NetworkConfig = Field(default_factory=NetworkConfig, description="The VPC.")
    cluster: ClusterConfig = Field(description="The EKS cluster.")
    system_node_group: SystemNodeGroupConfig = Field(
        default_factory=SystemNodeGroupConfig, description="Nodes for controllers."
    )
    gpu_node_groups: list[GpuNodeGroupConfig] = Field(
        default_factory=list, description="GPU node groups for model servers (at least one with "
        "cluster.mode eks)."
    )
    model_bucket: ModelBucketConfig = Field(
        default_factory=ModelBucketConfig, description="Model repository bucket."
    )
    model_serving: ModelServingConfig = Field(
        default_factory=ModelServingConfig, description="Model server identity."
    )
    model_repository: ModelRepositoryConfig = Field(
        default_factory=ModelRepositoryConfig, description="Model repository upload."
    )
    platform: PlatformConfig = Field(default_factory=PlatformConfig,
                                     description="Kubernetes platform parts.")
    gpu_capacity: GpuCapacityConfig = Field(default_factory=GpuCapacityConfig,
                                            description="The engine behind the GPU pools.")
    grafana_admin_password: SecretStr | None = Field(
        None, description="Grafana admin password; set with `--secret`. Default: generated.",
    )
    model_store_access_key_id: SecretStr | None = Field(
        None, description="s3Compatible: access key (`--secret`); default with platform.minio: "
        "generated.")
    model_store_secret_access_key: SecretStr | None = Field(
        None, description="s3Compatible: secret key (`--secret`); default with platform.minio: "
        "generated.")
    alert_webhook_url: HttpsSecret | None = Field(
        None, description="Slack or webhook URL for platform.monitoring.alerts.webhook "
        "(`--secret`).")

    def cluster_name(self, stack: str) -> str:
        return self.cluster.name or f"mlserve-{stack}"

    @property
    def high_availability(self) -> bool:
        configured = self.platform.high_availability
        return self.environment == "prod" if configured is None else configured


SECRET_KEYS = ("grafanaAdminPassword", "modelStoreAccessKeyId", "modelStoreSecretAccessKey",
               "alertWebhookUrl")
"""The keys that hold secrets: each must be set with `pulumi config set --secret`."""
