"""Prometheus, Alertmanager and Grafana (kube-prometheus-stack), picking up every ServiceMonitor,
PodMonitor and PrometheusRule in the cluster."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from components.config import MonitoringConfig
from components.k8s import PRIVILEGED, SYSTEM_NODE_SELECTOR, helm_release, namespace, resources

NAMESPACE = "monitoring"
RELEASE = "kps"
# fullnameOverride makes the in-cluster addresses fixed, for KEDA's Prometheus triggers.
PROMETHEUS_URL = f"http://{RELEASE}-prometheus.{NAMESPACE}.svc.cluster.local:9090"
GRAFANA_SERVICE = f"{RELEASE}-grafana"
GRAFANA_SECRET = "grafana-admin"
DASHBOARD_LABEL = "grafana_dashboard"


def monitoring_values(*, config: MonitoringConfig, storage_class: str,
                      high_availability: bool) -> dict[str, Any]:
    replicas = 2 if high_availability else 1
    placed = {"nodeSelector": SYSTEM_NODE_SELECTOR}
    return {
        "fullnameOverride": RELEASE,
        "crds": {"enabled": True},
        # EKS runs these control-plane parts out of reach: scraping them only fires TargetDown.
        "kubeControllerManager": {"enabled": False},
        "kubeScheduler": {"enabled": False},
        "kubeEtcd": {"enabled": False},
        "kubeProxy": {"enabled": False},
        "prometheus": {
            "podDisruptionBudget": {"enabled": high_availability},
            "prometheusSpec": {
                # Select monitors and rules from every namespace and release, not only this one.
                "podMonitorSelectorNilUsesHelmValues": False,
                "serviceMonitorSelectorNilUsesHelmValues": False,
                "ruleSelectorNilUsesHelmValues": False,
                "probeSelectorNilUsesHelmValues": False,
                "retention": config.retention,
                "replicas": replicas,
                "resources": resources("200m", "1Gi", cpu_limit="2", memory_limit="4Gi"),
                "storageSpec": {"volumeClaimTemplate": {"spec": {
                    # Empty: the cluster's default StorageClass.
                    **({"storageClassName": storage_class} if storage_class else {}),
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": f"{config.prometheus_storage_gib}Gi"}},
                }}},
                **placed,
            },
        },
        "alertmanager": {
            "enabled": config.alertmanager,
            "podDisruptionBudget": {"enabled": high_availability},
            "alertmanagerSpec": {"replicas": replicas,
                                 "resources": resources("20m", "64Mi", memory_limit="256Mi"),
                                 **placed},
        },
        "prometheusOperator": {
            "resources": resources("100m", "128Mi", memory_limit="512Mi"),
            "admissionWebhooks": {"patch": placed},
            **placed,
        },
        "kube-state-metrics": {"resources": resources("50m", "128Mi", memory_limit="512Mi"),
                               **placed},
        "grafana": {
            # The password comes from a Secret the stack creates from a Pulumi secret; it never
            # appears in the chart values.
            "admin": {"existingSecret": GRAFANA_SECRET, "userKey": "admin-user",
                      "passwordKey": "admin-password"},
            "sidecar": {"dashboards": {"enabled": True, "label": DASHBOARD_LABEL,
                                       "labelValue": "1", "searchNamespace": "ALL"}},
            "resources": resources("50m", "256Mi", memory_limit="512Mi"),
            **placed,
        },
    }


@dataclass
class MonitoringArgs:
    config: MonitoringConfig
    storage_class: pulumi.Input[str]
    high_availability: bool
    grafana_admin_password: pulumi.Input[str] | None = None
    """A Pulumi secret; when None a random one is generated (and kept secret in state)."""


class Monitoring(pulumi.ComponentResource):
    release: k8s.helm.v3.Release

    def __init__(self, name: str, args: MonitoringArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlserve:monitoring:Monitoring", name, None, opts)
        # node-exporter needs the host's network, PID namespace and filesystem.
        ns = namespace(self, name, NAMESPACE, pod_security=PRIVILEGED)
        password = args.grafana_admin_password
        if password is None:
            password = random.RandomPassword(f"{name}-grafana-password", length=32, special=False,
                                             opts=pulumi.ResourceOptions(parent=self)).result
        secret = k8s.core.v1.Secret(
            f"{name}-grafana-admin",
            metadata={"name": GRAFANA_SECRET, "namespace": ns.metadata.name},
            type="Opaque",
            string_data={"admin-user": "admin", "admin-password": pulumi.Output.secret(password)},
            opts=pulumi.ResourceOptions(parent=self),
        )
        values = pulumi.Output.from_input(args.storage_class).apply(
            lambda storage_class: monitoring_values(config=args.config,
                                                    storage_class=storage_class,
                                                    high_availability=args.high_availability))
        self.release = helm_release(self, name, "kube-prometheus-stack", name=RELEASE,
                                    namespace=ns.metadata.name, values=values,
                                    depends_on=[secret], timeout_seconds=900)
        self.prometheus_url = PROMETHEUS_URL
        self.grafana_admin_password = pulumi.Output.secret(password)
        self.register_outputs({"prometheusUrl": self.prometheus_url,
                               "grafanaService": GRAFANA_SERVICE,
                               "release": self.release.status})
