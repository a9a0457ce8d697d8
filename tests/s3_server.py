"""A real S3 API server (moto) on loopback for the tests, and AWS faults injected around it.

The server always answers for real; faults are added on the way there, the way they happen:
- `Faults` hooks a boto3 client (botocore's `before-send` event) and answers chosen requests with
  an S3-shaped error (503 SlowDown, 403 AccessDenied, 404 NoSuchBucket), every attempt, so
  botocore's own retries run and give up as they would against S3;
- `DroppingProxy` sits between client and server and closes TCP connections while it drops;
- `s3_semantics_without_list_bucket` gives a client S3's answer for a missing key to a caller
  without s3:ListBucket (403 AccessDenied, GetObject/HeadObject API reference, "Permissions"),
  which moto doesn't model (it answers 404 NoSuchKey to anyone).
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse
from moto.server import ThreadedMotoServer

from tools.models.serve import free_port

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_DEFAULT_REGION": "us-east-1"}
REGION = "us-east-1"
ERRORS = {
    "SlowDown": (503, "Please reduce your request rate."),
    "AccessDenied": (403, "Access Denied"),
    "NoSuchBucket": (404, "The specified bucket does not exist"),
}


class MotoServer:
    """moto's S3 (and IAM/STS) API on 127.0.0.1; `reset` empties it between tests."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)

    def __enter__(self) -> MotoServer:
        self._server.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.iam_checks(False)
        self._server.stop()

    def _post(self, path: str, body: bytes = b"") -> None:
        urllib.request.urlopen(urllib.request.Request(
            f"{self.url}{path}", data=body, method="POST",
            headers={"Content-Type": "text/plain"}), timeout=10)

    def reset(self) -> None:
        self.iam_checks(False)
        self._post("/moto-api/reset")

    def iam_checks(self, enabled: bool) -> None:
        """With checks on, every request is authorised against the caller's IAM policies."""
        self._post("/moto-api/reset-auth", b"0" if enabled else b"inf")

    def client(self, service: str = "s3", endpoint: str | None = None, **credentials: str) -> Any:
        credentials = credentials or {"aws_access_key_id": "testing",
                                      "aws_secret_access_key": "testing"}
        return boto3.client(service, endpoint_url=endpoint or self.url, region_name=REGION,
                            **credentials)

    def account(self, account_id: str, role: str, policy: dict[str, Any]) -> dict[str, str]:
        """Credentials of `role` in account `account_id`, holding `policy` as its only IAM
        policy (moto ties credentials from STS AssumeRole to the role's account)."""
        sts = self.client("sts")
        arn = f"arn:aws:iam::{account_id}:role/{role}"
        found = sts.assume_role(RoleArn=arn, RoleSessionName="tests")["Credentials"]
        credentials = {"aws_access_key_id": found["AccessKeyId"],
                       "aws_secret_access_key": found["SecretAccessKey"],
                       "aws_session_token": found["SessionToken"]}
        iam = self.client("iam", **credentials)
        trust = {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}]}
        iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(trust))
        iam.put_role_policy(RoleName=role, PolicyName="only", PolicyDocument=json.dumps(policy))
        return credentials


def allow(*statements: tuple[str | list[str], str | list[str]]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": action, "Resource": resource}
        for action, resource in statements]}


class _Body:
    def __init__(self, body: bytes):
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


def s3_error(url: str, code: str) -> AWSResponse:
    status, message = ERRORS[code]
    body = (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code>"
            f"<Message>{message}</Message><RequestId>FAULT</RequestId></Error>").encode()
    return AWSResponse(url, status, {"Content-Type": "application/xml",
                                     "Content-Length": str(len(body))}, _Body(body))


Matcher = Callable[[str, str], bool]
"""(operation, url) -> whether the fault applies to this request."""


def matching(operation: str, key_part: str = "") -> Matcher:
    return lambda op, url: op == operation and key_part in url


class Faults:
    """S3 errors for the requests a client sends that match; counts the attempts it failed."""

    def __init__(self, client: Any, when: Matcher, code: str, times: int | None = None):
        self.when, self.code, self.times, self.failed = when, code, times, 0
        client.meta.events.register("before-send.s3", self._before_send)

    def _before_send(self, request: Any, **kwargs: Any) -> AWSResponse | None:
        operation = kwargs["event_name"].rsplit(".", 1)[-1]
        if not self.when(operation, request.url):
            return None
        if self.times is not None and self.failed >= self.times:
            return None
        self.failed += 1
        return s3_error(request.url, self.code)


class DroppingProxy:
    """A TCP proxy in front of the server that relays bytes, except for the requests a client
    marks: `drop_when` closes the connection such a request travels on before forwarding it (its
    retries too), as a network that drops connections does; `cut_responses_when` forwards only
    the first bytes of its response, then closes (a download dropped midway)."""

    def __init__(self, upstream_port: int):
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._upstream = ("127.0.0.1", upstream_port)
        self.dropping = threading.Event()
        self.cut_after: int | None = None
        self.dropped = 0
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _mark(self, client: Any, when: Matcher, on: Callable[[], None],
              off: Callable[[], None]) -> None:
        def decide(request: Any, **kwargs: Any) -> None:
            operation = kwargs["event_name"].rsplit(".", 1)[-1]
            (on if when(operation, request.url) else off)()
        client.meta.events.register("before-send.s3", decide)

    def drop_when(self, client: Any, when: Matcher) -> None:
        self._mark(client, when, self.dropping.set, self.dropping.clear)

    def cut_responses_when(self, client: Any, when: Matcher, after_bytes: int) -> None:
        self._mark(client, when, lambda: setattr(self, "cut_after", after_bytes),
                   lambda: setattr(self, "cut_after", None))

    def _accept(self) -> None:
        while True:
            try:
                downstream, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self._upstream)
            with self._lock:
                self._sockets += [downstream, upstream]
            threading.Thread(target=self._pump, args=(downstream, upstream, True),
                             daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, downstream, False),
                             daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, requests: bool) -> None:
        forwarded = 0
        try:
            while data := source.recv(65536):
                if requests and self.dropping.is_set():
                    self.dropped += 1
                    break
                if not requests and self.cut_after is not None:
                    if forwarded + len(data) > self.cut_after:
                        sink.sendall(data[:max(self.cut_after - forwarded, 0)])
                        self.dropped += 1
                        break
                    forwarded += len(data)
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                sock.close()


def s3_semantics_without_list_bucket(client: Any) -> None:
    """Answer 403 AccessDenied where the server says a key is missing, as S3 does to a caller
    without s3:ListBucket on the bucket."""
    def before_parse(response_dict: dict[str, Any], **_: Any) -> None:
        if response_dict["status_code"] == 404:
            body = response_dict.get("body") or b""
            if b"NoSuchBucket" in body:
                return
            response_dict["status_code"] = 403
            response_dict["body"] = (b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>"
                                     b"AccessDenied</Code><Message>Access Denied</Message>"
                                     b"</Error>") if body else b""
    for operation in ("GetObject", "HeadObject"):
        client.meta.events.register(f"before-parse.s3.{operation}", before_parse)


@contextmanager
def moto_server() -> Iterator[MotoServer]:
    with MotoServer() as server:
        yield server
