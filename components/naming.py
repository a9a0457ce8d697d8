"""Every Kubernetes name derived from a model's name, built the way the stack and the pinned
controllers build them, and the limits each must fit.

The stack serves each model as at most two InferenceServices with fixed names, one per track
(`<model>-stable`, `<model>-canary`), so a version change rolls a Deployment instead of renaming it
(docs/architecture.md, "Rollouts"). KServe and KEDA then derive further names from them; a name
over its limit is refused by the API server or by KEDA's webhook at deploy time, so the
configuration rule (components/config/rules/models.py, `model_names_fit`) builds every one of them
with these functions and refuses the model name beforehand. On the Seldon backend the names are
Seldon Core's operator's (docs/architecture.md, "Seldon Core"), ported below from its v1.17.1
source.

This module imports nothing from the stack, so the configuration can use it.
"""

from __future__ import annotations

import hashlib
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


def generated_names(model: str, backend: str = "kserve") -> list[GeneratedName]:
    """Every name limited to a DNS label that the stack, the backend's controller and KEDA derive
    from `model` on `backend` (the `modelServing.backend` value)."""
    return _GENERATED_NAMES[backend](model)


def kserve_generated_names(model: str) -> list[GeneratedName]:
    """KServe's, for both tracks."""
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


def name_problems(model: str, backend: str = "kserve") -> list[str]:
    """Why `model` can't be served, one line per generated name over its limit."""
    return [f"{name.what} {name.value!r} would be {len(name.value)} characters, over "
            f"{name.limit}" for name in generated_names(model, backend)
            if len(name.value) > name.limit]


def longest_model_name(backend: str = "kserve") -> int:
    """The longest model name whose every generated name fits on `backend`."""
    length = 1
    while not name_problems("a" * (length + 1), backend):
        length += 1
    return length


# ---- Seldon Core v1.17.1 --------------------------------------------------------------------
# The operator derives every object's name from the SeldonDeployment's, the predictor's and the
# componentSpec's (operator/apis/machinelearning.seldon.io/v1/seldondeployment_types.go). A name
# over 63 characters becomes `seldon-<md5 of the name>`, which no pattern of the stack could
# select: the stack chooses names that never reach that point, and the config refuses models
# whose names would.

SELDON_PREDICTOR = "default"
"""The predictor's name: part of the Service the route targets and of every derived name."""
SELDON_COMPONENT = "triton"
"""`componentSpecs[0].metadata.name`: with it the Deployment is named after it instead of after
the container names (`<model>-default-0-<model>`, 2m+11 characters)."""
SELDON_HASHED_PREFIX = "seldon"


def seldon_fit(name: str) -> str:
    """The operator's fallback for a name over 63 characters (seldondeployment_types.go:92-96,
    98-105, 127-146, 157-172, 213-220): `seldon-` and the name's md5 in hex."""
    if len(name) <= DNS_LABEL_MAX:
        return name
    return f"{SELDON_HASHED_PREFIX}-{hashlib.md5(name.encode()).hexdigest()}"


def seldon_deployment(sdep: str, predictor_name: str = SELDON_PREDICTOR,
                      index: int = 0, component: str = SELDON_COMPONENT) -> str:
    """`GetDeploymentName` (seldondeployment_types.go:127-146, chart default
    `manager.deploymentNameAsPrefix: false`): the Deployment of componentSpecs[index]. The
    operator names that Deployment's KEDA ScaledObject, or its HPA, the same
    (seldondeployment_controller.go:169-193, 195-220)."""
    return seldon_fit(f"{sdep}-{predictor_name}-{index}-{component}")


def seldon_predictor_service(sdep: str, predictor_name: str = SELDON_PREDICTOR) -> str:
    """`GetPredictorKey` (seldondeployment_types.go:157-172): the predictor's Service, which the
    route targets, and the pods' `seldon-app` label."""
    return seldon_fit(f"{sdep}-{predictor_name}")


def seldon_container_service(sdep: str, container: str,
                             predictor_name: str = SELDON_PREDICTOR) -> str:
    """`GetContainerServiceName` (seldondeployment_types.go:213-220)."""
    return seldon_fit(f"{sdep}-{predictor_name}-{container}")


def seldon_keda_hpa(model: str) -> str:
    """The HPA KEDA creates for the model's ScaledObject (named like its Deployment)."""
    return f"keda-hpa-{seldon_deployment(model)}"


def seldon_pod_prefix(model: str) -> str:
    return f"{seldon_deployment(model)}-"


def seldon_budget(model: str, track: str = STABLE) -> str:
    """The readiness budget of a track's pods (the SeldonDeployment itself is `<model>`)."""
    return f"{model}-{track}"


def seldon_generated_names(model: str) -> list[GeneratedName]:
    deployment = f"{model}-{SELDON_PREDICTOR}-0-{SELDON_COMPONENT}"
    return [
        GeneratedName("SeldonDeployment and its route", model, DNS_LABEL_MAX),
        GeneratedName("predictor Service", f"{model}-{SELDON_PREDICTOR}", DNS_LABEL_MAX),
        # Unhashed on purpose: a hashed name would escape every pod pattern of the stack.
        GeneratedName("Deployment and ScaledObject", deployment, DNS_LABEL_MAX),
        GeneratedName("KEDA's HPA", f"keda-hpa-{deployment}", DNS_LABEL_MAX),
        GeneratedName("the pods' name prefix", f"{deployment}-", GENERATED_PREFIX_MAX),
        # The container is named after the model; the operator labels the pods with
        # `seldon-app-svc-<container>` (seldondeployment_controller.go:754, 800-802): a label
        # key's name part is at most 63 characters.
        GeneratedName("the pods' container Service label key", f"seldon-app-svc-{model}",
                      DNS_LABEL_MAX),
        GeneratedName("readiness budget", seldon_budget(model), DNS_LABEL_MAX),
    ]


_GENERATED_NAMES = {"kserve": kserve_generated_names, "seldon": seldon_generated_names}
MAX_MODEL_NAME_LENGTH = longest_model_name()
"""The longest model name whose every generated name fits (computed from the functions above)."""
