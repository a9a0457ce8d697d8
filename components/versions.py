"""Every pinned version and version-dependent fact in one place.

Bump versions here only, then `make docs`: docs/architecture.md's version table is generated
from this module and checked by a test.
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
    # GPU node health (gpuCapacity.nodeHealth.monitoringAgent; components/node_health.py).
    "eks-node-monitoring-agent",
)
ADDON_VERSION_PATTERN = r"^v\d+\.\d+\.\d+-eksbuild\.\d+$"
_ADDONS_ANY_MINOR = {
    "vpc-cni": "v1.21.1-eksbuild.1",
    "eks-pod-identity-agent": "v1.3.10-eksbuild.1",
    "coredns": "v1.13.2-eksbuild.4",
    "aws-ebs-csi-driver": "v1.53.0-eksbuild.1",
    # aws/eks-node-monitoring-agent v1.7.0 (its chart's nodeAgent.image.tag).
    "eks-node-monitoring-agent": "v1.7.0-eksbuild.1",
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


# Helm charts: one row per chart the platform installs. The docs' version table is generated
# from this mapping and checked by a test.
ISTIO_REPO = "https://istio-release.storage.googleapis.com/charts"
KSERVE_OCI = "oci://ghcr.io/kserve/charts"
KARPENTER_OCI = "oci://public.ecr.aws/karpenter"
KARPENTER_VERSION = "1.14.1"


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
    # The KEDA HTTP add-on (kedacore/http-add-on v0.15.0, the chart's appVersion): its interceptor
    # holds a request to a model at zero replicas until the model is Ready (components/cold_start.py).
    "keda-http-add-on": Chart("keda-add-ons-http", "0.15.0", "https://kedacore.github.io/charts"),
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
    # The GPU pools' engine (gpuCapacity.engine karpenter). The CRD chart keeps the CRDs current on
    # upgrade: Helm installs a chart's crds/ once and never upgrades them.
    "karpenter-crd": Chart(f"{KARPENTER_OCI}/karpenter-crd", KARPENTER_VERSION),
    "karpenter": Chart(f"{KARPENTER_OCI}/karpenter", KARPENTER_VERSION),
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
# The Triton image's unprivileged user, triton-server, uid and gid 1000. The image declares no USER,
# so it runs as root unless the pod names a uid; with runAsNonRoot alone the kubelet refuses to
# start it ("image will run as root"). triton-inference-server/server build.py asserts the id:
# "Create a user that can be used to run triton as non-root. Make sure that this user to given
# ID 1000".
TRITON_IMAGE_UID = 1000
TRITON_IMAGE_TAG = "26.07-py3"

# The answer past a model's cold-start budget (components/cold_start.py): nginx's unprivileged
# image (nginx/docker-nginx-unprivileged, stable 1.30.4; Amazon ECR Public, no Docker Hub pull
# limits). It runs as uid 101 (the Dockerfile's `ARG UID=101` and `USER $UID`).
COLD_START_FALLBACK_IMAGE = "public.ecr.aws/nginx/nginx-unprivileged:1.30.4-alpine-slim"
COLD_START_FALLBACK_UID = 101


# ---- Instance facts: what one node of a pool can hold -----------------------------------------
# The configuration refuses a model whose one replica can't fit the smallest node of its pool
# (components/config/rules/capacity.py, `model_fits_its_nodes`). A pod fits when its requests
# fit the node's *allocatable*, which is less than the instance's size. Every deduction below is
# taken from the component that makes it, at the version this stack runs, and rounds against the
# model:
#
# - Memory the kubelet reports as capacity is below the EC2 figure (kernel, firmware): Karpenter
#   assumes 7.5% (aws/karpenter-provider-aws pkg/operator/options/options.go,
#   --vm-memory-overhead-percent default 0.075); so do we.
# - kube-reserved, as the EKS AMIs' nodeadm sets it (awslabs/amazon-eks-ami v20260724,
#   nodeadm/internal/kubelet/config.go getCPUMillicoresToReserve / getMemoryMebibytesToReserve):
#   CPU 6% of the first core, 1% of the second, 0.5% of the third and fourth, 0.25% of the rest;
#   memory 11 MiB per pod of maxPods plus 255 MiB. maxPods is the VPC CNI's
#   ENIs x (IPv4 addresses per ENI - 1) + 2 (eni_max_pods.go CalcMaxPods, ENI figures from its
#   instance-info.jsonl), or 110 where nodeadm can't look the type up; we take the larger of the
#   two, the larger reservation. Bottlerocket reserves by the same formulas.
# - evictionHard memory.available 100Mi (same config.go).
# - The DaemonSets on every node: kube-proxy (EKS add-on, 100m CPU), aws-node (VPC CNI add-on,
#   25m), the EBS CSI node plugin, the Pod Identity agent, node-exporter (kube-prometheus-stack)
#   and, on GPU nodes, the NVIDIA device plugin (10m / 32Mi) and DCGM exporter (50m / 128Mi) as
#   components/gpu_stack.py requests them. Rounded up to one allowance per node.
# - Each model pod also runs Istio's sidecar, requesting 100m CPU and 128Mi
#   (istiod 1.30.3 chart values global.proxy.resources.requests); KServe's storage-initializer
#   is an init container that finishes before Triton starts, so it adds nothing.

GIB = 1024  # MiB


@dataclass(frozen=True)
class InstanceFacts:
    vcpus: int
    memory_gib: int
    gpus: int = 0
    gpu_memory_gib: int = 0
    max_enis: int = 0
    ipv4_per_eni: int = 0

    @property
    def max_pods(self) -> int:
        return self.max_enis * (self.ipv4_per_eni - 1) + 2

    @property
    def allocatable_cpu_millicores(self) -> int:
        return self.vcpus * 1000 - kube_reserved_cpu_millicores(self.vcpus)

    @property
    def allocatable_memory_mib(self) -> int:
        capacity = int(self.memory_gib * GIB * (1 - VM_MEMORY_OVERHEAD))
        reserved = 11 * max(self.max_pods, KUBELET_DEFAULT_MAX_PODS) + 255
        return capacity - reserved - EVICTION_HARD_MEMORY_MIB


VM_MEMORY_OVERHEAD = 0.075
KUBELET_DEFAULT_MAX_PODS = 110
EVICTION_HARD_MEMORY_MIB = 100
DAEMONSET_ALLOWANCE = (400, 512)
"""(CPU millicores, memory MiB) every node gives its DaemonSets before any model."""
SIDECAR_REQUESTS = (100, 128)
"""(CPU millicores, memory MiB) Istio's sidecar adds to each model pod."""
SELDON_INITIALIZER_REQUESTS = (100, 100)
"""(CPU millicores, memory MiB) of Seldon's storage initializer (an init container of every
Seldon model pod): the seldon-core-operator 1.17.1 chart's defaults, set explicitly in its values
(components/seldon.py) so the schedulability rules and the pods agree."""
SELDON_INITIALIZER_LIMITS = (1000, 1024)
"""(CPU millicores, memory MiB): the chart's default limits of the same container."""


