"""tests/graph_snapshot.py: the evidence a refactoring changed no URN, input or dependency."""

from __future__ import annotations

import json

from tests import graph_snapshot
from tests.harness import evaluate


def test_every_case_takes_a_path_through_the_program_not_a_config_error():
    refused = {"dev-refused"}
    for case, stack, config, secret_keys in graph_snapshot.CASES:
        graph = evaluate(stack, config=config() if config else None, secret_keys=secret_keys)
        assert (graph.error is not None) is (case in refused), (case, graph.error)


def test_diff_finds_a_changed_input_and_passes_an_identical_graph(tmp_path, capsys):
    before, same, changed = (tmp_path / name for name in ("before", "same", "changed"))
    snapshot = graph_snapshot.snapshot(evaluate("local"))
    for folder in (before, same, changed):
        folder.mkdir()
        (folder / "local.json").write_text(json.dumps(snapshot, indent=1, sort_keys=True))
    assert graph_snapshot.diff(before, same) == 0
    snapshot["resources"][0]["inputs"]["changed"] = True
    (changed / "local.json").write_text(json.dumps(snapshot, indent=1, sort_keys=True))
    assert graph_snapshot.diff(before, changed) == 1
    assert '"changed": true' in capsys.readouterr().out
