"""components/foundation.py: where the platform stands. Each implementation, run on its own
under the mocks, gives the rest of the program the same things: the providers, the bucket, how
model pods read it, the StorageClass, every served version's storage URI, and what models and GPU
daemons wait for."""

from __future__ import annotations

import pytest

from modelrepo import repository
from tests.deploy_probe import EXISTING_BUCKET, existing_cluster_and_bucket
from tests.harness import ACCOUNT, evaluate_program, set_path, stack_config

PROGRAM = '''
import pulumi

from components.foundation import found
from components.model_repository import model_versions
from components.stack_inputs import load
from tests.harness import ROOT_DIR

inputs = load(ROOT_DIR)
versions = model_versions(inputs.config, inputs.repository, inputs.plans)
foundation = found(inputs.config, pulumi.get_stack(), inputs.repository, versions)
bucket, reader = foundation.bucket, foundation.bucket.reader
pulumi.export("kind", type(foundation).__name__)
pulumi.export("providers", {key: p.urn for key, p in foundation.providers.items()})
pulumi.export("bucket", bucket.name)
pulumi.export("readerRoleArn", reader.role_arn)
pulumi.export("s3Endpoint", reader.s3_endpoint)
pulumi.export("s3Keys", list(reader.s3_credentials) if reader.s3_credentials else None)
pulumi.export("storageClass", foundation.storage_class)
pulumi.export("versions", {f"{m}@{v}": uri for (m, v), uri in bucket.versions.items()})
pulumi.export("ready", [r.urn for r in bucket.ready])
pulumi.export("gpuCapacity", [r.urn for r in foundation.gpu_capacity])
lb = foundation.load_balancer_controller
pulumi.export("loadBalancerController", lb.urn if lb is not None else None)
pulumi.export("oidcProviderArn", foundation.oidc_provider_arn)
pulumi.export("outputs", sorted(foundation.stack_outputs))
'''
FOLDER_VERSION = repository.load(
    __import__("tests.harness", fromlist=["ROOT_DIR"]).ROOT_DIR / "model_repo"
).models["cifar10"].content_hash
PINNED = "0123456789abcdef0123"
EKS_OUTPUTS = ["clusterEndpoint", "clusterName", "gpuNodePools", "kubeconfig",
               "modelBucketName", "modelReaderRoleArn", "oidcProviderArn", "privateSubnetIds",
               "publicSubnetIds", "systemNodeGroupName", "vpcId"]


def run(tmp_path, stack: str, config: dict[str, str] | None = None):
    program = tmp_path / "foundation_program.py"
    program.write_text(PROGRAM)
    graph = evaluate_program(program, stack, config=config)
    assert graph.error is None, graph.error
    return graph


def urn_of(graph, type_: str, name: str) -> str:
    return graph.one(type_, name).urn


def test_a_new_aws_account_founds_eks_and_its_own_bucket(tmp_path):
    graph = run(tmp_path, "dev")
    out = graph.exports
    assert out["kind"] == "NewAwsAccount"
    assert out["providers"] == {
        "aws": urn_of(graph, "pulumi:providers:aws", "aws"),
        "kubernetes": urn_of(graph, "pulumi:providers:kubernetes", "cluster-k8s")}
    # The bucket it created (named by AWS from the stack's prefix).
    created = graph.one("aws:s3/bucket:Bucket", "models-bucket")
    assert created.inputs["bucketPrefix"] == "mlserve-dev-models-"
    assert out["bucket"] == created.wire_outputs["bucket"]
    # The model pods' own IRSA role, created with the bucket.
    assert out["readerRoleArn"].startswith(f"arn:aws:iam::{ACCOUNT}:role/")
    assert out["s3Endpoint"] is None and out["s3Keys"] is None
    assert out["storageClass"] == "gp3"
    assert out["versions"] == {
        f"cifar10@{FOLDER_VERSION}": f"s3://{out['bucket']}/models/{FOLDER_VERSION}"}
    # Models wait for their reader role and for the uploaded objects (manifest last).
    assert set(out["ready"]) == {
        urn_of(graph, "mlserve:iam:IrsaRole", "models-reader"),
        urn_of(graph, "mlserve:model_repository:ModelRepository", "model-repo")}
    # dev's GPU capacity engine is Karpenter (gpuCapacity.engine): the pools' NodePools.
    assert out["gpuCapacity"] == [urn_of(graph, "mlserve:gpu_capacity:KarpenterGpuPools", "gpu")]
    assert out["loadBalancerController"] == urn_of(
        graph, "kubernetes:helm.sh/v3:Release", "lb-controller-aws-load-balancer-controller")
    assert out["oidcProviderArn"].startswith(f"arn:aws:iam::{ACCOUNT}:oidc-provider/")
    assert out["outputs"] == EKS_OUTPUTS