def kube_reserved_cpu_millicores(vcpus: int) -> int:
    total = vcpus * 1000
    reserved = 0
    for start, end, basis_points in ((0, 1000, 600), (1000, 2000, 100), (2000, 4000, 50),
                                     (4000, total, 25)):
        if total > start:
            reserved += (min(total, end) - start) * basis_points // 10000
    return reserved


# GPU instances: size -> (vCPUs, memory GiB, GPUs, ENIs, IPv4 addresses per ENI). vCPUs, memory
# and GPUs from the EC2 accelerated-computing instance pages; ENI figures from nodeadm's
# instance-info.jsonl (above).
_GPU_SIZES: dict[str, tuple[int, dict[str, tuple[int, int, int, int, int]]]] = {
    # family: (GPU memory GiB, sizes)
    "g4dn": (16, {"xlarge": (4, 16, 1, 3, 10), "2xlarge": (8, 32, 1, 3, 10),
                  "4xlarge": (16, 64, 1, 3, 10), "8xlarge": (32, 128, 1, 4, 15),
                  "16xlarge": (64, 256, 1, 4, 15), "12xlarge": (48, 192, 4, 8, 30),
                  "metal": (96, 384, 8, 15, 50)}),
    "g5": (24, {"xlarge": (4, 16, 1, 4, 15), "2xlarge": (8, 32, 1, 4, 15),
                "4xlarge": (16, 64, 1, 8, 30), "8xlarge": (32, 128, 1, 8, 30),
                "16xlarge": (64, 256, 1, 8, 30), "12xlarge": (48, 192, 4, 15, 50),
                "24xlarge": (96, 384, 4, 15, 50), "48xlarge": (192, 768, 8, 7, 50)}),
    "g6": (24, {"xlarge": (4, 16, 1, 4, 15), "2xlarge": (8, 32, 1, 4, 15),
                "4xlarge": (16, 64, 1, 8, 30), "8xlarge": (32, 128, 1, 8, 30),
                "16xlarge": (64, 256, 1, 15, 50), "12xlarge": (48, 192, 4, 8, 30),
                "24xlarge": (96, 384, 4, 15, 50), "48xlarge": (192, 768, 8, 15, 50)}),
    "g6e": (48, {"xlarge": (4, 32, 1, 4, 15), "2xlarge": (8, 64, 1, 4, 15),
                 "4xlarge": (16, 128, 1, 8, 30), "8xlarge": (32, 256, 1, 8, 30),
                 "16xlarge": (64, 512, 1, 15, 50), "12xlarge": (48, 384, 4, 10, 30),
                 "24xlarge": (96, 768, 4, 10, 50), "48xlarge": (192, 1536, 8, 10, 50)}),
    "p4d": (40, {"24xlarge": (96, 1152, 8, 15, 50)}),
    "p4de": (80, {"24xlarge": (96, 1152, 8, 15, 50)}),
    "p5": (80, {"4xlarge": (16, 256, 1, 4, 30), "48xlarge": (192, 2048, 8, 2, 50)}),
    "p5e": (141, {"48xlarge": (192, 2048, 8, 2, 50)}),
    "p5en": (141, {"48xlarge": (192, 2048, 8, 4, 50)}),
}

