"""The plan of one served model, decided before any resource is registered: its version and
canary, its tracks, where it runs, and the backend that serves it.

Every Kubernetes name a plan leads to is built by components/naming.py (the limits the config
checks) and by the plan's backend (components/serving_backend.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from components import naming
from components.config.serving import ServedModelConfig
from components.naming import CANARY, STABLE
from components.serving_backend import ServingBackend
from components.versions import TRITON_IMAGE_TAG
from modelrepo.layout import version_uri


@dataclass(frozen=True)
class Track:
    """One server resource of a model: the stable version, or a canary next to it."""

    name: str
    version: str
    min_replicas: int
    max_replicas: int
    autoscaler: str
    """keda, hpa, or none (fixed replicas)."""
    percent: int
    """Share of the model's requests the route sends here."""


@dataclass(frozen=True)
class ModelPlan:
    """Everything about one served model that is decided before registering resources."""

    name: str
    namespace: str
    service_account: str
    storage_prefix: str
    """The key prefix of model versions in the bucket (modelRepository.prefix)."""
    version: str
    config: ServedModelConfig
    gpu_pool: str | None
    """None: the model runs on CPU (gpus 0) with its configs/cpu.pbtxt."""
    backend: ServingBackend
    """What serves the model: its objects, names, pods and endpoint (components/backends.py
    picks it; the plan never imports a backend, so backends may import the plan)."""
    canary_version: str | None = None
    example_request: dict[str, Any] = field(default_factory=dict)
    """A small valid V2 request body for this model (for the curl in the stack outputs)."""
    triton_image_tag: str = TRITON_IMAGE_TAG
    ingress_host: str = ""
    """The Host this model answers on at the ingress gateway (KServe backend)."""

    def storage_uri(self, bucket: str, version: str) -> str:
        return version_uri(bucket, self.storage_prefix, version)

    @property
    def tracks(self) -> list[Track]:
        config, canary, canary_version = self.config, self.config.canary, self.canary_version
        if canary is None or canary_version is None:
            return [Track(STABLE, self.version, config.min_replicas, config.max_replicas,
                          config.autoscaler, 100)]
        # Fixed replicas unless the canary may grow; then the model's autoscaler on the canary's
        # own pods (a ScaledObject with triggers of its own).
        autoscaler = config.autoscaler if canary.ceiling > canary.replicas else "none"
        return [Track(STABLE, self.version, config.min_replicas, config.max_replicas,
                      config.autoscaler, 100 - canary.percent),
                Track(CANARY, canary_version, canary.replicas, canary.ceiling, autoscaler,
                      canary.percent)]

    def track(self, name: str) -> Track:
        return next(t for t in self.tracks if t.name == name)

    @property
    def pod_labels(self) -> dict[str, str]:
        """Labels every server pod of the model carries, whatever its track or backend (KServe
        copies the InferenceService's labels onto its pods; Seldon's componentSpec carries them,
        components/seldon.py)."""
        return {naming.MODEL_LABEL: self.name}

    def track_labels(self, track: str) -> dict[str, str]:
        """The labels of one track's server resource, before its revision is known."""
        return {naming.MODEL_LABEL: self.name, naming.TRACK_LABEL: track,
                naming.VERSION_LABEL: self.track(track).version}
