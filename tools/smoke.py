"""Post-deploy smoke test: waits for each model to answer, then checks liveness, readiness,
metadata and a real inference per model.

    .venv/bin/python -m tools.smoke --stack dev           # endpoints from the stack's outputs
    .venv/bin/python -m tools.smoke --url http://NLB --host cifar10-models.example.com
    .venv/bin/python -m tools.smoke --url http://127.0.0.1:8000   # `make serve`, no CLI needed
    # Seldon: a model's URL as the stack outputs it, or its gateway with the path prefix
    .venv/bin/python -m tools.smoke --url http://NLB/seldon/models/cifar10/v2/models/cifar10/infer
    .venv/bin/python -m tools.smoke --url http://NLB --path-prefix '/seldon/models/{model}'

First it polls each model's ready endpoint, with backoff, until it answers 200 or `--wait`
seconds have passed (a model scaled to zero wakes on these requests), and prints the time to the
first 200. Exit code 0 when every check passes, 1 otherwise; one line per check.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from modelrepo.triton import READY_PATH

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Endpoint:
    model: str
    base: str
    """Everything before /v2/... (KServe: the NLB; Seldon: the NLB plus its path prefix)."""
    host: str | None
    version: str | None = None
    """The model version the stack says it serves (its `models` output), printed with the
    results, so a log says which version passed before it is promoted."""


MODEL_PATH = "/v2/models/"


def endpoints_from_url(url: str, host: str | None, models: list[str],
                       path_prefix: str = "") -> list[Endpoint]:
    """Endpoints behind one URL: a model's own inference URL (what the stack outputs as
    `models.<name>.url`) names its model and its base; otherwise each of `models` under the URL,
    after `path_prefix` (`{model}` stands for the model's name, e.g. Seldon's
    `/seldon/<namespace>/{model}`)."""
    url = url.rstrip("/")
    if MODEL_PATH in url:
        base, rest = url.split(MODEL_PATH, 1)
        return [Endpoint(rest.split("/")[0], base, host)]
    return [Endpoint(m, url + path_prefix.rstrip("/").format(model=m), host) for m in models]


def endpoints_from_stack(stack: str) -> list[Endpoint]:
    if shutil.which("pulumi") is None:
        raise SystemExit("smoke: the pulumi CLI is needed to read the stack's outputs; "
                         "pass --url and --host instead")
    result = subprocess.run(["pulumi", "stack", "output", "models", "--json", "--stack", stack],
                            capture_output=True, text=True, cwd=ROOT)
    if result.returncode != 0:
        raise SystemExit(f"smoke: pulumi stack output models: {result.stderr.strip()}")
    return [Endpoint(model=name, base=value["url"].split(MODEL_PATH)[0], host=value["host"],
                     version=value.get("version"))
            for name, value in sorted(json.loads(result.stdout).items())]


def _call(endpoint: Endpoint, path: str, body: dict | None = None,
          timeout: float = 30) -> tuple[int, dict | None]:
    headers = {"Content-Type": "application/json"}
    if endpoint.host:
        headers["Host"] = endpoint.host
    request = urllib.request.Request(endpoint.base + path, headers=headers,
                                     data=None if body is None else json.dumps(body).encode(),
                                     method="GET" if body is None else "POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            raw = answer.read()
            return answer.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        return exc.code, None


@dataclass
class Readiness:
    ready: bool
    seconds: float
    """Time to the first 200, or waited in vain."""
    attempts: int
    last: str
    """What the last attempt got (an HTTP status or the connection error)."""


def wait_until_ready(endpoint: Endpoint, timeout: float, *, first_delay: float = 0.5,
                     max_delay: float = 10.0, clock: Callable[[], float] = time.monotonic,
                     sleep: Callable[[float], None] = time.sleep) -> Readiness:
    """Poll the model's ready endpoint until it answers 200, waiting `first_delay` after the
    first failure and twice as long after each next one (at most `max_delay`), for at most
    `timeout` seconds. A rollout in progress, a model waking from zero or a gateway still
    learning its routes answer 503 or refuse the connection for a while; that is what this
    waits out."""
    path = f"/v2/models/{endpoint.model}/ready"
    start = clock()
    delay, attempts, last = first_delay, 0, "no attempt"
    while True:
        attempts += 1
        remaining = timeout - (clock() - start)
        try:
            status, _ = _call(endpoint, path, timeout=max(1.0, min(30.0, remaining)))
            last = f"HTTP {status}"
            if status == 200:
                return Readiness(True, clock() - start, attempts, last)
        except OSError as exc:
            last = str(getattr(exc, "reason", exc))
        remaining = timeout - (clock() - start)
        if remaining <= 0:
            return Readiness(False, clock() - start, attempts, last)
        sleep(min(delay, remaining))
        delay = min(delay * 2, max_delay)


def check(endpoint: Endpoint) -> list[tuple[str, bool, str]]:
    results = []
    for path in ("/v2/health/live", READY_PATH, f"/v2/models/{endpoint.model}/ready"):
        try:
            status, _ = _call(endpoint, path)
        except OSError as exc:
            results.append((path, False, str(exc)))
            continue
        results.append((path, status == 200, f"HTTP {status}"))
    try:
        status, meta = _call(endpoint, f"/v2/models/{endpoint.model}")
    except OSError as exc:
        return [*results, ("metadata", False, str(exc))]
    inputs = (meta or {}).get("inputs") or []
    results.append(("metadata", status == 200 and bool(inputs),
                    f"inputs {[i.get('name') for i in inputs]}"))
    if not inputs:
        return results
    body: dict[str, list[dict[str, object]]] = {"inputs": []}
    rng = np.random.default_rng(0)
    for tensor in inputs:
        shape = [1 if d == -1 and i == 0 else (32 if d == -1 else d)
                 for i, d in enumerate(tensor["shape"])]
        data = rng.integers(0, 256, int(np.prod(shape))).tolist()
        body["inputs"].append({"name": tensor["name"], "shape": shape,
                               "datatype": tensor["datatype"], "data": data})
    try:
        status, answer = _call(endpoint, f"/v2/models/{endpoint.model}/infer", body)
    except OSError as exc:
        return [*results, ("inference", False, str(exc))]
    outputs = (answer or {}).get("outputs") or []
    if status != 200 or not outputs:
        return [*results, ("inference", False, f"HTTP {status}")]
    probs = np.asarray(outputs[0]["data"], dtype=np.float64)
    valid = bool(np.all(probs >= 0) and np.all(probs <= 1) and abs(probs.sum() - 1) < 1e-3)
    results.append(("inference", valid, f"{outputs[0]['name']} shape {outputs[0]['shape']}, "
                    f"sum {probs.sum():.4f}, top class {int(probs.argmax())}"))
    return results


def run(endpoints: list[Endpoint], wait: float = 0) -> bool:
    ok = True
    for endpoint in endpoints:
        print(f"{endpoint.model}" + (f" {endpoint.version}" if endpoint.version else "")
              + f" @ {endpoint.base}" + (f" (Host: {endpoint.host})" if endpoint.host else ""),
              flush=True)
        if wait > 0:
            readiness = wait_until_ready(endpoint, wait)
            if not readiness.ready:
                ok = False
                print(f"  FAIL  ready: no 200 within {wait:.0f} s ({readiness.attempts} "
                      f"attempts, last: {readiness.last})")
                continue
            print(f"  PASS  ready: first 200 after {readiness.seconds:.1f} s "
                  f"({readiness.attempts} attempt(s))", flush=True)
        for name, passed, detail in check(endpoint):
            ok &= passed
            print(f"  {'PASS' if passed else 'FAIL'}  {name}: {detail}")
    print("smoke: all checks passed" if ok else "smoke: FAILED")
    return ok


def _repository_models() -> list[str]:
    from modelrepo.repository import load

    return sorted(load(ROOT / "model_repo").models)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.smoke", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack")
    parser.add_argument("--url", help="base URL of the ingress, or one model's inference URL "
                        "(instead of stack outputs)")
    parser.add_argument("--host", help="Host header to send with --url")
    parser.add_argument("--path-prefix", default="", metavar="PREFIX",
                        help="path before /v2 under --url; {model} is the model's name "
                             "(Seldon: /seldon/<namespace>/{model})")
    parser.add_argument("--model", action="append",
                        help="model(s) to check with --url; default: every model in model_repo")
    parser.add_argument("--wait", type=float, default=600, metavar="SECONDS",
                        help="how long to wait for each model to answer ready, with backoff "
                             "(default 600: a GPU node, the image pull and the model load); 0: "
                             "check at once")
    args = parser.parse_args(argv)
    if args.url:
        models = args.model or ([] if MODEL_PATH in args.url else _repository_models())
        endpoints = endpoints_from_url(args.url, args.host, models, args.path_prefix)
    elif args.stack:
        endpoints = endpoints_from_stack(args.stack)
    else:
        parser.error("give --stack, or --url (and --host)")
    return 0 if run(endpoints, args.wait) else 1


if __name__ == "__main__":
    sys.exit(main())
