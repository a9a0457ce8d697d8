"""The `modelServing` section: where and how each model is served, scaled and watched."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from components import versions
from components.config.errors import ConfigError, Problem
from components.config.types import (
    CONTENT_HASH,
    ConfigModel,
    CpuQuantity,
    DnsLabel,
    MemoryQuantity,
    ModelName,
)

COLD_START_BUDGET_MAX_SECONDS = 330
"""A held request sends and receives nothing until the model answers, and the gateway's Network
Load Balancer closes a TCP connection idle for 350 seconds (its default idle timeout, Elastic Load
Balancing user guide, "Network Load Balancers", Connection idle timeout): the budget stays below
it, with room for the answer."""


class CanaryConfig(ConfigModel):
    """A second version of a model taking a share of its traffic, served by its own
    InferenceService next to the stable one (docs/operations.md, "Canary, promotion, rollback")."""

    version: str | None = Field(None, pattern=CONTENT_HASH,
                                description="Pin the canary to this model version, served from "
                                "the bucket (not uploaded: it must be there already); default: "
                                "the model's version in the repository folder, uploaded.")
    percent: int = Field(ge=0, le=100, description="Share of requests routed to the canary "
                         "(0 = dark launch).")
    replicas: int = Field(1, ge=1, le=20, description="Canary replicas (its floor); the canary "
                          "is its own InferenceService, `<model>-canary`.")
    max_replicas: int | None = Field(None, ge=1, le=100, description="Above `replicas`, the "
                                     "canary autoscales on its own pods (the model's autoscaler); "
                                     "default: fixed at `replicas`.")

    @model_validator(mode="after")
    def _replica_range(self) -> CanaryConfig:
        if self.max_replicas is not None and self.max_replicas < self.replicas:
            raise ConfigError([(("maxReplicas",), f"must be >= replicas ({self.replicas}), "
                                                      f"got {self.max_replicas}")])
        return self

    @property
    def ceiling(self) -> int:
        return self.max_replicas if self.max_replicas is not None else self.replicas


class ServedModelConfig(ConfigModel):
    """How one model of the repository is served, scaled and watched."""

    version: str | None = Field(None, pattern=CONTENT_HASH,
                                description="Pin this model to a version (its content hash) "
                                "already in the bucket, promoted or published: served from "
                                "there, never uploaded, checked at `pulumi up`. Default: the "
                                "model's version in the repository folder, uploaded by the "
                                "stack.")
    gpu_pool: str | None = Field(None, description="GPU node group to run on; default: the "
                                 "first of gpuNodeGroups.")
    min_replicas: int = Field(1, ge=0, le=100, description="Replica floor; 0 only where "
                              "allowScaleToZero.")
    max_replicas: int = Field(4, ge=1, le=100, description="Replica ceiling.")
    gpus: int = Field(1, ge=0, le=8, description="GPUs per replica; 0 serves on CPU with the "
                      "model's configs/cpu.pbtxt.")
    cpu: CpuQuantity = Field("2", description="CPU request (and limit) per replica: \"2\", "
                             "\"1.5\" or \"500m\".")
    memory: MemoryQuantity = Field("8Gi", description="Memory request and limit, with its unit "
                                   "(\"8Gi\", \"512Mi\").")
    autoscaler: Literal["keda", "hpa"] = Field(
        "keda", description="keda: Triton's queue backlog from Prometheus; hpa: CPU fallback.")
    target_pending_requests: int = Field(
        4, ge=1, le=1000, description="KEDA: queued requests per replica before scaling out.")
    target_cpu_utilization: int = Field(70, ge=10, le=100,
                                        description="HPA: average CPU utilisation target (%).")
    scale_up_stabilization_seconds: int = Field(0, ge=0, le=3600,
                                                description="Wait before scaling out again.")
    cooldown_seconds: int = Field(300, ge=0, le=3600,
                                  description="Wait before scaling in (scale-down window).")
    polling_seconds: int = Field(15, ge=5, le=300, description="KEDA polling interval (Seldon; "
                                 "KServe's KEDA integration keeps KEDA's default, 30 s).")
    canary: CanaryConfig | None = Field(None, description="Canary version and traffic share.")
    ready_timeout_minutes: int = Field(
        30, ge=1, le=240, description="How long `pulumi up` waits for a new version's replicas "
        "to be Ready (GPU node, image pull, model load) before it fails naming the model; not "
        "for a stable track at minReplicas 0.")
    cold_start_budget_seconds: int = Field(
        240, ge=10, le=COLD_START_BUDGET_MAX_SECONDS,
        description="minReplicas 0: how long a request to the model at zero replicas (HTTP; on "
        "Seldon gRPC is not held) is held while it wakes (GPU node, image pull, model load); past "
        "it the answer is 503 with Retry-After. At most 330: the NLB closes a connection idle "
        "for 350 s.")
    slo_p95_ms: int = Field(100, ge=1, description="p95 latency SLO; alert above it.")
    max_error_rate: float = Field(0.01, gt=0, lt=1, description="Alert above this failure "
                                  "ratio.")

    @model_validator(mode="after")
    def _rules(self) -> ServedModelConfig:
        problems: list[Problem] = []
        if self.max_replicas < self.min_replicas:
            problems.append((("maxReplicas",), "must be >= minReplicas "
                                               f"({self.min_replicas}), got {self.max_replicas}"))
        if self.autoscaler == "hpa" and self.min_replicas < 1:
            problems.append((("minReplicas",), "the hpa autoscaler can't scale to "
                                               "zero; use keda or minReplicas >= 1"))
        if (self.canary is not None and self.canary.version is not None
                and self.canary.version == self.version):
            problems.append((("canary", "version"), "must differ from version"))
        if problems:
            raise ConfigError(problems)
        return self


class SeldonConfig(ConfigModel):
    """Seldon Core v1, the opt-in backend of the original tutorial."""

    version: str = Field(versions.SELDON_LAST_APACHE_VERSION, pattern=r"^\d+\.\d+\.\d+$",
                         description="seldon-core-operator chart version.")
    accept_business_source_license: bool = Field(
        False, description="Required for versions after 1.17.1 (BSL 1.1, not open source).")

    @model_validator(mode="after")
    def _licence(self) -> SeldonConfig:
        newer = tuple(int(p) for p in self.version.split(".")) > tuple(
            int(p) for p in versions.SELDON_LAST_APACHE_VERSION.split("."))
        if newer and not self.accept_business_source_license:
            raise ConfigError([(("version",), f"{self.version} is under the "
                                    "Business Source License 1.1; set "
                                    "acceptBusinessSourceLicense: true to use it, or use "
                                    f"{versions.SELDON_LAST_APACHE_VERSION}")])
        return self


class ModelServingConfig(ConfigModel):
    """Where and how models are served, and who may read the model bucket."""

    namespace: DnsLabel = Field("models", max_length=63,
                           description="Namespace of the model servers.")
    service_account: DnsLabel = Field("model-server", max_length=63,
                                 description="Service account trusted by the model-reader role.")
    backend: Literal["kserve", "seldon", "none"] = Field(
        "kserve", description="Serving backend; none: the platform without models.")
    allow_scale_to_zero: bool = Field(False, description="Let models set minReplicas 0 "
                                      "(never in prod; the first request waits for a GPU node "
                                      "and a model load).")
    seldon: SeldonConfig = Field(default_factory=SeldonConfig,
                                 description="Seldon Core settings (backend seldon).")
    # A DNS-1035 label; the length every generated name allows is checked by `model_names_fit`.
    models: dict[ModelName, ServedModelConfig] = Field(
        default_factory=dict, description="Models to serve, by name; default: every model in "
        "the repository with default settings.")