def test_a_new_aws_account_may_serve_from_a_bucket_it_does_not_own(tmp_path):
    config = set_path(stack_config("dev"), "modelBucket", EXISTING_BUCKET)
    config = set_path(config, "modelBucket.noncurrentVersionExpirationDays", 7)
    graph = run(tmp_path, "dev", config)
    out = graph.exports
    assert out["kind"] == "NewAwsAccount"
    assert not graph.of_type("aws:s3/bucket:Bucket")
    assert out["bucket"] == "team-models"
    assert out["readerRoleArn"] == EXISTING_BUCKET["readerRoleArn"]
    assert out["versions"] == {
        f"cifar10@{FOLDER_VERSION}": f"s3://team-models/models/{FOLDER_VERSION}"}
    assert out["ready"] == [urn_of(graph, "mlserve:model_upload:ModelUpload", "model-upload")]


def test_an_existing_cluster_and_bucket_found_nothing_on_aws(tmp_path):
    graph = run(tmp_path, "dev", existing_cluster_and_bucket())
    out = graph.exports
    assert out["kind"] == "ExistingClusterAndBucket"
    assert out["providers"] == {
        "kubernetes": urn_of(graph, "pulumi:providers:kubernetes", "cluster-k8s")}
    assert not [r for r in graph.resources if "aws" in r.type] and not graph.invokes
    assert out["bucket"] == "team-models"
    assert out["readerRoleArn"] == EXISTING_BUCKET["readerRoleArn"]
    assert out["s3Endpoint"] is None and out["s3Keys"] is None
    assert out["storageClass"] == ""
    assert out["versions"] == {
        f"cifar10@{FOLDER_VERSION}": f"s3://team-models/models/{FOLDER_VERSION}"}
    assert out["ready"] == [urn_of(graph, "mlserve:model_upload:ModelUpload", "model-upload")]
    assert out["gpuCapacity"] == [] and out["loadBalancerController"] is None
    assert out["oidcProviderArn"] is None
    assert out["outputs"] == ["modelBucketName", "modelReaderRoleArn"]


def test_the_local_stack_reads_minio_with_generated_keys(tmp_path):
    graph = run(tmp_path, "local")
    out = graph.exports
    assert out["kind"] == "ExistingClusterAndBucket"
    assert out["bucket"] == "models" and out["readerRoleArn"] is None
    # Pods reach MinIO by its Service; keys are MinIO's generated root credentials.
    assert out["s3Endpoint"] == "http://minio.minio.svc.cluster.local:9000"
    passwords = {r.name: r for r in graph.of_type("random:index/randomPassword:RandomPassword")}
    assert out["s3Keys"] == [passwords["object-store-access-key"].wire_outputs["result"],
                             passwords["object-store-secret-key"].wire_outputs["result"]]
    assert out["versions"] == {f"cifar10@{FOLDER_VERSION}": f"s3://models/models/{FOLDER_VERSION}"}
    upload = graph.one("mlserve:model_upload:ModelUpload", "model-upload")
    assert out["ready"] == [upload.urn]
    minio = graph.one("kubernetes:helm.sh/v3:Release", "object-store-minio")
    (version,) = graph.children(upload)
    assert minio.urn in version.dependencies, "uploads wait for MinIO"
    assert out["outputs"] == ["modelBucketName"]


@pytest.mark.parametrize("stack", ["dev", "local"])
def test_pinned_versions_are_checked_not_uploaded_on_either_foundation(tmp_path, stack):
    config = set_path(stack_config(stack), "modelServing.models.cifar10.version", PINNED)
    graph = run(tmp_path, stack, config)
    out = graph.exports
    assert out["versions"] == {f"cifar10@{PINNED}": f"s3://{out['bucket']}/models/{PINNED}"}
    pins = urn_of(graph, "mlserve:model_upload:PinnedModelVersions", "model-pins")
    assert pins in out["ready"]
    assert not graph.of_type("mlserve:model_repository:ModelRepository")
    assert not graph.of_type("mlserve:model_upload:ModelUpload")


def test_the_node_groups_engine_gives_its_node_groups(tmp_path):
    graph = run(tmp_path, "dev", set_path(stack_config("dev"), "gpuCapacity.engine",
                                          "nodeGroups"))
    out = graph.exports
    assert out["gpuCapacity"] == [urn_of(graph, "mlserve:gpu_node_groups:GpuNodeGroups", "gpu")]
    assert "gpuNodeGroupNames" in out["outputs"] and "gpuNodePools" not in out["outputs"]
