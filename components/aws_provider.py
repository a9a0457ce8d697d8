"""The stack's one AWS provider: region from config and default tags on every taggable resource."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from components.config import StackConfig


def stack_tags(config: StackConfig, stack: str) -> dict[str, str]:
    """The stack's tags plus mlserve's own, which always win so ownership can't be mislabelled."""
    return {**config.tags, "mlserve:stack": stack, "mlserve:environment": config.environment,
            "managed-by": "pulumi"}


def aws_provider(config: StackConfig, stack: str) -> aws.Provider:
    return aws.Provider(
        "aws",
        region=config.region,
        default_tags={"tags": stack_tags(config, stack)},
        # Fail on credentials for the wrong partition/region early, not halfway through an up.
        skip_credentials_validation=False,
    )
