"""The one place a serving backend is picked from `modelServing.backend`: everything else asks
the object (components/serving_backend.py)."""

from __future__ import annotations

from components.kserve import KSERVE
from components.seldon import SELDON
from components.serving_backend import ServingBackend

BACKENDS: dict[str, ServingBackend] = {backend.name: backend for backend in (KSERVE, SELDON)}


def serving_backend(name: str) -> ServingBackend | None:
    """The backend `modelServing.backend` names; None for `none` (the platform without models)."""
    return BACKENDS.get(name)
