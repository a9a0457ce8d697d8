"""A real stack's life, end to end, with the Pulumi Automation API: up, smoke, an idempotent
preview, destroy. Needs the pulumi CLI, AWS credentials and MLSERVE_INTEGRATION=1 (it creates
billable resources); otherwise skipped, never counted as passing.

    MLSERVE_INTEGRATION=1 AWS_PROFILE=sandbox PULUMI_CONFIG_PASSPHRASE=... \\
        .venv/bin/python -m pytest tests/integration -m cloud
"""

from __future__ import annotations

import json
import os
import shutil
import uuid

import pytest
import yaml

from tests.harness import ROOT_DIR

pytestmark = pytest.mark.cloud


def _missing() -> str | None:
    if shutil.which("pulumi") is None:
        return "the pulumi CLI is not installed"
    try:
        import boto3

        if boto3.session.Session().get_credentials() is None:
            return "no AWS credentials"
    except Exception as exc:  # noqa: BLE001
        return f"AWS credentials unavailable: {exc}"
    if os.environ.get("MLSERVE_INTEGRATION") != "1":
        return "set MLSERVE_INTEGRATION=1 to create (billable) cloud resources"
    return None


@pytest.mark.skipif(_missing() is not None, reason=str(_missing()))
def test_up_smoke_preview_destroy():
    from pulumi import automation as auto

    from tools import smoke

    name = f"it-{uuid.uuid4().hex[:8]}"
    stack = auto.create_stack(stack_name=name, work_dir=str(ROOT_DIR))
    try:
        config = yaml.safe_load((ROOT_DIR / "Pulumi.dev.yaml").read_text())["config"]
        for key, value in config.items():
            text = value if isinstance(value, str) else json.dumps(value)
            stack.set_config(key, auto.ConfigValue(value=text), path=False)
        stack.set_config("mlserve:modelBucket", auto.ConfigValue(
            value=json.dumps({**config.get("mlserve:modelBucket", {}), "forceDestroy": True})))
        stack.up(on_output=print)
        outputs = stack.outputs()["models"].value
        endpoints = [smoke.Endpoint(m, v["url"].split("/v2/models/")[0], v["host"])
                     for m, v in outputs.items()]
        assert smoke.run(endpoints, wait=900)  # dev scales to zero: the first request wakes it
        stack.preview(expect_no_changes=True, on_output=print)
    finally:
        stack.destroy(on_output=print)
        stack.workspace.remove_stack(name)
