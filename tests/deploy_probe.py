"""The program as a plain `pulumi up` would run it, with nothing but what it installs.

    python -m tests.deploy_probe --endpoint http://127.0.0.1:PORT [--pinned VERSION]

Evaluates every shipped stack under the SDK's mocks, then the two stacks whose model versions
live in a bucket the stack doesn't own (an S3-compatible endpoint, an existing S3 bucket), and
prints the dynamic resources they register as JSON: URN, name and inputs, `__provider` (the
pickled provider) included, as the engine receives them. tests/test_requirements.py runs it in a
virtualenv built from requirements.txt alone; it imports only the program, the test harness and
what requirements.txt brings (pulumi, PyYAML through pulumi).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from tests.harness import evaluate, set_path, stack_config

SHIPPED = ("dev", "staging", "prod", "local")
DYNAMIC = "pulumi-python:dynamic:Resource"
EXISTING_BUCKET = {"mode": "existing", "name": "team-models",
                   "readerRoleArn": "arn:aws:iam::111122223333:role/model-reader"}


def existing_cluster_and_bucket() -> dict[str, str]:
    """The dev stack on an existing EKS cluster with an existing S3 bucket."""
    config = stack_config("dev")
    for path, value in (("cluster.mode", "existing"), ("cluster.kubeconfig", "~/.kube/eks-prod"),
                        ("cluster.adminPrincipalArns", []),
                        ("platform.loadBalancerController.enabled", False),
                        ("platform.clusterAutoscaler.enabled", False),
                        ("platform.istio.gatewayServiceType", "LoadBalancer"),
                        ("modelBucket", EXISTING_BUCKET)):
        config = set_path(config, path, value)
    return config


def s3_compatible(endpoint: str) -> dict[str, str]:
    """The local stack with its S3-compatible store at `endpoint`."""
    return set_path(stack_config("local"), "modelBucket.endpoint", endpoint)


def dynamic_resources(stack: str, config: dict[str, str],
                      pinned: str | None = None) -> list[dict[str, Any]]:
    if pinned is not None:
        config = set_path(config, "modelServing.models.cifar10.version", pinned)
    graph = evaluate(stack, config=config)
    if graph.error is not None:
        raise graph.error
    return [{"urn": r.urn, "name": r.name, "inputs": r.inputs} for r in graph.of_type(DYNAMIC)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.deploy_probe")
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--pinned")
    args = parser.parse_args(argv)
    for stack in SHIPPED:
        graph = evaluate(stack)
        if graph.error is not None:
            print(f"{stack}: {graph.error}", file=sys.stderr)
            return 1
    print(json.dumps({
        "s3Compatible": dynamic_resources("local", s3_compatible(args.endpoint)),
        "existing": dynamic_resources("dev", existing_cluster_and_bucket()),
        "pinned": dynamic_resources("local", s3_compatible(args.endpoint), args.pinned)
        if args.pinned else [],
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
