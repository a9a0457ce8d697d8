"""The PromQL the stack writes about a model: which pods are its own, the KEDA triggers that
scale a track, the alerts and the dashboard's panels. Pods are selected by the names the plan's
backend gives them (components/serving_backend.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from components import cold_start
from components.naming import STABLE

if TYPE_CHECKING:
    from components.model_plan import ModelPlan


def pod_selector(namespace: str, model: str, pattern: str) -> str:
    """PromQL label matchers for pods of one model in one namespace."""
    return f'namespace="{namespace}",model="{model}",pod=~"{pattern}"'


def model_pods(plan: ModelPlan) -> str:
    """PromQL matchers for all of this model's server pods."""
    return pod_selector(plan.namespace, plan.name, plan.backend.pod_pattern(plan))


def backlog_query(plan: ModelPlan, track: str = STABLE) -> str:
    """Requests waiting in Triton's queues on one track's pods: rises the moment traffic
    outgrows capacity, unlike a request rate averaged over a minute. During a rolling update the
    track's old and new pods share the prefix, so both count."""
    selector = pod_selector(plan.namespace, plan.name, plan.backend.pod_pattern(plan, track))
    return f"sum(nv_inference_pending_request_count{{{selector}}})"


def demand_query(plan: ModelPlan) -> str:
    """1 while the gateway sees requests for the model, else 0: exists with zero replicas (Triton's
    own metrics don't), so KEDA can wake a model scaled to zero. Capped at 1 so it never asks
    for more than one replica; the backlog decides beyond that."""
    return (f"clamp_max(sum(rate(istio_requests_total{{reporter=\"source\","
            f"destination_service_namespace=\"{plan.namespace}\","
            f"destination_service_name=\"{plan.backend.service(plan)}\"}}[2m])), 1)")


def held_demand_query(plan: ModelPlan, track: str) -> str:
    """demand_query's twin for a track whose requests the KEDA HTTP add-on's interceptor holds
    while it wakes (components/cold_start.py): the gateway then sends them to the interceptor, and
    a held request reaches neither the model's Service nor Triton. 1 while the interceptor has a
    request of the track's route in flight (held ones included; the gauge
    `interceptor_request_concurrency` rises before the wait) or answered one in the last two
    minutes (`interceptor_request_count_total`, counted when the answer is written), else 0. Its
    labels `route_name` and `route_namespace` name the route; `namespace` would be the
    interceptor's own."""
    route = (f'route_namespace="{plan.namespace}",'
             f'route_name="{cold_start.route_name(plan, track)}"')
    return (f"clamp_max((sum(interceptor_request_concurrency{{{route}}}) or vector(0)) + "
            f"(sum(rate(interceptor_request_count_total{{{route}}}[2m])) or vector(0)), 1)")


def keda_triggers(plan: ModelPlan, track: str = STABLE) -> list[tuple[str, str]]:
    """(Prometheus query, threshold) pairs KEDA scales a track on, for either backend: Triton's
    backlog on the track's own pods, plus, for a track that may be at zero replicas, the demand
    that wakes it up: the interceptor's, where it holds the track's requests, else the
    gateway's; both where the interceptor holds only the track's HTTP and the gateway sends its
    gRPC straight to the Service (Seldon). KEDA activates on any trigger and the HPA takes the
    largest, so either wakes it, and neither asks for more than one replica."""
    triggers = [(backlog_query(plan, track), str(plan.config.target_pending_requests))]
    spec = plan.track(track)
    if spec.min_replicas == 0:
        held = cold_start.held(plan, spec)
        if held:
            triggers.append((held_demand_query(plan, track), "1"))
        if not held or plan.backend.grpc_direct_while_held:
            triggers.append((demand_query(plan), "1"))
    return triggers


def alert_expressions(plan: ModelPlan) -> dict[str, str]:
    pods = model_pods(plan)
    return {
        "ModelErrorRateHigh": (
            f"sum(rate(nv_inference_request_failure{{{pods}}}[5m])) / "
            f"clamp_min(sum(rate(nv_inference_request_success{{{pods}}}[5m])) + "
            f"sum(rate(nv_inference_request_failure{{{pods}}}[5m])), 1e-9) "
            f"> {plan.config.max_error_rate}"),
        "ModelLatencyP95AboveSLO": (
            f'max(nv_inference_request_summary_us{{{pods},quantile="0.95"}}) / 1000 '
            f"> {plan.config.slo_p95_ms}"),
        "ModelPodsPendingForGPU": (
            f'sum(kube_pod_status_phase{{namespace="{plan.namespace}",'
            f'pod=~"{plan.backend.pod_pattern(plan)}",phase="Pending"}}) > 0'),
    }


def dashboard_queries(plan: ModelPlan) -> dict[str, str]:
    pods = model_pods(plan)
    gpu_pods = (f'exported_namespace="{plan.namespace}",'
                f'exported_pod=~"{plan.backend.pod_pattern(plan)}"')
    held = [cold_start.route_name(plan, t.name) for t in plan.tracks
            if cold_start.held(plan, t)]
    waking: dict[str, str] = {}
    if held:
        # The interceptor's view of a model that may be at zero replicas: requests held (or in
        # flight) now, and the 503s past the budget (the fallback's, and any of the model's).
        routes = f'route_namespace="{plan.namespace}",route_name=~"{"|".join(held)}"'
        waking = {
            "Requests held or in flight at the interceptor":
                f"sum(interceptor_request_concurrency{{{routes}}})",
            "503 answers through the interceptor (/s)":
                f'sum(rate(interceptor_request_count_total{{{routes},code="503"}}[5m]))',
        }
    return {
        "Requests/s": f"sum(rate(nv_inference_request_success{{{pods}}}[1m]))",
        "Failures/s": f"sum(rate(nv_inference_request_failure{{{pods}}}[1m]))",
        "p50 latency (ms)": f'max(nv_inference_request_summary_us{{{pods},quantile="0.5"}}) / 1000',
        "p95 latency (ms)": f'max(nv_inference_request_summary_us{{{pods},quantile="0.95"}})'
                            " / 1000",
        "p99 latency (ms)": f'max(nv_inference_request_summary_us{{{pods},quantile="0.99"}})'
                            " / 1000",
        "Queue time per request (ms)": (
            f"sum(rate(nv_inference_queue_duration_us{{{pods}}}[1m])) / "
            f"clamp_min(sum(rate(nv_inference_request_success{{{pods}}}[1m])), 1e-9) / 1000"),
        "Pending requests": f"sum(nv_inference_pending_request_count{{{pods}}})",
        "Batch size (inferences per execution)": (
            f"sum(rate(nv_inference_count{{{pods}}}[1m])) / "
            f"clamp_min(sum(rate(nv_inference_exec_count{{{pods}}}[1m])), 1e-9)"),
        "Replicas": f'count(nv_inference_count{{{pods}}})',
        "GPU utilisation (%)": f"avg(DCGM_FI_DEV_GPU_UTIL{{{gpu_pods}}})",
        "GPU memory used (MiB)": f"sum(DCGM_FI_DEV_FB_USED{{{gpu_pods}}})",
        **waking,
    }
