"""tools/preflight.py: the EC2 vCPU quotas a stack's pools need, checked against an account's,
with boto3 talking real HTTP to a loopback server that answers like Service Quotas."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import botocore.session
import pytest

from tools import preflight

DATA = Path(__file__).resolve().parent.parent / "data" / "service-quotas"
TARGET = "ServiceQuotasV20190624."


class QuotaServer:
    """Answers GetServiceQuota / GetAWSDefaultServiceQuota from an account's recorded bodies;
    a quota the account never had applied is NoSuchResourceException, as Service Quotas says."""

    def __init__(self, account: dict):
        self.account = account
        self.requests: list[tuple[str, dict, dict]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                operation = self.headers.get("X-Amz-Target", "").removeprefix(TARGET)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append((operation, body, dict(self.headers)))
                found = server.account.get(operation, {}).get(body.get("QuotaCode"))
                if found is None:
                    status, reply = 400, {"__type": "NoSuchResourceException",
                                          "message": "The request failed because the specified "
                                                     "resource does not exist."}
                else:
                    status, reply = 200, found
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *_):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture(autouse=True)
def dummy_credentials(monkeypatch):
    for key, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                       ("AWS_SESSION_TOKEN", "testing")):
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


def account(name: str) -> dict:
    return json.loads((DATA / f"{name}.json").read_text())


def run(stack: str, name: str, capsys) -> tuple[int, str, list]:
    with QuotaServer(account(name)) as server:
        code = preflight.main(["--stack", stack, "--endpoint-url", server.url])
    out = capsys.readouterr()
    return code, out.out + out.err, server.requests


def test_recorded_bodies_use_only_fields_of_the_api():
    model = botocore.session.get_session().get_service_model("service-quotas")
    fields = set(model.shape_for("ServiceQuota").members)
    for name in ("new-account", "raised"):
        for answers in account(name).values():
            for body in answers.values():
                assert set(body) == {"Quota"}
                assert set(body["Quota"]) <= fields, set(body["Quota"]) - fields


def test_what_each_stack_needs():
    dev = {(n.family, n.capacity): n for n in preflight.needs(preflight.read_stack("dev"))}
    # dev: 2 x g4dn.2xlarge (8 vCPUs) per capacity type (spot, then on-demand), 3 x m7i.large.
    assert dev[("G", "spot")].vcpus == 16 and dev[("G", "on-demand")].vcpus == 16
    assert dev[("Standard", "on-demand")].vcpus == 3 * 2
    prod = {(n.family, n.capacity): n for n in preflight.needs(preflight.read_stack("prod"))}
    # prod, node groups: a10g 8 x g5.2xlarge + l4 4 x g6.2xlarge, all on-demand.
    assert prod[("G", "on-demand")].vcpus == 8 * 8 + 4 * 8
    assert prod[("G", "on-demand")].pools == ["a10g", "l4"]
    assert ("G", "spot") not in prod


def test_a_new_account_fails_naming_each_quota_and_the_fix(capsys):
    code, out, requests = run("dev", "new-account", capsys)
    assert code == 1
    assert "FAIL All G and VT Spot Instance Requests (L-3819A6DF): 16 vCPUs needed by t4-spot; " \
           "quota 0" in out
    assert "--quota-code L-DB2E81BA --desired-value 16" in out
    assert "ok   Running On-Demand Standard" in out
    # Applied value first, AWS's default where none was applied; every request signed.
    operations = [(op, body["QuotaCode"]) for op, body, _ in requests]
    assert ("GetServiceQuota", "L-3819A6DF") in operations
    assert ("GetAWSDefaultServiceQuota", "L-3819A6DF") in operations
    assert ("GetAWSDefaultServiceQuota", "L-1216C47A") not in operations
    assert all(body["ServiceCode"] == "ec2" for _, body, _ in requests)
    assert all(h["Authorization"].startswith("AWS4-HMAC-SHA256") and "us-west-2/servicequotas"
               in h["Authorization"] for _, _, h in requests)


def test_raised_quotas_pass(capsys):
    code, out, _ = run("dev", "raised", capsys)
    assert code == 0, out
    assert out.count("ok  ") == 3


def test_prod_needs_more_than_a_raised_dev_account(capsys):
    code, out, _ = run("prod", "raised", capsys)
    assert code == 1
    assert "FAIL Running On-Demand G and VT instances (L-DB2E81BA): 96 vCPUs needed by a10g, l4; " \
           "quota 64" in out


def test_unreachable_service_is_a_clear_error(capsys):
    code = preflight.main(["--stack", "dev", "--endpoint-url", "http://127.0.0.1:9"])
    assert code == 2
    assert "could not read the EC2 quotas of dev's account" in capsys.readouterr().err


def test_unknown_stack_is_a_clear_error(capsys):
    assert preflight.main(["--stack", "nope"]) == 2
    assert "Pulumi.nope.yaml: no such stack file" in capsys.readouterr().err


def test_the_docs_quota_table_is_what_preflight_computes():
    """docs/gpu-capacity.md, "Quotas": each figure is the stack's need, computed here."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "gpu-capacity.md").read_text()
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 5 and cells[1].startswith("L-"):
            rows[cells[1]] = {"dev": int(cells[2]), "staging": int(cells[3]),
                              "prod": int(cells[4])}
    assert len(rows) == 3
    for stack in ("dev", "staging", "prod"):
        found = {n.quota[0]: n.vcpus for n in preflight.needs(preflight.read_stack(stack))}
        for code, figures in rows.items():
            assert found.get(code, 0) == figures[stack], (stack, code)
