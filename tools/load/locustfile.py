"""Load test for a model's V2 endpoint, shaped like the original tutorial's client: a JSON POST
of one 3x32x32 UINT8 image as `image__0`.

    .venv/bin/locust -f tools/load/locustfile.py --headless -u 100 -r 10 -t 180s -H http://<ingress>

Environment: MODEL (default cifar10), HOST_HEADER (the stack output's Host, if any),
PATH_PREFIX (Seldon's /seldon/<namespace>/<model>, if any).
"""

import json
import os
import random

from locust import HttpUser, constant, task

MODEL = os.environ.get("MODEL", "cifar10")
HOST_HEADER = os.environ.get("HOST_HEADER", "")
PATH_PREFIX = os.environ.get("PATH_PREFIX", "").rstrip("/")


class ModelUser(HttpUser):
    wait_time = constant(0)

    def on_start(self) -> None:
        image = [random.randrange(256) for _ in range(3 * 32 * 32)]
        self.body = json.dumps({"inputs": [{"name": "image__0", "shape": [1, 3, 32, 32],
                                            "datatype": "UINT8", "data": image}]})
        self.headers = {"Content-Type": "application/json"}
        if HOST_HEADER:
            self.headers["Host"] = HOST_HEADER

    @task
    def infer(self) -> None:
        with self.client.post(f"{PATH_PREFIX}/v2/models/{MODEL}/infer", data=self.body,
                              headers=self.headers, name=f"/v2/models/{MODEL}/infer",
                              catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}")
                return
            outputs = response.json().get("outputs") or []
            if not outputs or len(outputs[0].get("data", [])) != 10:
                response.failure("unexpected output")
