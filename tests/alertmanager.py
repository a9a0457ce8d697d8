"""Alertmanager's routing, for tests: the configuration the chart renders from the stack's values,
and which receivers an alert with given labels reaches.

Two evaluators that must agree: amtool (`amtool config routes test`, Alertmanager's own CLI, from
Debian's prometheus-alertmanager package that `make test` unpacks under build/), and a port of
Alertmanager's routing (dispatch/route.go `Route.Match` and labels.Matcher at v0.34.0, the version
kube-prometheus-stack 88.5.3 runs) used where amtool can't be had. The tests cross-check the two.
"""

from __future__ import annotations

import copy
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.harness import ROOT_DIR

CHART_DEFAULTS = ROOT_DIR / "tests" / "data" / "kube-prometheus-stack-88.5.3-alertmanager-config.yaml"
AMTOOL = ROOT_DIR / "build" / "amtool" / "usr" / "bin" / "amtool"


def helm_merge(base: Any, override: Any) -> Any:
    """Helm's merge of values into a chart's defaults: maps merge key by key, anything else
    (lists included) replaces."""
    if isinstance(base, Mapping) and isinstance(override, Mapping):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = helm_merge(base.get(key), value) if key in base else value
        return merged
    return copy.deepcopy(override)


def rendered_config(values: Mapping[str, Any]) -> dict[str, Any]:
    """The Alertmanager configuration the chart renders from kube-prometheus-stack values."""
    defaults = yaml.safe_load(CHART_DEFAULTS.read_text())
    return helm_merge(defaults, values["alertmanager"].get("config", {}))


# ---- the port of Alertmanager's routing -----------------------------------------------------------

_MATCHER = re.compile(r'^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$')


@dataclass(frozen=True)
class Matcher:
    name: str
    op: str
    value: str

    @classmethod
    def parse(cls, text: str) -> Matcher:
        match = _MATCHER.match(text)
        if match is None:
            raise ValueError(f"bad matcher {text!r}")
        name, op, value = match.groups()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = bytes(value[1:-1], "utf-8").decode("unicode_escape")
        return cls(name, op, value)

    def matches(self, labels: Mapping[str, str]) -> bool:
        # A missing label matches as the empty string; regexes are anchored (labels/matcher.go).
        value = labels.get(self.name, "")
        if self.op == "=":
            return value == self.value
        if self.op == "!=":
            return value != self.value
        found = re.fullmatch(f"(?:{self.value})", value) is not None
        return found if self.op == "=~" else not found


@dataclass
class Route:
    receiver: str
    matchers: list[Matcher]
    routes: list[Route] = field(default_factory=list)
    continue_: bool = False

    @classmethod
    def build(cls, config: Mapping[str, Any], parent: Route | None = None) -> Route:
        matchers = [Matcher.parse(m) for m in config.get("matchers") or []]
        matchers += [Matcher(k, "=", str(v)) for k, v in (config.get("match") or {}).items()]
        matchers += [Matcher(k, "=~", str(v)) for k, v in (config.get("match_re") or {}).items()]
        route = cls(config.get("receiver") or (parent.receiver if parent else ""), matchers,
                    continue_=bool(config.get("continue")))
        route.routes = [cls.build(child, route) for child in config.get("routes") or []]
        return route

    def match(self, labels: Mapping[str, str]) -> list[Route]:
        """Depth-first, left to right; the first matching child wins unless it continues; a node
        none of whose children match is the match itself."""
        if not all(m.matches(labels) for m in self.matchers):
            return []
        found: list[Route] = []
        for child in self.routes:
            matches = child.match(labels)
            found += matches
            if matches and not child.continue_:
                break
        return found or [self]


def receivers(config: Mapping[str, Any], labels: Mapping[str, str]) -> list[str]:
    return [route.receiver for route in Route.build(config["route"]).match(labels)]


# ---- amtool -----------------------------------------------------------------------------------

def routing_only(config: Mapping[str, Any]) -> dict[str, Any]:
    """The route tree and the receivers' names: all `routes test` evaluates. Integrations are left
    out because Debian's amtool (0.25) predates some of the pinned Alertmanager's fields."""
    return {"route": config["route"], "receivers": [{"name": r["name"]}
                                                     for r in config["receivers"]]}


def amtool_receivers(config: Mapping[str, Any], labels: Mapping[str, str],
                     workdir: Path) -> list[str]:
    path = workdir / "alertmanager.yaml"
    path.write_text(yaml.safe_dump(routing_only(config)))
    result = subprocess.run(
        [str(AMTOOL), "config", "routes", "test", f"--config.file={path}",
         *(f"{k}={v}" for k, v in labels.items())],
        capture_output=True, text=True, timeout=60, check=True)
    return result.stdout.strip().split(",")
