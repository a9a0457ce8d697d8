"""The original tutorial's locust client against `make serve`, with only its URL changed.

The tutorial's client (testing/test.py of tintn/ml-model-deployment-tutorials) posts, with
`requests`' `json=`, one random image per request as a nested [1,3,32,32] list of ints, datatype
UINT8, to `/seldon/default/cifar10/v2/models/cifar10-pytorch/infer`, and asserts HTTP 200; it
waits 10-100 ms between requests. The locustfile below does the same: only the path differs,
`/v2/models/cifar10/infer` on `make serve`'s http://127.0.0.1:8000 (here a free port).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.harness import ROOT_DIR
from tests.tools.models.serve_cli import serve_cli

SERVE_PATH = "/v2/models/cifar10/infer"
TUTORIAL_PATH = "/seldon/default/cifar10/v2/models/cifar10-pytorch/infer"

LOCUSTFILE = '''
import numpy as np
from locust import HttpUser, between, task

PATH = {path!r}


class TutorialUser(HttpUser):
    wait_time = between(0.01, 0.1)
    image = np.random.randint(0, 256, (1, 3, 32, 32)).tolist()

    @task
    def infer(self):
        payload = {{"inputs": [{{"name": "image__0", "datatype": "UINT8", "shape": [1, 3, 32, 32],
                                "data": self.image}}]}}
        response = self.client.post(PATH, json=payload)
        assert response.status_code == 200
'''


@pytest.fixture(scope="module")
def make_serve():
    with serve_cli() as cli:
        assert cli.process.poll() is None, cli.banner
        yield cli.url


def locust(tmp_path, host: str, path: str, seconds: int) -> subprocess.CompletedProcess:
    locustfile = tmp_path / f"tutorial_{abs(hash(path))}.py"
    locustfile.write_text(LOCUSTFILE.format(path=path))
    return subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(locustfile), "--headless", "-u", "4",
         "-r", "4", "-t", f"{seconds}s", "-H", host, "--only-summary", "--stop-timeout", "5",
         "--exit-code-on-error", "1"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120)


def test_the_tutorial_locust_client_runs_against_make_serve(make_serve, tmp_path):
    result = locust(tmp_path, make_serve, SERVE_PATH, 4)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    row = next(line for line in output.splitlines() if SERVE_PATH in line and "POST" in line)
    requests_, failures = (int(v.split("(")[0]) for v in row.split()[2:4])
    assert requests_ > 0 and failures == 0, row


def test_the_tutorials_own_path_fails_there(make_serve, tmp_path):
    """The check above can fail: the Seldon path (and model name) answer 400 on `make serve`, and
    the tutorial's `assert status == 200` fails the run."""
    result = locust(tmp_path, make_serve, TUTORIAL_PATH, 2)
    assert result.returncode != 0


def test_the_tutorials_single_request_with_requests(make_serve):
    import numpy as np
    import requests

    image = np.random.randint(0, 256, (1, 3, 32, 32)).tolist()
    payload = {"inputs": [{"name": "image__0", "datatype": "UINT8", "shape": [1, 3, 32, 32],
                           "data": image}]}
    response = requests.post(make_serve + SERVE_PATH, json=payload, timeout=30)
    assert response.status_code == 200
    (output,) = response.json()["outputs"]
    assert output["name"] == "probs__0" and output["shape"] == [1, 10]


def test_the_docs_name_the_url_and_model_name():
    readme = (ROOT_DIR / "docs" / "architecture.md").read_text()
    assert f"http://127.0.0.1:8000{SERVE_PATH}" in readme
    assert "cifar10-pytorch" in readme  # the tutorial's model name, next to ours
