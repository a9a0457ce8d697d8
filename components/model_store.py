"""The S3 bucket that holds the model versions, and the read-only role model pods use.

Promotion across accounts (dev -> staging -> prod in separate AWS accounts): the next stage's
deployer copies versions out of this bucket with its own credentials, server-side. That takes a
"yes" on both sides: here, the bucket policy lets `modelBucket.promotionReaders` GetObject under
the versions' prefix and the key policy lets them kms:Decrypt through S3 for this bucket only;
in their account, their own IAM policy must allow the same (the stack can't write that one).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.config.bucket import ModelBucketConfig
from components.config.serving import ModelServingConfig
from components.iam import IrsaRole, IrsaRoleArgs, partition_of, policy_document

PROMOTION_READERS_SID = "PromotionReadersGetModelVersions"


def bucket_policy(bucket_arn: str, prefix: str = "", readers: Sequence[str] = ()) -> str:
    """TLS 1.2+ only, for everyone (explicit denies win over any allow), and read-only access to
    the model versions under `prefix` for the promotion readers."""
    resources = [bucket_arn, f"{bucket_arn}/*"]
    statements = [
        {"Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
         "Resource": resources, "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
        {"Sid": "DenyOutdatedTls", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
         "Resource": resources, "Condition": {"NumericLessThan": {"s3:TlsVersion": "1.2"}}},
    ]
    if readers:
        # GetObject only (it covers HeadObject, which the managed copy sends): no ListBucket,
        # no writes. tools/promote.py works without ListBucket.
        statements.append({"Sid": PROMOTION_READERS_SID, "Effect": "Allow",
                           "Principal": {"AWS": sorted(readers)}, "Action": "s3:GetObject",
                           "Resource": f"{bucket_arn}/{prefix}/*"})
    return policy_document(*statements)


def key_policy(partition: str, account_id: str, region: str, bucket_arn: str,
               readers: Sequence[str] = ()) -> str:
    """AWS's default key policy (IAM in this account decides), plus kms:Decrypt for the promotion
    readers, only through S3 and only for this bucket's objects (with an S3 Bucket Key the
    encryption context is the bucket's ARN). Always explicit, so removing a reader revokes it."""
    statements = [{"Sid": "Enable IAM User Permissions", "Effect": "Allow",
                   "Principal": {"AWS": f"arn:{partition}:iam::{account_id}:root"},
                   "Action": "kms:*", "Resource": "*"}]
    if readers:
        statements.append({
            "Sid": "PromotionReadersDecryptThroughS3", "Effect": "Allow",
            "Principal": {"AWS": sorted(readers)}, "Action": "kms:Decrypt", "Resource": "*",
            "Condition": {"StringEquals": {
                "kms:ViaService": f"s3.{region}.amazonaws.com",
                "kms:EncryptionContext:aws:s3:arn": bucket_arn}}})
    return policy_document(*statements)


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
    region: str
    prefix: str
    """modelRepository.prefix: where the model versions lie (what promotion readers may read)."""


class ModelStore(pulumi.ComponentResource):
    bucket: aws.s3.Bucket
    key: aws.kms.Key | None

    def __init__(self, name: str, args: ModelStoreArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlserve:model_store:ModelStore", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        config = args.bucket

        self.bucket = aws.s3.Bucket(
            f"{name}-bucket",
            # S3 allows lowercase letters, digits and hyphens; the prefix is at most 37 chars.
            bucket_prefix=f"{args.cluster_name.lower().replace('_', '-')}-models-"[:37],
            force_destroy=config.force_destroy,
            opts=pulumi.ResourceOptions(parent=self, protect=config.protect),
        )

        self.key = None
        if config.encryption == "kms":
            account = aws.get_caller_identity_output(
                opts=pulumi.InvokeOutputOptions(parent=self)).account_id
            policy = pulumi.Output.all(partition_of(self), account, self.bucket.arn).apply(
                lambda v: key_policy(v[0], v[1], args.region, v[2], config.promotion_readers))
            self.key = aws.kms.Key(f"{name}-key", description=f"Model repository of "
                                   f"{args.cluster_name}", enable_key_rotation=True,
                                   deletion_window_in_days=30, policy=policy, opts=child)
            aws.kms.Alias(f"{name}-key-alias", name=f"alias/{args.cluster_name}-models",
                          target_key_id=self.key.key_id, opts=child)
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
            encryption: aws.s3.BucketServerSideEncryptionConfigurationRuleArgsDict = {
                "apply_server_side_encryption_by_default": {
                    "sse_algorithm": "aws:kms", "kms_master_key_id": self.key.arn},
                "bucket_key_enabled": True}
        else:
            encryption = {"apply_server_side_encryption_by_default": {"sse_algorithm": "AES256"}}
        encryption_config = aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption", bucket=bucket_id, rules=[encryption], opts=child)
        tls_policy = aws.s3.BucketPolicy(
            f"{name}-policy", bucket=bucket_id,
            policy=self.bucket.arn.apply(
                lambda arn: bucket_policy(arn, args.prefix, config.promotion_readers)),
            # S3 rejects policy writes racing the public-access block. The alias keeps the
            # policy of stacks deployed when it was TLS-only in place (no delete/create gap).
            opts=pulumi.ResourceOptions(parent=self, depends_on=[public_block],
                                        aliases=[pulumi.Alias(name=f"{name}-tls-only")]))
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
