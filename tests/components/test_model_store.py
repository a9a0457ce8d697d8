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
