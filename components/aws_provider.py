"""The stack's one AWS provider: region from config and default tags on every taggable resource."""

from __future__ import annotations

import pulumi_aws as aws

from components.config.stack import StackConfig
from policy.baseline import WAIVERS_TAG


def stack_tags(config: StackConfig, stack: str) -> dict[str, str]:
    """The stack's tags plus mlserve's own, which always win so ownership can't be mislabelled.

    Prod waivers are tags too: visible on every resource in the account, and how the policy pack
    learns that a prod rule is waived on purpose."""
    waivers = {WAIVERS_TAG: " ".join(sorted(config.prod_waivers))} if config.prod_waivers else {}
    # No user tag may pose as one of mlserve's own (the policy pack reads them).
    user = {k: v for k, v in config.tags.items() if not k.lower().startswith("mlserve:")}
    return {**user, "mlserve:stack": stack, "mlserve:environment": config.environment,
            "managed-by": "pulumi", **waivers}


def aws_provider(config: StackConfig, stack: str) -> aws.Provider:
    return aws.Provider(
        "aws",
        region=config.region,
        default_tags={"tags": stack_tags(config, stack)},
        # Fail on credentials for the wrong partition/region early, not halfway through an up.
        skip_credentials_validation=False,
        # Credentials of another account are refused before anything is read or created.
        allowed_account_ids=[config.account_id] if config.account_id else None,
    )
