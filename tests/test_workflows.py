"""The GitHub workflows validate against GitHub's workflow schema (check-jsonschema's vendored
copy, offline) and keep the properties the PR checks rely on."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.harness import ROOT_DIR

WORKFLOWS = sorted((ROOT_DIR / ".github" / "workflows").glob("*.yml"))


def check(paths: list[Path]) -> subprocess.CompletedProcess:
    tool = shutil.which("check-jsonschema", path=str(Path(sys.executable).parent))
    assert tool, "check-jsonschema is not installed (requirements-dev.txt)"
    return subprocess.run([tool, "--builtin-schema", "vendor.github-workflows",
                           *map(str, paths)], capture_output=True, text=True, timeout=120)


def test_workflows_match_githubs_schema():
    assert {p.name for p in WORKFLOWS} == {"pr.yml", "deploy.yml"}
    result = check(WORKFLOWS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_schema_check_catches_a_broken_workflow(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-24.04\n    stepz: []\n")
    assert check([broken]).returncode != 0


def test_pr_previews_every_stack_with_the_policy_pack_through_oidc():
    pr = yaml.safe_load((ROOT_DIR / ".github/workflows/pr.yml").read_text())
    preview = pr["jobs"]["preview"]
    assert preview["strategy"]["matrix"]["stack"] == ["dev", "staging", "prod"]
    assert "${{ matrix.stack }}" in preview["concurrency"]["group"]
    assert preview["permissions"]["id-token"] == "write"
    action = next(s for s in preview["steps"] if s.get("uses", "").startswith("pulumi/actions"))
    assert action["with"]["command"] == "preview"
    for key, value in (("comment-on-pr", True), ("diff", True), ("refresh", True),
                       ("policyPacks", "policy")):
        assert action["with"][key] == value
    text = (ROOT_DIR / ".github/workflows/pr.yml").read_text()
    assert "AWS_SECRET_ACCESS_KEY" not in text and "PULUMI_ACCESS_TOKEN" not in text


def test_deploy_flow():
    deploy = yaml.safe_load((ROOT_DIR / ".github/workflows/deploy.yml").read_text())
    jobs = deploy["jobs"]
    assert any("tools.smoke" in s.get("run", "") for s in jobs["dev"]["steps"])
    assert jobs["promote"]["environment"] == "${{ inputs.target }}"
    assert any("tools.promote" in s.get("run", "") for s in jobs["promote"]["steps"])
    drift = next(s for s in jobs["drift"]["steps"] if s.get("uses", "").startswith("pulumi/"
                                                                                   "actions"))
    assert drift["with"]["expect-no-changes"] is True


def test_every_policy_run_installs_the_packs_environment_first():
    for path in WORKFLOWS:
        workflow = yaml.safe_load(path.read_text())
        for job_name, job in workflow["jobs"].items():
            steps = job["steps"]
            for index, step in enumerate(steps):
                if step.get("with", {}).get("policyPacks") != "policy":
                    continue
                earlier = " ".join(s.get("run", "") for s in steps[:index])
                assert "policy/venv/bin/pip install -r policy/requirements.txt" in earlier, \
                    f"{path.name}:{job_name} runs the policy pack before installing it"


def _stack_key(job: dict) -> str | None:
    """The expression (or quoted literal) naming the stack a job touches, from its pulumi step."""
    for step in job["steps"]:
        name = step.get("with", {}).get("stack-name", "")
        if name:
            tail = name.rsplit("/", 1)[-1]
            found = re.fullmatch(r"\$\{\{ (.+) \}\}", tail)
            return found.group(1) if found else f"'{tail}'"
    return None


def test_jobs_that_reach_a_stack_run_on_runners_chosen_per_stack():
    """GitHub-hosted runners can't be pinned to staging's and prod's endpoint allow-lists: every
    job that reaches a stack's cluster picks its runner labels from MLSERVE_RUNNERS by stack."""
    reaching = 0
    for path in WORKFLOWS:
        for job_name, job in yaml.safe_load(path.read_text())["jobs"].items():
            key = _stack_key(job)
            if key is None:
                continue
            reaching += 1
            assert job["runs-on"] == (
                f"${{{{ fromJSON(vars.MLSERVE_RUNNERS || '{{}}')[{key}] || 'ubuntu-24.04' }}}}"
            ), f"{path.name}:{job_name}"
    assert reaching == 4  # PR previews; deploys to dev; promotions; the drift check


def test_promotion_takes_its_inputs_as_variables_never_as_code():
    deploy = yaml.safe_load((ROOT_DIR / ".github/workflows/deploy.yml").read_text())
    (step,) = [s for s in deploy["jobs"]["promote"]["steps"] if "tools.promote" in s.get("run", "")]
    assert "${{" not in step["run"]
    assert step["env"] == {"TARGET": "${{ inputs.target }}", "MODEL": "${{ inputs.model }}"}
    assert '${MODEL:+--model "$MODEL"}' in step["run"]