# CPU instances a system node group (and models with gpus 0) commonly use. These families share
# their ENI figures size for size in instance-info.jsonl; memory is GiB per vCPU.
_CPU_MEMORY_PER_VCPU = {"m5": 4, "m6i": 4, "m6a": 4, "m7i": 4, "m7a": 4, "c6i": 2, "c6a": 2,
                        "c7i": 2, "c7a": 2, "r6i": 8, "r7i": 8}
_CPU_SIZES = {"large": (2, 3, 10), "xlarge": (4, 4, 15), "2xlarge": (8, 4, 15),
              "4xlarge": (16, 8, 30), "8xlarge": (32, 8, 30)}

INSTANCE_FACTS: dict[str, InstanceFacts] = {
    **{f"{family}.{size}": InstanceFacts(vcpus, memory, gpus, gpu_memory, enis, ips)
       for family, (gpu_memory, sizes) in _GPU_SIZES.items()
       for size, (vcpus, memory, gpus, enis, ips) in sizes.items()},
    **{f"{family}.{size}": InstanceFacts(vcpus, vcpus * per_vcpu, 0, 0, enis, ips)
       for family, per_vcpu in _CPU_MEMORY_PER_VCPU.items()
       for size, (vcpus, enis, ips) in _CPU_SIZES.items()},
}


# ---- Karpenter: the engine behind GPU pools (components/karpenter.py, gpu_capacity.py) -------
# aws/karpenter-provider-aws v1.14.1 (Apache-2.0); its charts are in CHARTS above.
# EC2NodeClass AMI aliases, pinned: `@latest` would roll every GPU node whenever AWS publishes an
# AMI (Karpenter treats a new AMI as drift). Karpenter resolves the alias to the NVIDIA variant for
# instance types with NVIDIA GPUs (v1.14.1 pkg/providers/amifamily/al2023.go DescribeImageQuery:
# x86_64 variants standard, nvidia, neuron; bottlerocket.go: the `aws-k8s-<minor>-nvidia` SSM
# path). AL2023: awslabs/amazon-eks-ami release v20260724 (the one the allocatable figures above
# come from); Bottlerocket: bottlerocket-os/bottlerocket v1.58.0 (variants aws-k8s-1.33..1.35,
# NVIDIA driver R580).
KARPENTER_AMI_ALIASES: dict[str, str] = {
    "AL2023_x86_64_NVIDIA": "al2023@v20260724",
    "BOTTLEROCKET_x86_64_NVIDIA": "bottlerocket@v1.58.0",
}
