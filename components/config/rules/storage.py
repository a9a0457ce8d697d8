"""Rules of the model store: the bucket's mode, its credentials, MinIO."""

from __future__ import annotations

from collections.abc import Iterator

from components.config.errors import Problem
from components.config.stack import StackConfig


def bucket_mode_fields(config: StackConfig) -> Iterator[Problem]:
    bucket = config.model_bucket
    if bucket.mode != "create" and not bucket.name:
        yield ("modelBucket", "name"), f"required with mode {bucket.mode}"
    if bucket.mode == "existing" and not bucket.reader_role_arn:
        yield (("modelBucket", "readerRoleArn"),
               "required with mode existing (IRSA for the model pods)")
    if bucket.mode == "s3Compatible" and not bucket.endpoint:
        yield ("modelBucket", "endpoint"), "required with mode s3Compatible"
    if bucket.mode == "create":
        for field, value in (("name", bucket.name), ("readerRoleArn", bucket.reader_role_arn),
                             ("endpoint", bucket.endpoint),
                             ("clusterEndpoint", bucket.cluster_endpoint)):
            if value:
                yield (("modelBucket", field),
                       "not with mode create (the stack names and owns the bucket)")


def promotion_readers_need_own_bucket(config: StackConfig) -> Iterator[Problem]:
    bucket = config.model_bucket
    if bucket.promotion_readers and bucket.mode != "create":
        yield (("modelBucket", "promotionReaders"), "only with mode create (grant a bucket the "
               "stack doesn't own in its own policy)")


def store_credentials(config: StackConfig) -> Iterator[Problem]:
    keys = [config.model_store_access_key_id, config.model_store_secret_access_key]
    mode = config.model_bucket.mode
    if mode == "s3Compatible" and not all(keys) and not config.platform.minio.enabled:
        yield (("modelStoreAccessKeyId",), "s3Compatible needs modelStoreAccessKeyId and "
               "modelStoreSecretAccessKey (or platform.minio)")
    if any(keys) and mode != "s3Compatible":
        yield (("modelStoreAccessKeyId",),
               "keys only with modelBucket.mode s3Compatible (S3 is read through IRSA)")
    elif any(keys) and not all(keys):
        yield (("modelStoreAccessKeyId",),
               "set both modelStoreAccessKeyId and modelStoreSecretAccessKey, or neither")


def minio_placement(config: StackConfig) -> Iterator[Problem]:
    if not config.platform.minio.enabled:
        return
    if config.environment == "prod":
        yield (("platform", "minio", "enabled"),
               "a single-replica MinIO is not a prod model store")
    if config.model_bucket.mode != "s3Compatible":
        yield ("platform", "minio", "enabled"), "needs modelBucket.mode s3Compatible"
