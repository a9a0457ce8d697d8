"""The `cluster` section: the EKS control plane and who administers it, or an existing cluster."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from components import versions
from components.config.errors import ConfigError, Problem
from components.config.types import (
    LOG_RETENTION_DAYS,
    Cidr,
    ConfigModel,
    IamPrincipalArn,
    QuotedString,
)
from policy import baseline

LogType = Literal["api", "audit", "authenticator", "controllerManager", "scheduler"]
REQUIRED_LOG_TYPES: tuple[LogType, ...] = ("api", "audit", "authenticator")


class ClusterConfig(ConfigModel):
    """The EKS control plane and who administers it, or an existing cluster to deploy onto."""

    mode: Literal["eks", "existing"] = Field(
        "eks", description="eks: create VPC and EKS; existing: deploy onto the cluster of "
        "`kubeconfig` (an existing EKS, kind, minikube), creating no AWS resources.")
    kubeconfig: str | None = Field(None, description="existing: path of the kubeconfig file.")
    context: str | None = Field(None, description="existing: kubeconfig context to use.")

    name: str | None = Field(
        None, pattern=r"^[0-9A-Za-z][A-Za-z0-9_-]{0,99}$",
        description="EKS cluster name; default mlserve-<stack>.",
    )
    version: QuotedString = Field(
        versions.DEFAULT_KUBERNETES_VERSION, description="Kubernetes minor version."
    )
    public_access_cidrs: list[Cidr] = Field(
        default_factory=list,
        description="CIDRs allowed to reach the public API endpoint; empty = private endpoint only.",
    )
    admin_principal_arns: list[IamPrincipalArn] = Field(
        default_factory=list,
        description="IAM roles/users given cluster-admin through EKS access entries; at least "
        "one, and it must include the identity that runs `pulumi up`.",
    )
    preview_principal_arns: list[IamPrincipalArn] = Field(
        default_factory=list,
        description="IAM roles/users given read-only cluster access (AmazonEKSAdminViewPolicy, "
        "Secrets included: refresh reads Helm releases' state) for CI's `pulumi preview`.",
    )
    log_types: list[LogType] = (
        Field(default_factory=lambda: list(REQUIRED_LOG_TYPES),
              description="Control-plane log types sent to CloudWatch.")
    )
    log_retention_days: int = Field(90, description="Control-plane log retention in days.")
    addon_versions: dict[Literal[versions.EKS_ADDONS],  # type: ignore[valid-type]
                         Annotated[str, Field(pattern=versions.ADDON_VERSION_PATTERN)]] = Field(
        default_factory=dict,
        description="Override EKS add-on versions (e.g. v1.21.1-eksbuild.1); default: the "
        "versions pinned per Kubernetes minor in components/versions.py.",
    )
    deletion_protection: bool = Field(False, description="EKS deletion protection.")

    @field_validator("version")
    @classmethod
    def _supported(cls, value: str) -> str:
        if value not in versions.SUPPORTED_KUBERNETES_VERSIONS:
            raise ValueError(f"must be one of {list(versions.SUPPORTED_KUBERNETES_VERSIONS)}, "
                             f"got {value!r}")
        return value

    @field_validator("log_retention_days")
    @classmethod
    def _retention(cls, value: int) -> int:
        if value not in LOG_RETENTION_DAYS:
            raise ValueError(f"must be one of {list(LOG_RETENTION_DAYS)}, got {value}")
        return value

    @model_validator(mode="after")
    def _rules(self) -> ClusterConfig:
        problems: list[Problem] = []
        if self.mode == "existing":
            if not self.kubeconfig:
                problems.append((("kubeconfig",), "required with mode existing"))
        elif self.kubeconfig or self.context:
            problems.append((("kubeconfig",), "kubeconfig and context only with mode "
                                              "existing"))
        if self.mode == "eks" and not self.admin_principal_arns:
            problems.append((("adminPrincipalArns",),
                             "must name at least one IAM role or user; the "
                             "identity running `pulumi up` needs cluster access"))
        if len(set(self.admin_principal_arns)) != len(self.admin_principal_arns):
            problems.append((("adminPrincipalArns",), "must not repeat an ARN"))
        if len(set(self.preview_principal_arns)) != len(self.preview_principal_arns):
            problems.append((("previewPrincipalArns",), "must not repeat an ARN"))
        if both := sorted(set(self.admin_principal_arns) & set(self.preview_principal_arns)):
            # EKS allows one access entry per principal.
            problems.append((("previewPrincipalArns",), f"must not also be admins, got {both}"))
        if wrong := baseline.non_public(self.public_access_cidrs):
            problems.append((("publicAccessCidrs",),
                             f"{wrong} are private or reserved addresses, which never reach the "
                             "public endpoint; leave them out (the private endpoint serves "
                             "the VPC)"))
        missing = [t for t in REQUIRED_LOG_TYPES if t not in self.log_types]
        if missing:
            problems.append((("logTypes",), f"must include {list(REQUIRED_LOG_TYPES)}, "
                                            f"missing {missing}"))
        if problems:
            raise ConfigError(problems)
        return self
