"""One served model as a part: per track its server resource (from the plan's backend,
components/kserve.py or components/seldon.py) with the readiness budget `pulumi up` waits on,
the model's route, and what watches it (components/model_observability.py).

- `pulumi up` waits, per track, on a PodDisruptionBudget selecting the pods of the track's current
  revision: with `minAvailable: floor - 1`, its `DisruptionAllowed` condition turns True once the
  floor of new pods is Ready. (KServe's InferenceService Ready can't serve: in Standard mode it
  stays True all through a rolling update.)
- On KServe the VirtualService depends on those budgets, so traffic moves to a new canary only
  once it is Ready; the engine deletes removed resources (a rolled-back or promoted canary) only
  after every update, so no route points at a deleted Service.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components import naming
from components.cold_start import held, interceptor_route
from components.k8s import custom_resource
from components.model_observability import watch_model
from components.model_plan import ModelPlan

WAIT_FOR = "pulumi.com/waitFor"
READY_CONDITION = "condition=DisruptionAllowed"


def readiness_budget(plan: ModelPlan, server: Mapping[str, Any]) -> dict[str, Any] | None:
    """The PodDisruptionBudget of one track's current revision, which `pulumi up` waits on.

    `minAvailable: floor - 1` makes `DisruptionAllowed` True exactly when at least `floor` pods of
    the revision are Ready (kubernetes pkg/controller/disruption/disruption.go: with an integer
    minAvailable, disruptionsAllowed = currentHealthy - minAvailable, and the condition is True
    when that is > 0), and as a budget it lets a node drain take one replica below the floor at
    a time. None for a track with no floor (scale to zero), which has nothing to wait for.

    `server` is the track's server resource (an InferenceService, a SeldonDeployment), whose
    pods carry its labels.
    """
    labels = server["metadata"]["labels"]
    track = labels[naming.TRACK_LABEL]
    floor = plan.track(track).min_replicas
    if floor < 1:
        return None
    selector = {k: labels[k] for k in (naming.MODEL_LABEL, naming.TRACK_LABEL,
                                       naming.REVISION_LABEL)}
    return {
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": plan.backend.budget_name(plan, track), "namespace": plan.namespace,
                     "labels": labels,
                     # The status is current when observedGeneration reaches the generation,
                     # which the provider checks before the condition (docs/architecture.md, "Rollouts").
                     "annotations": {WAIT_FOR: READY_CONDITION}},
        "spec": {"minAvailable": floor - 1, "selector": {"matchLabels": selector}},
    }


def _server_of(plan: ModelPlan, track: str) -> Callable[[str], dict[str, Any]]:
    """One track's server resource for a bucket name."""
    return lambda bucket: plan.backend.server(plan, bucket, track)


@dataclass
class InferenceServiceArgs:
    plan: ModelPlan
    bucket: pulumi.Input[str]
    depends_on: Sequence[pulumi.Resource] = field(default_factory=list)
    """The runtime release, the reader role, the uploaded objects, KEDA: all before the model."""
    monitoring: pulumi.Resource | None = None
    """The monitoring stack's release; None: nothing watches the model (no CRDs for it)."""
    cold_start: Sequence[pulumi.Resource] = field(default_factory=list)
    """Where a track is held while it wakes: the KEDA HTTP add-on's release (the
    InterceptorRoute CRD, the interceptor) and the fallback that answers past the budget."""


class InferenceService(pulumi.ComponentResource):
    """One served model: its server resources, its route, and everything that watches it."""

    def __init__(self, name: str, args: InferenceServiceArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlserve:inference_service:InferenceService", name, None, opts)
        plan = args.plan
        bucket = pulumi.Output.from_input(args.bucket)
        self._serve_tracks(name, args, bucket)
        if args.monitoring is not None:
            watch_model(self, name, plan, args.depends_on, args.monitoring)
        self.register_outputs({"name": plan.name, "version": plan.version,
                               "canaryVersion": plan.canary_version})

    def _serve_tracks(self, name: str, args: InferenceServiceArgs,
                      bucket: pulumi.Output[str]) -> None:
        """One server resource per track, each with the budget `pulumi up` waits on, then the
        route, which (KServe) moves traffic only once every budget is satisfied."""
        plan, backend = args.plan, args.plan.backend
        timeout = f"{plan.config.ready_timeout_minutes}m"
        servers: list[pulumi.Resource] = []
        budgets: list[pulumi.Resource] = []
        for track in plan.tracks:
            # The bucket name is only known at deploy time: it goes into the storage URIs, and
            # so into the revision label.
            manifest = bucket.apply(_server_of(plan, track.name))
            template = backend.server(plan, "BUCKET", track.name)
            metadata = {**template["metadata"],
                        "labels": manifest.apply(lambda m: m["metadata"]["labels"])}
            server = custom_resource(self, backend.server_resource_name(name, track.name),
                                     template, args.depends_on,
                                     spec=manifest.apply(lambda m: m["spec"]),
                                     metadata=metadata)
            servers.append(server)
            budget = readiness_budget(plan, template)
            if budget is None:
                continue
            live = manifest.apply(lambda m: readiness_budget(plan, m) or {})
            budgets.append(k8s.policy.v1.PodDisruptionBudget(
                f"{name}-{track.name}-budget",
                metadata={**budget["metadata"],
                          "labels": live.apply(lambda b: b["metadata"]["labels"])},
                spec=live.apply(lambda b: b["spec"]),
                opts=pulumi.ResourceOptions(
                    parent=self, depends_on=[server],
                    custom_timeouts=pulumi.CustomTimeouts(create=timeout, update=timeout))))
        after = [*servers, *budgets] if backend.route_waits_for_ready else servers
        # A held track's InterceptorRoute exists before the gateway sends it anything (the
        # interceptor answers 404 to a Host no route matches, interceptor/middleware/routing.go:
        # 41-47).
        intercepted = [
            custom_resource(self, f"{name}-{track.name}-interceptor-route",
                            interceptor_route(plan, track.name),
                            [*args.depends_on, *args.cold_start])
            for track in plan.tracks if held(plan, track)]
        custom_resource(self, f"{name}-route", backend.route(plan, backend.gateway(plan)),
                        [*args.depends_on, *after, *intercepted])
