"""The `modelBucket` and `modelRepository` sections: where the model versions live."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from components.config.errors import ConfigError
from components.config.types import IAM_PRINCIPAL_ARN, ConfigModel, PromotionReaderArn


class ModelBucketConfig(ConfigModel):
    """The S3 bucket holding the Triton model repository: created here, an existing S3 bucket,
    or a bucket on an S3-compatible server (MinIO)."""

    mode: Literal["create", "existing", "s3Compatible"] = Field(
        "create", description="create: a new, hardened S3 bucket; existing: an S3 bucket the "
        "stack doesn't own; s3Compatible: an S3-compatible endpoint.")
    name: str | None = Field(None, pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
                             description="existing/s3Compatible: the bucket name.")
    reader_role_arn: str | None = Field(None, pattern=IAM_PRINCIPAL_ARN,
                                        description="existing: IAM role model pods assume (IRSA).")
    endpoint: str | None = Field(None, pattern=r"^https?://[^/]+$",
                                 description="s3Compatible: endpoint the stack uploads to.")
    cluster_endpoint: str | None = Field(
        None, pattern=r"^https?://[^/]+$",
        description="s3Compatible: endpoint pods read from; default: endpoint.")

    encryption: Literal["kms", "s3"] = Field(
        "kms", description="kms: a customer-managed key with rotation and a bucket key; s3: AES256."
    )
    noncurrent_version_expiration_days: int = Field(
        90, ge=1, le=3650, description="Days before overwritten model versions are deleted."
    )
    force_destroy: bool = Field(
        False, description="Let `pulumi destroy` empty the bucket. Never allowed in prod."
    )
    protect: bool = Field(False, description="Pulumi-protect the bucket. Required in prod.")
    promotion_readers: list[PromotionReaderArn] = Field(
        default_factory=list,
        description="create: IAM roles (or accounts) of the next stage that promote model "
        "versions out of this bucket: read-only on <prefix>/ in the bucket policy, and "
        "kms:Decrypt through S3 in the key policy.")

    @field_validator("promotion_readers")
    @classmethod
    def _distinct_readers(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"must not repeat a principal, got {value}")
        return value


class ModelRepositoryConfig(ConfigModel):
    """Where the Triton model repository comes from and where it goes in the bucket."""

    path: str = Field("model_repo", pattern=r"^[\w./-]+$",
                      description="Repository folder (relative paths are from the project).")
    prefix: str = Field("models", pattern=r"^[a-z0-9][a-z0-9-]*(/[a-z0-9][a-z0-9-]*)*$",
                        description="Key prefix in the bucket; each model version goes under "
                        "<prefix>/<model version>/<model>/.")

    @model_validator(mode="before")
    @classmethod
    def _no_repository_version(cls, data: Any) -> Any:
        # One version for the whole repository is gone: every model has its own.
        if isinstance(data, Mapping) and "version" in data:
            raise ConfigError([(("version",), "removed: each model has its own version "
                                    "now; pin a model with modelServing.models.<name>.version "
                                    "(python -m tools.promote writes it)")])
        return data
