"""Facts every ARN and zone must agree with: the region's partition, the stack's account."""

from __future__ import annotations

import re
from collections.abc import Iterator

from components import aws_facts
from components.config.errors import Key, Problem
from components.config.rules.scope import prod_on_eks
from components.config.stack import StackConfig


def _principals(config: StackConfig) -> Iterator[tuple[Key, str]]:
    """Every ARN the stack is given, with its key."""
    cluster = config.cluster
    for key, arns in (("adminPrincipalArns", cluster.admin_principal_arns),
                      ("previewPrincipalArns", cluster.preview_principal_arns)):
        for index, arn in enumerate(arns):
            yield ("cluster", key, index), arn
    if config.model_bucket.reader_role_arn:
        yield ("modelBucket", "readerRoleArn"), config.model_bucket.reader_role_arn
    topic = config.platform.monitoring.alerts.sns_topic
    if topic and topic != "create":
        yield ("platform", "monitoring", "alerts", "snsTopic"), topic


def _arn_parts(arn: str) -> tuple[str, str]:
    """(partition, account) of an ARN."""
    parts = arn.split(":")
    return parts[1], parts[4]


def principals_in_the_regions_partition(config: StackConfig) -> Iterator[Problem]:
    partition = aws_facts.region_partition(config.region)
    for where, arn in _principals(config):
        if _arn_parts(arn)[0] != partition:
            yield (where, f"must be in partition {partition!r} of region {config.region}, got "
                          f"{arn!r}")


def promotion_readers_in_the_regions_partition(config: StackConfig) -> Iterator[Problem]:
    """Promotion readers are other accounts' principals by design, but a bucket policy can only
    name principals of its own partition."""
    partition = aws_facts.region_partition(config.region)
    for index, arn in enumerate(config.model_bucket.promotion_readers):
        if _arn_parts(arn)[0] != partition:
            yield (("modelBucket", "promotionReaders", index),
                   f"must be in partition {partition!r} of region {config.region}, got {arn!r}")


def principals_in_the_stacks_account(config: StackConfig) -> Iterator[Problem]:
    account = config.account_id
    principals = list(_principals(config))
    if account is None:
        accounts = {_arn_parts(arn)[1] for _, arn in principals}
        if len(accounts) > 1:
            yield (("accountId",), f"the stack's principals span accounts {sorted(accounts)}: "
                   "set accountId to the stack's own")
        return
    for where, arn in principals:
        if _arn_parts(arn)[1] != account:
            yield where, f"must be in the stack's account {account}, got {arn!r}"


def prod_account_pinned(config: StackConfig) -> Iterator[Problem]:
    if prod_on_eks(config) and config.account_id is None:
        yield (("accountId",), "is required in prod: the AWS provider then refuses credentials "
               "of any other account")


def availability_zones_in_the_region(config: StackConfig) -> Iterator[Problem]:
    for index, zone in enumerate(config.network.availability_zones or []):
        if not re.fullmatch(rf"{re.escape(config.region)}[a-z]", zone):
            yield (("network", "availabilityZones", index),
                   f"must be a standard AZ of {config.region} (like {config.region}a), got "
                   f"{zone!r}")
