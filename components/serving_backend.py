"""What a serving backend is to the stack: one object (components/kserve.py KSERVE,
components/seldon.py SELDON) that owns everything that differs between the controllers that can
serve a model. The rest of the stack asks the plan's backend, and never which backend it is:

- the server resource of each track (an InferenceService, a SeldonDeployment), its resource
  name, and the name of the readiness budget `pulumi up` waits on;
- the model's route at the ingress gateway and the Gateway it binds to, and whether the route
  waits for the budgets;
- the names the controller gives the model's pods and Services, which PromQL selects on
  (components/promql.py), and so the KEDA triggers;
- the label every server pod carries and the ports the gateway may reach (the NetworkPolicy),
  where Prometheus scrapes Triton (the PodMonitor), and the client's URL and Host;
- the runtime it needs installed in the cluster, and any per-namespace object its pods read.

components/backends.py picks the object from `modelServing.backend`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pulumi

from components.naming import STABLE

if TYPE_CHECKING:
    from components.config.serving import ModelServingConfig
    from components.model_plan import ModelPlan


@dataclass
class RuntimeArgs:
    """What a backend's runtime is installed on (and after)."""

    kserve_runtimes: pulumi.Resource
    """The serving platform's KServe runtimes release (components/serving_platform.py)."""
    mesh_namespace: str
    mesh_crds: pulumi.Resource
    mesh_control_plane: pulumi.Resource
    cert_manager: pulumi.Resource
    settings: ModelServingConfig
    depends_on: Sequence[pulumi.Resource] = field(default_factory=list)


class ServingBackend(ABC):
    """The controller that turns a model plan into running Triton pods."""

    name: str
    """The `modelServing.backend` value that selects it."""
    pod_label: str
    """A label the controller puts on every model server pod (the NetworkPolicy selects on it)."""
    serving_ports: tuple[int, ...]
    """The ports of a model server pod the ingress gateway sends requests to."""
    route_waits_for_ready: bool
    """Whether the route waits for every track's readiness budget (it moves traffic between
    tracks), or only for the server resources (it never changes)."""
    http_service_port: int
    """The HTTP port of a track's Service (what the gateway or the interceptor sends to)."""
    http_container_port: int
    """The port that Service port leads to on the model server pod."""
    holds_requests_while_waking: bool
    """Whether the route sends a track that may be at zero replicas through the KEDA HTTP
    add-on's interceptor, which holds its requests while it wakes (components/cold_start.py)."""
    grpc_direct_while_held: bool = False
    """Whether the route still sends a held track's gRPC straight to its Service (the
    interceptor's route forwards to the Service's HTTP port only): those requests get the
    gateway's UNAVAILABLE while the track wakes, and the gateway's request count must wake it
    too."""

    @abstractmethod
    def install_runtime(self, name: str, args: RuntimeArgs,
                        opts: pulumi.ResourceOptions) -> pulumi.Resource:
        """The resource every model waits for: the runtime that serves it, ready."""

    @abstractmethod
    def server(self, plan: ModelPlan, bucket: str, track: str = STABLE) -> dict[str, Any]:
        """One track's server resource, as a manifest."""

    @abstractmethod
    def server_resource_name(self, name: str, track: str) -> str:
        """The Pulumi name of one track's server resource, under the model's component `name`."""

    @abstractmethod
    def budget_name(self, plan: ModelPlan, track: str) -> str:
        """The Kubernetes name of one track's readiness budget."""

    @abstractmethod
    def gateway(self, plan: ModelPlan) -> str:
        """namespace/name of the Istio Gateway the model's route binds to."""

    @abstractmethod
    def route(self, plan: ModelPlan, gateway: str) -> dict[str, Any]:
        """The model's VirtualService."""

    @abstractmethod
    def pod_pattern(self, plan: ModelPlan, track: str | None = None) -> str:
        """A regular expression for the names of the model's server pods: one track's, or (None)
        every track's."""

    @abstractmethod
    def service(self, plan: ModelPlan, track: str = STABLE) -> str:
        """The Service the gateway sends a track's requests to."""

    @abstractmethod
    def metrics_endpoint(self, plan: ModelPlan) -> dict[str, Any]:
        """The PodMonitor's endpoint for Triton's metrics in a model server pod."""

    @abstractmethod
    def client_address(self, plan: ModelPlan, address: str) -> tuple[str, str]:
        """(base URL without scheme, Host header) a client reaches the model at, given the
        ingress gateway's address."""

    def namespace_objects(self, scope: pulumi.Resource, name: str, namespace: pulumi.Input[str],
                          region: str) -> list[pulumi.Resource]:
        """Objects the model pods of a namespace read besides their ServiceAccount (none)."""
        return []

    def __repr__(self) -> str:
        return f"<serving backend {self.name}>"
