"""Runs the locust scenario headless against a stack's model, or any V2 endpoint.

    .venv/bin/python -m tools.load --stack dev [--users 100 --spawn 10 --duration 180s]
    .venv/bin/python -m tools.load --url http://127.0.0.1:8000 [--host H] [--model cifar10]
    .venv/bin/python -m tools.load --url http://NLB/seldon/models/cifar10/v2/models/cifar10/infer

The defaults are the original tutorial's scenario: 100 users, spawned 10 per second, 180 s.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

from tools.smoke import endpoints_from_stack, endpoints_from_url

LOCUSTFILE = Path(__file__).with_name("locustfile.py")


def command(base_url: str, users: int, spawn: int, duration: str) -> list[str]:
    return [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
            "-u", str(users), "-r", str(spawn), "-t", duration, "-H", base_url,
            "--only-summary", "--stop-timeout", "10"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.load", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack")
    parser.add_argument("--url")
    parser.add_argument("--host")
    parser.add_argument("--path-prefix", default="",
                        help="path before /v2 under --url; {model} is the model's name")
    parser.add_argument("--model", default=None)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--spawn", type=int, default=10)
    parser.add_argument("--duration", default="180s")
    args = parser.parse_args(argv)
    env = dict(os.environ)
    if args.url:
        endpoints = endpoints_from_url(args.url, args.host, [args.model or "cifar10"],
                                       args.path_prefix)
    elif args.stack:
        endpoints = endpoints_from_stack(args.stack)
    else:
        parser.error("give --stack, or --url (and --host)")
    chosen = next((e for e in endpoints if e.model == (args.model or e.model)), None)
    if chosen is None:
        parser.error(f"no model {args.model!r} at {args.url or 'stack ' + args.stack}")
    # Locust takes the scheme and authority; the path before /v2 goes in PATH_PREFIX.
    parts = urlsplit(chosen.base.rstrip("/"))
    base, prefix = f"{parts.scheme}://{parts.netloc}", parts.path
    host, model = chosen.host, chosen.model
    env.update(MODEL=model, HOST_HEADER=host or "", PATH_PREFIX=prefix)
    print(f"locust: {args.users} users, {args.spawn}/s, {args.duration} against "
          f"{base}{prefix}/v2/models/{model}/infer", flush=True)
    return subprocess.run(command(base, args.users, args.spawn, args.duration), env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
