"""The uploaded layout is what Triton reads: the repository served straight from an S3 API
server on loopback (moto), under the content-addressed prefix the stack uploads to."""

from __future__ import annotations

import json
import urllib.request

import boto3
import numpy as np
import pytest
from moto.server import ThreadedMotoServer

from modelrepo import repository
from modelrepo.layout import object_key
from tests.harness import ROOT_DIR
from tools.models.serve import TritonServer, free_port, write_twins

BUCKET = "mlserve-test-models"
PREFIX = "models"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"}


@pytest.fixture
def s3(monkeypatch):
    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/moto-api/reset",
                                                  method="POST"))
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def test_triton_serves_the_content_addressed_prefix_from_s3(s3, tmp_path):
    repo = repository.load(ROOT_DIR / "model_repo")
    version = repo.models["cifar10"].content_hash  # one model per version, as uploaded
    twins = write_twins(repo, tmp_path / "twins")
    client = boto3.client("s3", endpoint_url=s3)
    client.create_bucket(Bucket=BUCKET)
    for path in sorted(p for p in twins.rglob("*") if p.is_file()):
        relative = path.relative_to(twins).as_posix()
        client.upload_file(str(path), BUCKET, object_key(PREFIX, version, relative))
    # A stale version beside it must not be picked up.
    client.put_object(Bucket=BUCKET, Key=f"{PREFIX}/0000stale/cifar10/config.pbtxt", Body=b"x")

    uri = f"s3://{s3}/{BUCKET}/{PREFIX}/{version}"
    with TritonServer(uri, env=CREDENTIALS) as server:
        body = {"inputs": [{"name": "image__0", "shape": [1, 3, 32, 32], "datatype": "UINT8",
                            "data": np.zeros(3 * 32 * 32, dtype=np.uint8).tolist()}]}
        request = urllib.request.Request(f"{server.url}/v2/models/cifar10/infer",
                                         data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        answer = json.load(urllib.request.urlopen(request, timeout=30))
        assert sum(answer["outputs"][0]["data"]) == pytest.approx(1.0, abs=1e-5)
        index = json.load(urllib.request.urlopen(
            urllib.request.Request(f"{server.url}/v2/repository/index", data=b"{}",
                                   method="POST"), timeout=10))
        assert [m["name"] for m in index] == ["cifar10"]
