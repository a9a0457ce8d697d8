"""Every pinned version and version-dependent fact in one place.

Bump versions here only; the README's version table is checked against this module by a test.
"""

from dataclasses import dataclass

# EKS Kubernetes versions this project is tested against (standard support, no extended-support fees).
SUPPORTED_KUBERNETES_VERSIONS: tuple[str, ...] = ("1.33", "1.34", "1.35")
DEFAULT_KUBERNETES_VERSION = "1.35"

# EKS managed add-ons, each pinned per Kubernetes minor: an add-on left to "AWS's default build"
# moves whenever AWS publishes one, and the nightly drift check would flap. A stack may override a
# pin with `cluster.addonVersions`. Source: the Amazon EKS User Guide's latest-version tables
# ("Manage kube-proxy", "Manage CoreDNS", "Amazon VPC CNI versions", the EBS CSI driver and Pod
# Identity Agent add-on pages) and `aws eks describe-addon-versions --kubernetes-version <minor>
# --addon-name <add-on>`; bump them with the Kubernetes version.
EKS_ADDONS: tuple[str, ...] = (
    "vpc-cni",
    "kube-proxy",
    "eks-pod-identity-agent",
    "coredns",
    "aws-ebs-csi-driver",
)
ADDON_VERSION_PATTERN = r"^v\d+\.\d+\.\d+-eksbuild\.\d+$"
_ADDONS_ANY_MINOR = {
    "vpc-cni": "v1.21.1-eksbuild.1",
    "eks-pod-identity-agent": "v1.3.10-eksbuild.1",
    "coredns": "v1.13.2-eksbuild.4",
    "aws-ebs-csi-driver": "v1.53.0-eksbuild.1",
}
EKS_ADDON_VERSIONS: dict[str, dict[str, str]] = {
    "1.33": {**_ADDONS_ANY_MINOR, "kube-proxy": "v1.33.10-eksbuild.2"},
    "1.34": {**_ADDONS_ANY_MINOR, "kube-proxy": "v1.34.6-eksbuild.2"},
    "1.35": {**_ADDONS_ANY_MINOR, "kube-proxy": "v1.35.3-eksbuild.2"},
}


# GPU instance types a GPU node group may use: type -> (GPUs per instance, accelerator label).
# The accelerator values are the ones cluster-autoscaler's AWS provider and the NVIDIA GPU feature
# discovery use for `k8s.amazonaws.com/accelerator`. Graviton GPU types (g5g) are left out: the
# NVIDIA AMI types used here are x86_64.
_GPU_FAMILIES: dict[str, tuple[str, dict[str, int]]] = {
    "g4dn": ("nvidia-tesla-t4", {"xlarge": 1, "2xlarge": 1, "4xlarge": 1, "8xlarge": 1,
                                 "16xlarge": 1, "12xlarge": 4, "metal": 8}),
    "g5": ("nvidia-a10g", {"xlarge": 1, "2xlarge": 1, "4xlarge": 1, "8xlarge": 1, "16xlarge": 1,
                           "12xlarge": 4, "24xlarge": 4, "48xlarge": 8}),
    "g6": ("nvidia-l4", {"xlarge": 1, "2xlarge": 1, "4xlarge": 1, "8xlarge": 1, "16xlarge": 1,
                         "12xlarge": 4, "24xlarge": 4, "48xlarge": 8}),
    "g6e": ("nvidia-l40s", {"xlarge": 1, "2xlarge": 1, "4xlarge": 1, "8xlarge": 1, "16xlarge": 1,
                            "12xlarge": 4, "24xlarge": 4, "48xlarge": 8}),
    "p4d": ("nvidia-a100", {"24xlarge": 8}),
    "p4de": ("nvidia-a100", {"24xlarge": 8}),
    "p5": ("nvidia-h100", {"4xlarge": 1, "48xlarge": 8}),
    "p5e": ("nvidia-h200", {"48xlarge": 8}),
    "p5en": ("nvidia-h200", {"48xlarge": 8}),
}

GPU_INSTANCE_TYPES: dict[str, tuple[int, str]] = {
    f"{family}.{size}": (count, accelerator)
    for family, (accelerator, sizes) in _GPU_FAMILIES.items()
    for size, count in sizes.items()
}
GPU_FAMILIES: tuple[str, ...] = tuple(_GPU_FAMILIES)

# Families that carry a GPU (including ones not offered above), so a system node group can't be
# given one by mistake.
GPU_FAMILY_PREFIXES: tuple[str, ...] = ("g", "p", "inf", "trn", "dl")


# Helm charts: one row per chart the platform installs. The README's version table is generated
# from this mapping and checked by a test.
ISTIO_REPO = "https://istio-release.storage.googleapis.com/charts"
KSERVE_OCI = "oci://ghcr.io/kserve/charts"


@dataclass(frozen=True)
class Chart:
    chart: str
    version: str
    repository: str | None = None
    """None for OCI charts, whose `chart` is the full oci:// reference."""


CHARTS: dict[str, Chart] = {
    "cert-manager": Chart("cert-manager", "v1.21.1", "https://charts.jetstack.io"),
    "istio-base": Chart("base", "1.30.3", ISTIO_REPO),
    "istiod": Chart("istiod", "1.30.3", ISTIO_REPO),
    "istio-gateway": Chart("gateway", "1.30.3", ISTIO_REPO),
    "aws-load-balancer-controller": Chart("aws-load-balancer-controller", "3.5.0",
                                          "https://aws.github.io/eks-charts"),
    "kserve-crd": Chart(f"{KSERVE_OCI}/kserve-crd", "v0.20.0"),
    "kserve-resources": Chart(f"{KSERVE_OCI}/kserve-resources", "v0.20.0"),
    "kserve-runtime-configs": Chart(f"{KSERVE_OCI}/kserve-runtime-configs", "v0.20.0"),
    "keda": Chart("keda", "2.20.2", "https://kedacore.github.io/charts"),
    "kube-prometheus-stack": Chart("kube-prometheus-stack", "88.5.3",
                                   "https://prometheus-community.github.io/helm-charts"),
    "nvidia-device-plugin": Chart("nvidia-device-plugin", "0.20.0",
                                  "https://nvidia.github.io/k8s-device-plugin"),
    "dcgm-exporter": Chart("dcgm-exporter", "4.8.2",
                           "https://nvidia.github.io/dcgm-exporter/helm-charts"),
    "metrics-server": Chart("metrics-server", "3.13.1",
                            "https://kubernetes-sigs.github.io/metrics-server/"),
    "cluster-autoscaler": Chart("cluster-autoscaler", "9.59.0",
                                "https://kubernetes.github.io/autoscaler"),
    # The local stack's S3-compatible model store.
    "minio": Chart("minio", "5.4.0", "https://charts.min.io/"),
    # Opt-in backend. 1.17.1 is the last Apache-2.0 release; 1.18.0 and later are under the
    # Business Source License 1.1 (config must accept it explicitly to use them).
    "seldon-core-operator": Chart("seldon-core-operator", "1.17.1",
                                  "https://storage.googleapis.com/seldon-charts"),
}
SELDON_LAST_APACHE_VERSION = "1.17.1"

# Triton image for KServe's kserve-tritonserver runtime (the chart's default 23.05 is years old).
# Container 26.07 ships Triton server 2.71.
TRITON_IMAGE = "nvcr.io/nvidia/tritonserver"
TRITON_IMAGE_TAG = "26.07-py3"
