"""What a model pod requests and what a node holds: the numbers the capacity rules
(rules/capacity.py) check and the serving backends schedule by."""

from __future__ import annotations

from collections.abc import Sequence

from components import versions
from components.config.nodes import GpuNodeGroupConfig
from components.config.quantities import cpu_millicores, memory_mib
from components.config.serving import ServedModelConfig
from components.config.stack import StackConfig


def model_pool(config: StackConfig, model: ServedModelConfig) -> GpuNodeGroupConfig | None:
    """The GPU pool a model runs on (None: on CPU, the system nodes)."""
    if model.gpus == 0 or not config.gpu_node_groups:
        return None
    name = model.gpu_pool or config.gpu_node_groups[0].name
    return next((g for g in config.gpu_node_groups if g.name == name), None)


def pod_requests(model: ServedModelConfig, backend: str = "kserve") -> tuple[float, float]:
    """(CPU millicores, memory MiB) one model pod requests, Istio's sidecar included.

    On Seldon the storage initializer is an init container with requests of its own (set in the
    operator's chart values from versions.SELDON_INITIALIZER_REQUESTS): the scheduler counts the
    larger of it and the serving container, next to the sidecar that runs beside both. There is
    no executor container (the predictor runs with `seldon.io/no-engine`)."""
    sidecar_cpu, sidecar_memory = versions.SIDECAR_REQUESTS
    cpu, memory = cpu_millicores(model.cpu), memory_mib(model.memory)
    if backend == "seldon":
        init_cpu, init_memory = versions.SELDON_INITIALIZER_REQUESTS
        cpu, memory = max(cpu, init_cpu), max(memory, init_memory)
    return cpu + sidecar_cpu, memory + sidecar_memory


def node_room(instance_type: str) -> tuple[int, int] | None:
    """(CPU millicores, memory MiB) a node leaves for model pods, or None if not in the facts
    table (components/versions.py)."""
    facts = versions.INSTANCE_FACTS.get(instance_type)
    if facts is None:
        return None
    cpu, memory = versions.DAEMONSET_ALLOWANCE
    return facts.allocatable_cpu_millicores - cpu, facts.allocatable_memory_mib - memory


def replicas_per_node(model: ServedModelConfig, instance_types: Sequence[str],
                      backend: str = "kserve") -> int | None:
    """How many replicas of `model` the smallest of `instance_types` holds (None: unknown)."""
    rooms = [room for t in instance_types if (room := node_room(t)) is not None]
    if not rooms or len(rooms) < len(instance_types):
        return None
    cpu, memory = pod_requests(model, backend)
    fits = [int(room_cpu // cpu) for room_cpu, _ in rooms] + \
        [int(room_memory // memory) for _, room_memory in rooms]
    if model.gpus:
        fits += [versions.INSTANCE_FACTS[t].gpus // model.gpus for t in instance_types]
    return min(fits)


def rollout_replicas(model: ServedModelConfig) -> int:
    """Replicas a model's pool must hold during a rollout: each track's floor plus the one extra
    replica a rolling update with maxUnavailable 0 starts before it stops an old one. One spare
    is enough for both tracks: whichever surge pod is placed first completes its step and frees
    a replica for the other. Seldon Core's Deployments roll the same way (the operator sets
    `maxUnavailable` to an int-or-string whose type is left at int 0, and maxSurge defaults to
    25 %, at least one pod: seldondeployment_controller.go:998); a second surge pod, above four
    replicas, waits Pending for the slot the first one frees."""
    return model.min_replicas + (model.canary.replicas if model.canary else 0) + 1
