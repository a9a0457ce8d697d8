"""The S3 bucket that holds the Triton model repository, and the read-only role model pods use."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.config import ModelBucketConfig, ModelServingConfig
from components.iam import IrsaRole, IrsaRoleArgs, policy_document


def tls_only_policy(bucket_arn: str) -> str:
    resources = [bucket_arn, f"{bucket_arn}/*"]
    return policy_document(
        {"Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
         "Resource": resources, "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
        {"Sid": "DenyOutdatedTls", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
         "Resource": resources, "Condition": {"NumericLessThan": {"s3:TlsVersion": "1.2"}}},
    )


def reader_policy(bucket_arn: str, key_arn: str | None) -> str:
    statements = [
        {"Sid": "ListModels", "Effect": "Allow",
         "Action": ["s3:ListBucket", "s3:GetBucketLocation"], "Resource": bucket_arn},
        {"Sid": "ReadModels", "Effect": "Allow",
         "Action": ["s3:GetObject", "s3:GetObjectVersion"], "Resource": f"{bucket_arn}/*"},
    ]
    if key_arn is not None:
        # Without it every GetObject on a KMS-encrypted object is AccessDenied (kserve#2003).
        statements.append({"Sid": "DecryptModels", "Effect": "Allow", "Action": "kms:Decrypt",
                           "Resource": key_arn})
    return policy_document(*statements)


@dataclass
class ModelStoreArgs:
    cluster_name: str
    bucket: ModelBucketConfig
    serving: ModelServingConfig
    oidc_provider_arn: pulumi.Input[str]
    oidc_issuer_url: pulumi.Input[str]


class ModelStore(pulumi.ComponentResource):
    bucket: aws.s3.Bucket
    key: aws.kms.Key | None

    def __init__(self, name: str, args: ModelStoreArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlserve:model_store:ModelStore", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        config = args.bucket

        self.key = None
        if config.encryption == "kms":
            self.key = aws.kms.Key(f"{name}-key", description=f"Model repository of "
                                   f"{args.cluster_name}", enable_key_rotation=True,
                                   deletion_window_in_days=30, opts=child)
            aws.kms.Alias(f"{name}-key-alias", name=f"alias/{args.cluster_name}-models",
                          target_key_id=self.key.key_id, opts=child)

        self.bucket = aws.s3.Bucket(
            f"{name}-bucket",
            # S3 allows lowercase letters, digits and hyphens; the prefix is at most 37 chars.
            bucket_prefix=f"{args.cluster_name.lower().replace('_', '-')}-models-"[:37],
            force_destroy=config.force_destroy,
            opts=pulumi.ResourceOptions(parent=self, protect=config.protect),
        )
        bucket_id = self.bucket.id
        aws.s3.BucketOwnershipControls(
            f"{name}-ownership", bucket=bucket_id,
            rule={"object_ownership": "BucketOwnerEnforced"}, opts=child)
        public_block = aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access-block", bucket=bucket_id, block_public_acls=True,
            block_public_policy=True, ignore_public_acls=True, restrict_public_buckets=True,
            opts=child)
        versioning = aws.s3.BucketVersioning(
            f"{name}-versioning", bucket=bucket_id,
            versioning_configuration={"status": "Enabled"}, opts=child)
        if self.key is not None:
            # A bucket key cuts KMS requests (and cost) for the many small files of a repository.
            encryption = {"apply_server_side_encryption_by_default": {
                "sse_algorithm": "aws:kms", "kms_master_key_id": self.key.arn},
                "bucket_key_enabled": True}
        else:
            encryption = {"apply_server_side_encryption_by_default": {"sse_algorithm": "AES256"}}
        encryption_config = aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption", bucket=bucket_id, rules=[encryption], opts=child)
        tls_policy = aws.s3.BucketPolicy(
            f"{name}-tls-only", bucket=bucket_id, policy=self.bucket.arn.apply(tls_only_policy),
            # S3 rejects policy writes racing the public-access block.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[public_block]))
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle", bucket=bucket_id,
            rules=[
                {"id": "expire-noncurrent-versions", "status": "Enabled",
                 "filter": {"prefix": ""},
                 "noncurrent_version_expiration": {
                     "noncurrent_days": config.noncurrent_version_expiration_days}},
                {"id": "abort-incomplete-uploads", "status": "Enabled", "filter": {"prefix": ""},
                 "abort_incomplete_multipart_upload": {"days_after_initiation": 7}},
            ],
            opts=child)

        # What must be in force before any object is written.
        self.ready: list[pulumi.Resource] = [encryption_config, public_block, tls_policy,
                                             versioning]
        key_arn = self.key.arn if self.key is not None else None
        self.reader = IrsaRole(
            f"{name}-reader",
            IrsaRoleArgs(
                oidc_provider_arn=args.oidc_provider_arn,
                oidc_issuer_url=args.oidc_issuer_url,
                namespace=args.serving.namespace,
                service_account=args.serving.service_account,
                inline_policy=pulumi.Output.all(self.bucket.arn, key_arn).apply(
                    lambda v: reader_policy(v[0], v[1])),
            ),
            child,
        )
        self.bucket_name: pulumi.Output[str] = self.bucket.bucket
        self.reader_role_arn: pulumi.Output[str] = self.reader.role_arn
        self.register_outputs({
            "bucketName": self.bucket_name,
            "bucketArn": self.bucket.arn,
            "kmsKeyArn": key_arn,
            "readerRoleArn": self.reader_role_arn,
        })
