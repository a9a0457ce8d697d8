"""A cluster the stack doesn't own (an existing EKS, kind, minikube): only the Kubernetes provider
for it, from the given kubeconfig and context."""

from __future__ import annotations

import os
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s


@dataclass
class ExistingClusterArgs:
    kubeconfig: str
    """Path of the kubeconfig file (`~` is expanded)."""
    context: str | None = None


class ExistingCluster(pulumi.ComponentResource):
    provider: k8s.Provider

    def __init__(self, name: str, args: ExistingClusterArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlserve:existing_cluster:ExistingCluster", name, None, opts)
        self.provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=os.path.expanduser(args.kubeconfig),
            context=args.context,
            # Stable across kubeconfig edits and token refreshes: same cluster, same resources.
            cluster_identifier=f"existing:{args.context or args.kubeconfig}",
            enable_server_side_apply=True,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"context": args.context})
