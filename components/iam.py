"""IAM building blocks shared by the parts: policy documents and IRSA roles.

Policy documents are plain JSON built here rather than `aws.iam.get_policy_document` invokes, so they
are deterministic and visible to tests as data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws


def policy_document(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)}, sort_keys=True)


def service_trust_policy(service: str, *, tag_session: bool = False) -> str:
    """Trust policy letting one AWS service assume a role."""
    actions = ["sts:AssumeRole", "sts:TagSession"] if tag_session else "sts:AssumeRole"
    return policy_document(
        {"Effect": "Allow", "Principal": {"Service": service}, "Action": actions}
    )


def aws_managed_policy(partition: pulumi.Input[str], name: str) -> pulumi.Output[str]:
    return pulumi.Output.concat("arn:", partition, ":iam::aws:policy/", name)


def partition_of(parent: pulumi.Resource) -> pulumi.Output[str]:
    """The AWS partition (aws, aws-cn, aws-us-gov) of the parent's provider."""
    return aws.get_partition_output(opts=pulumi.InvokeOutputOptions(parent=parent)).partition


def irsa_trust_policy(
    oidc_provider_arn: str, oidc_issuer_url: str, namespace: str, service_account: str
) -> str:
    """Trust policy for exactly one Kubernetes service account (IRSA), and only for STS."""
    issuer = oidc_issuer_url.removeprefix("https://")
    return policy_document(
        {
            "Effect": "Allow",
            "Principal": {"Federated": oidc_provider_arn},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {
                "StringEquals": {
                    f"{issuer}:sub": f"system:serviceaccount:{namespace}:{service_account}",
                    f"{issuer}:aud": "sts.amazonaws.com",
                }
            },
        }
    )


@dataclass
class IrsaRoleArgs:
    """An IAM role that one Kubernetes service account assumes through the cluster's OIDC issuer."""

    oidc_provider_arn: pulumi.Input[str]
    oidc_issuer_url: pulumi.Input[str]
    namespace: str
    service_account: str
    managed_policy_arns: dict[str, pulumi.Input[str]] = field(default_factory=dict)
    """Short name -> ARN of a managed policy to attach (the short name keys the attachment)."""
    inline_policy: pulumi.Input[str] | None = None


class IrsaRole(pulumi.ComponentResource):
    role: aws.iam.Role

    def __init__(self, name: str, args: IrsaRoleArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlserve:iam:IrsaRole", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        trust = pulumi.Output.all(args.oidc_provider_arn, args.oidc_issuer_url).apply(
            lambda v: irsa_trust_policy(v[0], v[1], args.namespace, args.service_account)
        )
        self.role = aws.iam.Role(
            f"{name}-role",
            assume_role_policy=trust,
            description=f"IRSA role for {args.namespace}/{args.service_account}",
            opts=child,
        )
        attachments: list[pulumi.CustomResource] = [
            aws.iam.RolePolicyAttachment(
                f"{name}-{short}", role=self.role.name, policy_arn=arn, opts=child
            )
            for short, arn in sorted(args.managed_policy_arns.items())
        ]
        if args.inline_policy is not None:
            attachments.append(
                aws.iam.RolePolicy(f"{name}-policy", role=self.role.name,
                                   policy=args.inline_policy, opts=child)
            )
        # The ARN is handed out only once the permissions are attached, so whatever uses it never
        # runs with a role that can't do its job yet.
        self.role_arn: pulumi.Output[str] = pulumi.Output.all(
            self.role.arn, *[a.id for a in attachments]
        ).apply(lambda v: v[0])
        self.register_outputs({"roleArn": self.role_arn})
