"""Cluster storage: an encrypted gp3 StorageClass, made the default so every PVC gets it."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

GP3 = "gp3"


@dataclass
class StorageArgs:
    default_class: bool = True


class Storage(pulumi.ComponentResource):
    def __init__(self, name: str, args: StorageArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlserve:storage:Storage", name, None, opts)
        self.gp3 = k8s.storage.v1.StorageClass(
            f"{name}-gp3",
            metadata={"name": GP3, "annotations": {
                "storageclass.kubernetes.io/is-default-class": str(args.default_class).lower()}},
            provisioner="ebs.csi.aws.com",
            parameters={"type": "gp3", "encrypted": "true", "fsType": "ext4"},
            # Bind where the pod lands, so the volume is created in that pod's AZ.
            volume_binding_mode="WaitForFirstConsumer",
            allow_volume_expansion=True,
            reclaim_policy="Delete",
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.class_name = self.gp3.metadata.name
        self.register_outputs({"storageClass": self.class_name})
