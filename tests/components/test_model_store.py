"""components/model_store.py: a private, encrypted, versioned bucket and its read-only IRSA role."""

from __future__ import annotations

import json

from tests.harness import evaluate, set_path, stack_config


def bucket(graph):
    return graph.one("aws:s3/bucket:Bucket")


def attached(graph, type_):
    """The one resource of `type_` that configures the model bucket."""
    found = [r for r in graph.of_type(type_)
             if r.property_dependencies.get("bucket") == [bucket(graph).urn]]
    assert len(found) == 1, f"{type_}: {len(found)}"
    return found[0]


def test_versioning_on(graph):
    versioning = attached(graph, "aws:s3/bucketVersioning:BucketVersioning")
    assert versioning.inputs["versioningConfiguration"] == {"status": "Enabled"}


def test_kms_encryption_with_bucket_key(graph):
    rule = attached(graph, "aws:s3/bucketServerSideEncryptionConfiguration:"
                           "BucketServerSideEncryptionConfiguration").inputs["rules"][0]
    key = graph.one("aws:kms/key:Key", "models-key")
    assert rule["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "aws:kms"
    assert rule["applyServerSideEncryptionByDefault"]["kmsMasterKeyId"].startswith(
        "arn:aws:kms:")
    assert rule["bucketKeyEnabled"] is True
    assert key.inputs["enableKeyRotation"] is True


def test_s3_managed_encryption_option():
    graph = evaluate("dev", config=set_path(stack_config("dev"), "modelBucket.encryption", "s3"))
    rule = attached(graph, "aws:s3/bucketServerSideEncryptionConfiguration:"
                           "BucketServerSideEncryptionConfiguration").inputs["rules"][0]
    assert rule["applyServerSideEncryptionByDefault"] == {"sseAlgorithm": "AES256"}
    assert [k.name for k in graph.of_type("aws:kms/key:Key")] == ["cluster-secrets-key"]
    reader = json.loads(graph.one("aws:iam/rolePolicy:RolePolicy", "models-reader-policy")
                        .inputs["policy"])
    assert not [s for s in reader["Statement"] if "kms:Decrypt" in str(s["Action"])]


def test_all_public_access_blocked(graph):
    block = attached(graph, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock").inputs
    for flag in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls",
                 "restrictPublicBuckets"):
        assert block[flag] is True


def test_acls_disabled(graph):
    ownership = attached(graph, "aws:s3/bucketOwnershipControls:BucketOwnershipControls")
    assert ownership.inputs["rule"] == {"objectOwnership": "BucketOwnerEnforced"}


def test_policy_denies_anything_but_tls(graph):
    policy_res = attached(graph, "aws:s3/bucketPolicy:BucketPolicy")
    policy = json.loads(policy_res.inputs["policy"])
    arn = f"arn:aws:s3:::{graph.exports['modelBucketName']}"
    insecure = next(s for s in policy["Statement"] if s["Sid"] == "DenyInsecureTransport")
    assert insecure["Effect"] == "Deny" and insecure["Principal"] == "*"
    assert insecure["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert sorted(insecure["Resource"]) == [arn, f"{arn}/*"]
    block = attached(graph, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
    assert block.urn in policy_res.dependencies


def test_noncurrent_versions_expire(graph):
    days = json.loads(stack_config(graph.stack)["mlserve:modelBucket"])[
        "noncurrentVersionExpirationDays"]
    rules = {r["id"]: r for r in attached(graph, "aws:s3/bucketLifecycleConfiguration:"
                                                 "BucketLifecycleConfiguration").inputs["rules"]}
    expire = rules["expire-noncurrent-versions"]
    assert expire["status"] == "Enabled"
    assert expire["noncurrentVersionExpiration"] == {"noncurrentDays": days}


def test_force_destroy_and_protection_per_stack(dev, staging, prod):
    assert bucket(dev).inputs["forceDestroy"] is True and bucket(dev).protect is False
    assert bucket(prod).inputs["forceDestroy"] is False and bucket(prod).protect is True
    assert bucket(staging).protect is True


def test_reader_role_reads_only_this_bucket(graph):
    arn = f"arn:aws:s3:::{graph.exports['modelBucketName']}"
    policy = json.loads(graph.one("aws:iam/rolePolicy:RolePolicy", "models-reader-policy")
                        .inputs["policy"])
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    assert by_sid["ReadModels"]["Resource"] == f"{arn}/*"
    assert sorted(by_sid["ReadModels"]["Action"]) == ["s3:GetObject", "s3:GetObjectVersion"]
    assert by_sid["ListModels"]["Resource"] == arn
    assert by_sid["DecryptModels"]["Action"] == "kms:Decrypt"
    assert by_sid["DecryptModels"]["Resource"].startswith("arn:aws:kms:")
    assert not any(a.startswith(("s3:Put", "s3:Delete")) or a == "s3:*"
                   for s in policy["Statement"] for a in
                   ([s["Action"]] if isinstance(s["Action"], str) else s["Action"]))


def test_reader_role_trusts_exactly_one_service_account(graph):
    role = graph.one("aws:iam/role:Role", "models-reader-role")
    (statement,) = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert statement["Principal"]["Federated"].startswith("arn:aws:iam::123456789012:oidc-provider/")
    equals = statement["Condition"]["StringEquals"]
    issuer = statement["Principal"]["Federated"].split("oidc-provider/", 1)[1]
    assert equals == {f"{issuer}:sub": "system:serviceaccount:models:model-server",
                      f"{issuer}:aud": "sts.amazonaws.com"}


def test_reader_trust_follows_serving_config():
    config = set_path(stack_config("dev"), "modelServing.namespace", "ml")
    graph = evaluate("dev", config=set_path(config, "modelServing.serviceAccount", "triton"))
    assert graph.error is None, graph.error
    role = graph.one("aws:iam/role:Role", "models-reader-role")
    condition = json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]["Condition"]
    assert "system:serviceaccount:ml:triton" in condition["StringEquals"].values()


# ---- promotion across accounts: the next stage's deployer may read the model versions ---------

STAGING_DEPLOYER = "arn:aws:iam::444455556666:role/mlserve-deployer"


def statements(document):
    return {s["Sid"]: s for s in json.loads(document)["Statement"]}


def with_readers(readers, stack="dev"):
    graph = evaluate(stack, config=set_path(stack_config(stack), "modelBucket.promotionReaders",
                                            readers))
    assert graph.error is None, graph.error
    return graph


def test_promotion_readers_may_get_model_versions_and_nothing_else():
    graph = with_readers([STAGING_DEPLOYER, "arn:aws:iam::777788889999:root"])
    arn = f"arn:aws:s3:::{graph.exports['modelBucketName']}"
    policy = statements(attached(graph, "aws:s3/bucketPolicy:BucketPolicy").inputs["policy"])
    assert set(policy) == {"DenyInsecureTransport", "DenyOutdatedTls",
                           "PromotionReadersGetModelVersions"}
    grant = policy["PromotionReadersGetModelVersions"]
    assert grant == {"Sid": "PromotionReadersGetModelVersions", "Effect": "Allow",
                     "Principal": {"AWS": ["arn:aws:iam::444455556666:role/mlserve-deployer",
                                           "arn:aws:iam::777788889999:root"]},
                     "Action": "s3:GetObject", "Resource": f"{arn}/models/*"}
    # The TLS-only denies are untouched, and an explicit deny wins over the grant.
    assert policy["DenyInsecureTransport"]["Condition"] == {
        "Bool": {"aws:SecureTransport": "false"}}
    assert policy["DenyOutdatedTls"]["Condition"] == {"NumericLessThan": {"s3:TlsVersion": "1.2"}}
    assert all(policy[s]["Principal"] == "*" and policy[s]["Action"] == "s3:*"
               for s in ("DenyInsecureTransport", "DenyOutdatedTls"))


def test_promotion_readers_may_decrypt_only_through_s3_for_this_bucket():
    graph = with_readers([STAGING_DEPLOYER])
    arn = f"arn:aws:s3:::{graph.exports['modelBucketName']}"
    key = statements(graph.one("aws:kms/key:Key", "models-key").inputs["policy"])
    assert key["Enable IAM User Permissions"] == {
        "Sid": "Enable IAM User Permissions", "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "kms:*",
        "Resource": "*"}
    assert key["PromotionReadersDecryptThroughS3"] == {
        "Sid": "PromotionReadersDecryptThroughS3", "Effect": "Allow",
        "Principal": {"AWS": [STAGING_DEPLOYER]}, "Action": "kms:Decrypt", "Resource": "*",
        "Condition": {"StringEquals": {"kms:ViaService": "s3.us-west-2.amazonaws.com",
                                       "kms:EncryptionContext:aws:s3:arn": arn}}}


def test_without_readers_the_key_policy_is_awss_default_so_removing_one_revokes_it():
    graph = with_readers([])
    key = statements(graph.one("aws:kms/key:Key", "models-key").inputs["policy"])
    assert list(key) == ["Enable IAM User Permissions"]
    policy = statements(attached(graph, "aws:s3/bucketPolicy:BucketPolicy").inputs["policy"])
    assert "PromotionReadersGetModelVersions" not in policy


def test_promotion_readers_follow_the_prefix():
    config = set_path(stack_config("dev"), "modelBucket.promotionReaders", [STAGING_DEPLOYER])
    graph = evaluate("dev", config=set_path(config, "modelRepository.prefix", "team-a/models"))
    policy = statements(attached(graph, "aws:s3/bucketPolicy:BucketPolicy").inputs["policy"])
    assert policy["PromotionReadersGetModelVersions"]["Resource"].endswith(
        "/team-a/models/*")


def test_the_example_stacks_let_the_next_stage_promote(dev, staging, prod):
    """dev -> staging -> prod live in three accounts: each bucket names the next deployer."""
    def readers(graph):
        policy = statements(attached(graph, "aws:s3/bucketPolicy:BucketPolicy").inputs["policy"])
        grant = policy.get("PromotionReadersGetModelVersions")
        return grant["Principal"]["AWS"] if grant else []

    assert readers(dev) == ["arn:aws:iam::444455556666:role/mlserve-deployer"]
    assert readers(staging) == ["arn:aws:iam::777788889999:role/mlserve-deployer"]
    assert readers(prod) == []
    for graph in (dev, staging):
        assert "PromotionReadersDecryptThroughS3" in statements(
            graph.one("aws:kms/key:Key", "models-key").inputs["policy"])


def test_promotion_reader_rules():
    from tests.components.test_config import rejected

    assert "mlserve:modelBucket.promotionReaders[0]: must match" in rejected(
        "dev", {"modelBucket.promotionReaders": ["staging"]}).problems[0]
    assert rejected("dev", {"modelBucket.promotionReaders": [STAGING_DEPLOYER] * 2}).problems[
        0].startswith("mlserve:modelBucket.promotionReaders: must not repeat a principal")
    local = rejected("local", {"modelBucket.promotionReaders": [STAGING_DEPLOYER]})
    assert ("mlserve:modelBucket.promotionReaders: only with mode create (grant a bucket the "
            "stack doesn't own in its own policy)") in local.problems
