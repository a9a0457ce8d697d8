"""The README and Pulumi.yaml say what the code does."""

from __future__ import annotations

import re

import yaml
from pydantic.alias_generators import to_camel

from components.config.stack import StackConfig
from tests.harness import ROOT_DIR
from tools.config_reference import reference
from tools.policy_table import table as policy_table
from tools.versions_table import table

README = (ROOT_DIR / "README.md").read_text()


def test_readme_config_reference_is_generated_from_the_code():
    assert reference() in README, "run `make config-reference` and paste it into README.md"


def test_readme_opens_with_the_two_commands():
    top = README[:1200]
    assert "make test" in top and "make up STACK=dev" in top


def test_pulumi_yaml_documents_every_top_level_key():
    text = (ROOT_DIR / "Pulumi.yaml").read_text()
    declared = yaml.safe_load(text)["config"]
    for name in StackConfig.model_fields:
        key = to_camel(name)
        assert key in declared or re.search(rf"^\s*#\s+{key}\s", text, re.M), key


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT_DIR / ".ci" / "run").read_text()


def test_readme_versions_table_is_generated_from_the_code():
    assert table() in README, "run `python -m tools.versions_table` and paste it into README.md"


def test_readme_policy_list_is_generated_from_the_rules():
    assert policy_table() in README, "run `make policy-table` and paste it into README.md"
