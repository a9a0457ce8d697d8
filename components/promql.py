"""The PromQL the stack writes about a model: which pods are its own, the KEDA triggers that
scale a track, the alerts and the dashboard's panels. Pods are selected by the names the plan's
backend gives them (components/serving_backend.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

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


def keda_triggers(plan: ModelPlan, track: str = STABLE) -> list[tuple[str, str]]:
    """(Prometheus query, threshold) pairs KEDA scales a track on, for either backend: Triton's
    backlog on the track's own pods, plus the gateway's demand so a model scaled to zero wakes
    up."""
    triggers = [(backlog_query(plan, track), str(plan.config.target_pending_requests))]
    if plan.track(track).min_replicas == 0:
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
    }
