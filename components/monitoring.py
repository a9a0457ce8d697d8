"""Prometheus, Alertmanager and Grafana (kube-prometheus-stack), picking up every ServiceMonitor,
PodMonitor and PrometheusRule in the cluster."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import pulumi_random as random

from components.config.platform import AlertsConfig, MonitoringConfig
from components.iam import IrsaRole, IrsaRoleArgs, policy_document
from components.k8s import PRIVILEGED, SYSTEM_NODE_SELECTOR, helm_release, namespace, resources

NAMESPACE = "monitoring"
RELEASE = "kps"
# fullnameOverride makes the in-cluster addresses fixed, for KEDA's Prometheus triggers.
PROMETHEUS_URL = f"http://{RELEASE}-prometheus.{NAMESPACE}.svc.cluster.local:9090"
GRAFANA_SERVICE = f"{RELEASE}-grafana"
GRAFANA_SECRET = "grafana-admin"
DASHBOARD_LABEL = "grafana_dashboard"

# Alertmanager: the chart names its service account <fullname>-alertmanager; the prometheus-operator
# mounts every Secret listed in alertmanagerSpec.secrets at /etc/alertmanager/secrets/<name>/
# (kube-prometheus-stack values.yaml, alertmanager.alertmanagerSpec.secrets).
ALERTMANAGER_SERVICE_ACCOUNT = f"{RELEASE}-alertmanager"
RECEIVER_SECRET = "alertmanager-receivers"
RECEIVER_URL_FILE = f"/etc/alertmanager/secrets/{RECEIVER_SECRET}/url"
RECEIVER = "mlserve"
SILENT = "null"  # the chart's receiver that notifies nobody
# Alerts nobody should be paged for: the always-firing Watchdog, the InfoInhibitor helper and
# info-level alerts (the chart's own rules use severity info for hints).
SILENT_ROUTES = [{"receiver": SILENT, "matchers": ['alertname =~ "Watchdog|InfoInhibitor"']},
                 {"receiver": SILENT, "matchers": ['severity = "info"']}]


def receiver(alerts: AlertsConfig, *, topic_arn: str | None, region: str | None,
             ) -> dict[str, Any]:
    """The one receiver every alert worth a human goes to, with each configured integration.

    Secrets never appear here: SNS is reached through IRSA (Alertmanager's SNS notifier loads the
    AWS SDK's default credential chain, web identity included: notify/sns/sns.go at v0.34.0), and
    the Slack/webhook URL is read from the mounted Secret (`api_url_file`, `url_file`)."""
    integrations: dict[str, Any] = {}
    if alerts.sns_topic and topic_arn:
        integrations["sns_configs"] = [{
            "topic_arn": topic_arn, "sigv4": {"region": region}, "send_resolved": True,
            "subject": '[{{ .Status | toUpper }}] {{ .CommonLabels.alertname }}'}]
    if alerts.webhook == "slack":
        integrations["slack_configs"] = [{
            "api_url_file": RECEIVER_URL_FILE, "send_resolved": True,
            **({"channel": alerts.slack_channel} if alerts.slack_channel else {})}]
    elif alerts.webhook == "webhook":
        integrations["webhook_configs"] = [{"url_file": RECEIVER_URL_FILE,
                                            "send_resolved": True}]
    return {"name": RECEIVER, **integrations}


def alertmanager_config(alerts: AlertsConfig, *, topic_arn: str | None = None,
                        region: str | None = None) -> dict[str, Any]:
    """`alertmanager.config`: Helm merges it into the chart's (inhibit rules and templates kept;
    `route` merged, `routes` and `receivers` replaced, being lists)."""
    target = RECEIVER if alerts.configured else SILENT
    model_route = {"receiver": target, "matchers": ['model =~ ".+"',
                                                    'severity =~ "critical|warning"'],
                   "group_by": ["namespace", "model", "alertname"], "group_wait": "10s",
                   "repeat_interval": "1h"}
    return {
        "route": {"receiver": target, "group_by": ["namespace", "alertname"],
                  "routes": [*SILENT_ROUTES, model_route]},
        "receivers": [{"name": SILENT},
                      *([receiver(alerts, topic_arn=topic_arn, region=region)]
                        if alerts.configured else [])],
    }


def monitoring_values(*, config: MonitoringConfig, storage_class: str,
                      high_availability: bool, alert_topic_arn: str | None = None,
                      alert_role_arn: str | None = None,
                      region: str | None = None) -> dict[str, Any]:
    replicas = 2 if high_availability else 1
    placed = {"nodeSelector": SYSTEM_NODE_SELECTOR}
    alerts = config.alerts
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
            "config": alertmanager_config(alerts, topic_arn=alert_topic_arn, region=region),
            **({"serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": alert_role_arn}}}
               if alert_role_arn else {}),
            "alertmanagerSpec": {"replicas": replicas,
                                 "resources": resources("20m", "64Mi", memory_limit="256Mi"),
                                 **({"secrets": [RECEIVER_SECRET]} if alerts.webhook else {}),
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
    alert_webhook_url: pulumi.Input[str] | None = None
    """A Pulumi secret: the Slack/webhook URL of platform.monitoring.alerts.webhook."""
    region: str | None = None
    oidc_provider_arn: pulumi.Input[str] | None = None
    oidc_issuer_url: pulumi.Input[str] | None = None
    """The cluster's IRSA issuer, for Alertmanager's SNS publishing role (EKS only)."""


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
        alerts = args.config.alerts
        topic_arn, role_arn = self._sns(name, args)
        depends_on: list[pulumi.Resource] = [secret]
        if alerts.webhook:
            # The URL stays a secret: in a Kubernetes Secret Alertmanager mounts, never in the
            # chart's values (which Helm stores in its release Secret in plain text).
            depends_on.append(k8s.core.v1.Secret(
                f"{name}-alert-receivers",
                metadata={"name": RECEIVER_SECRET, "namespace": ns.metadata.name},
                type="Opaque",
                string_data={"url": pulumi.Output.secret(args.alert_webhook_url or "")},
                opts=pulumi.ResourceOptions(parent=self)))
        values = pulumi.Output.all(args.storage_class, topic_arn, role_arn).apply(
            lambda v: monitoring_values(config=args.config, storage_class=v[0],
                                        high_availability=args.high_availability,
                                        alert_topic_arn=v[1], alert_role_arn=v[2],
                                        region=args.region))
        self.release = helm_release(self, name, "kube-prometheus-stack", name=RELEASE,
                                    namespace=ns.metadata.name, values=values,
                                    depends_on=depends_on, timeout_seconds=900)
        self.alert_topic_arn = topic_arn
        self.prometheus_url = PROMETHEUS_URL
        self.grafana_admin_password = pulumi.Output.secret(password)
        self.stack_outputs: dict[str, Any] = {
            "prometheusUrl": self.prometheus_url,
            "grafanaAdminPassword": self.grafana_admin_password,
            "grafanaPortForward":
                f"kubectl -n {NAMESPACE} port-forward svc/{GRAFANA_SERVICE} 3000:80",
            **({"alertTopicArn": topic_arn} if topic_arn is not None else {}),
        }
        self.register_outputs({"prometheusUrl": self.prometheus_url,
                               "grafanaService": GRAFANA_SERVICE,
                               "alertTopicArn": topic_arn,
                               "release": self.release.status})

    def _sns(self, name: str, args: MonitoringArgs,
             ) -> tuple[pulumi.Output[str] | None, pulumi.Output[str] | None]:
        """The SNS topic alerts go to (created here or given) and the IRSA role that lets only
        Alertmanager's service account publish to it."""
        topic = args.config.alerts.sns_topic
        if not topic:
            return None, None
        if args.oidc_provider_arn is None or args.oidc_issuer_url is None:
            raise ValueError("an SNS alert topic needs the cluster's IRSA issuer")
        child = pulumi.ResourceOptions(parent=self)
        if topic == "create":
            # Encrypted at rest with the AWS-managed key, whose key policy lets principals of the
            # account publish through SNS without a KMS grant of their own.
            topic_arn = aws.sns.Topic(f"{name}-alerts", kms_master_key_id="alias/aws/sns",
                                      opts=child).arn
        else:
            topic_arn = pulumi.Output.from_input(topic)
        publisher = IrsaRole(
            f"{name}-alertmanager",
            IrsaRoleArgs(oidc_provider_arn=args.oidc_provider_arn,
                         oidc_issuer_url=args.oidc_issuer_url, namespace=NAMESPACE,
                         service_account=ALERTMANAGER_SERVICE_ACCOUNT,
                         inline_policy=topic_arn.apply(lambda arn: policy_document(
                             {"Sid": "PublishAlerts", "Effect": "Allow", "Action": "sns:Publish",
                              "Resource": arn}))),
            child)
        return topic_arn, publisher.role_arn
