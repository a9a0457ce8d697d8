"""components/model_upload.py through Pulumi's real dynamic-provider entry point: the inputs the
program registers (the provider pickled into `__provider`), sent over gRPC to `python -m
pulumi.dynamic` started as the engine starts it, against a real S3 API server (moto)."""

from __future__ import annotations

import sys

import pytest

from modelrepo import repository
from tests.deploy_probe import (
    EXISTING_BUCKET,
    dynamic_resources,
    existing_cluster_and_bucket,
    s3_compatible,
)
from tests.dynamic_host import DynamicProviderHost, model_version_lifecycle
from tests.harness import ROOT_DIR
from tests.s3_server import CREDENTIALS, moto_server


@pytest.fixture(scope="module")
def server():
    with moto_server() as running:
        running.reset()
        yield running


def test_publish_refresh_diff_update_delete_and_pinned_checks(server):
    version = repository.load(ROOT_DIR / "model_repo").models["cifar10"].content_hash
    client = server.client()
    for bucket in ("models", EXISTING_BUCKET["name"]):
        client.create_bucket(Bucket=bucket)
    resources = {
        "s3Compatible": dynamic_resources("local", s3_compatible(server.url)),
        "existing": dynamic_resources("dev", existing_cluster_and_bucket()),
        "pinned": dynamic_resources("local", s3_compatible(server.url), version),
    }
    # The existing-bucket stack uses the ambient AWS settings, as on a laptop or in CI.
    env = {**CREDENTIALS, "AWS_ENDPOINT_URL_S3": server.url}
    with DynamicProviderHost(sys.executable, env) as host:
        model_version_lifecycle(host, client, resources)
