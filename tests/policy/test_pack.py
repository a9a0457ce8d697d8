"""policy/__main__.py against the real pulumi-policy, in the pack's own environment
(policy/requirements.txt: pulumi-policy pins protobuf 5.x, apart from the project's tools)."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

import pytest

from policy.rules import RULES
from tests.harness import ROOT_DIR

PROBE = r'''
import json, runpy, sys
import pulumi_policy
built = {}
class RecordingPack:  # the real PolicyPack starts a gRPC server and blocks
    def __init__(self, name, policies, enforcement_level=None, **_):
        built.update(name=name, level=str(enforcement_level),
                     policies=[(type(p).__name__, p.name, p.description) for p in policies])
pulumi_policy.PolicyPack = RecordingPack
sys.path.insert(0, sys.argv[1])
runpy.run_path(sys.argv[1] + "/__main__.py", run_name="__main__")
print(json.dumps(built))
'''


@pytest.fixture(scope="module")
def policy_python(tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("policy-venv")
    venv.create(target, with_pip=True)
    python = target / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    "-r", str(ROOT_DIR / "policy" / "requirements.txt")], check=True, timeout=600)
    return python


def test_the_pack_builds_every_rule_with_the_real_sdk(policy_python):
    import json

    result = subprocess.run([str(policy_python), "-c", PROBE, str(ROOT_DIR / "policy")],
                            capture_output=True, text=True, timeout=120, check=True)
    built = json.loads(result.stdout.strip().splitlines()[-1])
    assert built["name"] == "mlserve"
    assert built["level"].endswith("MANDATORY")
    kinds = {"resource": "ResourceValidationPolicy", "stack": "StackValidationPolicy"}
    assert built["policies"] == [[kinds[r.kind], r.name, r.description] for r in RULES]
