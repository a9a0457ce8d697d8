"""Every Kubernetes name derived from a model's name, built the way the stack and the pinned
controllers build them, and the limits each must fit.

The stack serves each model as at most two InferenceServices with fixed names, one per track
(`<model>-stable`, `<model>-canary`), so a version change rolls a Deployment instead of renaming
it (README, "Rollouts"). KServe and KEDA then derive further names from them; a name over its
limit is refused by the API server or by KEDA's webhook at deploy time, so the configuration
rule (components/config.py, `model_names_fit`) builds every one of them with these functions and
refuses the model name beforehand.

This module imports nothing from the stack, so the configuration can use it.
"""

from __future__ import annotations

from dataclasses import dataclass

STABLE = "stable"
CANARY = "canary"
TRACKS = (STABLE, CANARY)

# Labels the stack puts on every model-serving object (InferenceService, SeldonDeployment, the
# readiness budgets). KServe copies an InferenceService's labels onto its Deployment, Service,
# ScaledObject and pods (kserve v0.20.0 predictor.go buildObjectMeta, keda_reconciler.go
# createKedaScaledObject), so pods carry them too.
MODEL_LABEL = "mlserve.io/model"
TRACK_LABEL = "mlserve.io/track"
VERSION_LABEL = "mlserve.io/version"
REVISION_LABEL = "mlserve.io/revision"
"""Digest of everything that goes into a track's pod template: a rollout is a new revision."""

DNS_LABEL_MAX = 63
"""Kubernetes label values and DNS-1123/1035 labels (Service names, HPA names KEDA checks)."""
GENERATED_PREFIX_MAX = 58
"""The API server keeps at most 58 characters of a generateName prefix (kubernetes
staging/src/k8s.io/apiserver/pkg/storage/names/generate.go, maxGeneratedNameLength = 63 - 5):
a pod named `<replicaset>-<random>` keeps `<deployment>-` only if it fits, and the stack's
PromQL selects a track's pods by that prefix."""


def inference_service(model: str, track: str = STABLE) -> str:
    """The InferenceService of one track of a model."""
    return f"{model}-{track}"


def predictor(isvc: str) -> str:
    """KServe's name for the predictor's Deployment and Service with no `predictor.name`
    (kserve v0.20.0 pkg/constants/constants.go PredictorServiceName). The generated
    ScaledObject (keda_reconciler.go createKedaScaledObject) and HPA (hpa_reconciler.go) take the
    Deployment's name."""
    return f"{isvc}-predictor"


def keda_hpa(isvc: str) -> str:
    """The HPA KEDA creates for the ScaledObject (kedacore/keda v2.20.2
    apis/keda/v1alpha1/scaledobject_webhook.go getHpaName), refused over 63 characters."""
    return f"keda-hpa-{predictor(isvc)}"


def pod_app_label(isvc: str) -> str:
    """The `app` label KServe puts on predictor pods (constants.go GetRawServiceLabel)."""
    return f"isvc.{predictor(isvc)}"


def pod_prefix(isvc: str) -> str:
    """What a predictor pod's name starts with: the Deployment's name and a dash."""
    return f"{predictor(isvc)}-"


@dataclass(frozen=True)
class GeneratedName:
    what: str
    value: str
    limit: int


def generated_names(model: str) -> list[GeneratedName]:
    """Every name limited to a DNS label that the stack, KServe and KEDA derive from `model`,
    for both tracks."""
    names = []
    for track in TRACKS:
        isvc = inference_service(model, track)
        names += [
            GeneratedName(f"InferenceService ({track})", isvc, DNS_LABEL_MAX),
            GeneratedName(f"predictor Deployment and Service ({track})", predictor(isvc),
                          DNS_LABEL_MAX),
            GeneratedName(f"KEDA's HPA ({track})", keda_hpa(isvc), DNS_LABEL_MAX),
            GeneratedName(f"the pods' `app` label ({track})", pod_app_label(isvc), DNS_LABEL_MAX),
            GeneratedName(f"the pods' name prefix ({track})", pod_prefix(isvc),
                          GENERATED_PREFIX_MAX),
        ]
    return names


def name_problems(model: str) -> list[str]:
    """Why `model` can't be served, one line per generated name over its limit."""
    return [f"{name.what} {name.value!r} would be {len(name.value)} characters, over "
            f"{name.limit}" for name in generated_names(model) if len(name.value) > name.limit]


def _longest_model_name() -> int:
    length = 1
    while not name_problems("a" * (length + 1)):
        length += 1
    return length


MAX_MODEL_NAME_LENGTH = _longest_model_name()
"""The longest model name whose every generated name fits (computed from the functions above)."""
