"""tools/models/bench.py: the benchmark machinery, on a short real run."""

from __future__ import annotations

import re

from tests.harness import ROOT_DIR
from tools.models import bench


def test_short_bench_produces_the_table_and_summary_line():
    points = bench.run(ROOT_DIR / "model_repo", ROOT_DIR / "bench/baseline/cifar10/config.pbtxt",
                       concurrencies=(1, 32), seconds=1.5, warmup=0.5)
    assert [(p.config, p.concurrency) for p in points] == [
        ("baseline", 1), ("baseline", 32), ("shipped", 1), ("shipped", 32)]
    assert all(p.requests > 0 and p.errors == 0 for p in points)
    rendered = bench.table(points)
    assert rendered.count("\n") == 5 and "| shipped | 32 |" in rendered
    line = bench.summary(points)
    assert re.fullmatch(r"bench: throughput_ratio=\d+\.\d\d p95_ratio=\d+\.\d\d", line)


def test_baseline_is_the_tutorials_config():
    text = (ROOT_DIR / "bench/baseline/cifar10/config.pbtxt").read_text()
    assert "max_batch_size: 0" in text and "dynamic_batching" not in text
    assert "dims: [-1, 3, -1, -1]" in text
