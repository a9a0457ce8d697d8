"""Rules of capacity: a model pod fits its nodes, a pool holds its models during a rollout
(the numbers are components/config/capacity.py's)."""

from __future__ import annotations

import math
from collections.abc import Iterator

from components import versions
from components.config.capacity import (
    model_pool,
    node_room,
    pod_requests,
    replicas_per_node,
    rollout_replicas,
)
from components.config.errors import Key, Problem
from components.config.rules.scope import served_models
from components.config.serving import ServedModelConfig
from components.config.stack import StackConfig


def model_fits_its_nodes(config: StackConfig) -> Iterator[Problem]:
    """One replica's requests fit the allocatable of the smallest instance type it may land on:
    its GPU pool, or (gpus 0, on the stack's own EKS) the system node group."""
    for where, _, model in served_models(config):
        pool = model_pool(config, model)
        if pool is not None:
            types, what = pool.instance_types, f"pool {pool.name!r}"
        elif model.gpus == 0 and config.cluster.mode == "eks":
            types, what = config.system_node_group.instance_types, "the system node group"
        else:
            continue
        rooms = {t: room for t in types if (room := node_room(t)) is not None}
        if not rooms:
            continue
        cpu, memory = pod_requests(model, config.model_serving.backend)
        # The smallest node for each resource: the autoscaler may add any type of the pool.
        smallest_cpu = min(rooms, key=lambda t: rooms[t][0])
        smallest_memory = min(rooms, key=lambda t: rooms[t][1])
        if cpu > rooms[smallest_cpu][0]:
            yield ((*where, "cpu"), f"{model.cpu} (+{versions.SIDECAR_REQUESTS[0]}m for "
                   f"Istio's sidecar) doesn't fit a {smallest_cpu} of {what}: "
                   f"{rooms[smallest_cpu][0]}m is left for models")
        if memory > rooms[smallest_memory][1]:
            yield ((*where, "memory"), f"{model.memory} (+{versions.SIDECAR_REQUESTS[1]}Mi "
                   f"for Istio's sidecar) doesn't fit a {smallest_memory} of {what}: "
                   f"{rooms[smallest_memory][1]}Mi is left for models")


def pools_hold_model_floors(config: StackConfig) -> Iterator[Problem]:
    """A pool's maxSize nodes hold the floors of every model on it, plus one surge replica per
    model, or rollouts stall with the new pods Pending (and minReplicas is never reached)."""
    on_pool: dict[str, list[tuple[Key, str, ServedModelConfig, int]]] = {}
    for where, name, model in served_models(config):
        pool = model_pool(config, model)
        per_node = (replicas_per_node(model, pool.instance_types, config.model_serving.backend)
                    if pool else None)
        if pool is not None and per_node:
            on_pool.setdefault(pool.name, []).append((where, name, model, per_node))
    for index, pool in enumerate(config.gpu_node_groups):
        models = on_pool.get(pool.name, [])
        nodes = sum(rollout_replicas(model) / per_node for _, _, model, per_node in models)
        if not models or nodes <= pool.max_size:
            continue
        if len(models) == 1:
            where, name, model, per_node = models[0]
            yield ((*where, "minReplicas"),
                   f"{rollout_replicas(model)} replica(s) are needed during a rollout (the "
                   "floor of each track plus one new replica before an old one stops), pool "
                   f"{pool.name!r} holds {per_node * pool.max_size} ({per_node} per node, "
                   f"maxSize {pool.max_size})")
        else:
            detail = ", ".join(f"{name}: {rollout_replicas(model)} replica(s), {per_node} per "
                               f"node" for _, name, model, per_node in models)
            yield (("gpuNodeGroups", index, "maxSize"),
                   f"must be >= {math.ceil(nodes)}: the models on pool {pool.name!r} need that "
                   f"many nodes during a rollout (the floor of each track plus one new replica "
                   f"per model; "
                   f"{detail}), got {pool.max_size}")
