"""MinIO in the cluster: the S3-compatible model store of a local stack (no AWS bill)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from components.k8s import BASELINE, helm_release, namespace

NAMESPACE = "minio"
RELEASE = "minio"
SECRET = "minio-root"
# What the Service is reachable as from inside the cluster.
CLUSTER_ENDPOINT = f"http://{RELEASE}.{NAMESPACE}.svc.cluster.local:9000"


def node_port_of(endpoint: str | None) -> int | None:
    """The NodePort in an endpoint like http://localhost:30900 (kind maps it to the host)."""
    port = (endpoint or "").rsplit(":", 1)[-1]
    return int(port) if port.isdigit() and 30000 <= int(port) <= 32767 else None


def minio_values(bucket: str, node_port: int | None) -> dict[str, Any]:
    service: dict[str, Any] = {"type": "NodePort" if node_port else "ClusterIP", "port": "9000"}
    if node_port:
        service["nodePort"] = node_port
    return {
        "mode": "standalone",
        "replicas": 1,
        "existingSecret": SECRET,
        "persistence": {"enabled": True, "size": "10Gi"},
        "resources": {"requests": {"memory": "256Mi", "cpu": "100m"},
                      "limits": {"memory": "1Gi", "cpu": "1"}},
        "service": service,
        "buckets": [{"name": bucket, "policy": "none", "purge": False, "versioning": True}],
        # The chart otherwise creates a `console` user with a well-known password.
        "users": [],
    }


@dataclass
class ObjectStoreArgs:
    bucket: str
    credentials: tuple[pulumi.Input[str], pulumi.Input[str]] | None = None
    """(access key, secret key) for MinIO's root user; default: generated, kept secret."""
    node_port: int | None = None
    """Expose MinIO on this NodePort (kind maps it to localhost) so the stack can upload."""


class ObjectStore(pulumi.ComponentResource):
    def __init__(self, name: str, args: ObjectStoreArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlserve:object_store:ObjectStore", name, None, opts)
        ns = namespace(self, name, NAMESPACE, pod_security=BASELINE)
        access: pulumi.Input[str]
        secret_key: pulumi.Input[str]
        if args.credentials is None:
            access, secret_key = (
                random.RandomPassword(f"{name}-{part}", length=length, special=False,
                                      opts=pulumi.ResourceOptions(parent=self)).result
                for part, length in (("access-key", 20), ("secret-key", 40)))
        else:
            access, secret_key = args.credentials
        self.credentials: tuple[pulumi.Output[str], pulumi.Output[str]] = (
            pulumi.Output.secret(pulumi.Output.from_input(access)),
            pulumi.Output.secret(pulumi.Output.from_input(secret_key)))
        secret = k8s.core.v1.Secret(
            f"{name}-root", metadata={"name": SECRET, "namespace": ns.metadata.name},
            type="Opaque",
            string_data={"rootUser": self.credentials[0], "rootPassword": self.credentials[1]},
            opts=pulumi.ResourceOptions(parent=self))
        self.release = helm_release(self, name, "minio", name=RELEASE,
                                    namespace=ns.metadata.name,
                                    values=minio_values(args.bucket, args.node_port),
                                    depends_on=[secret])
        self.cluster_endpoint = CLUSTER_ENDPOINT
        self.register_outputs({"release": self.release.status,
                               "clusterEndpoint": CLUSTER_ENDPOINT})
