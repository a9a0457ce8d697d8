"""An Istio VirtualService's HTTP routes, applied the way Istio 1.30 tells Envoy to: the first
route with a matching `match` entry wins (uri exact / prefix / regex, RE2 full match; header
exact matches), and `rewrite.uri` replaces the matched prefix, or the whole path of an exact
match (istio.io HTTPRewrite.uri; pilot/pkg/networking/core/route/route.go sets Envoy's
prefix_rewrite, which swaps "the matched prefix (or path)"). No route: Envoy answers 404.

`RoutingProxy` serves those routes on loopback in front of real servers, so a client can be
tested against exactly the paths the stack renders.
"""

from __future__ import annotations

import http.server
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Routed:
    path: str
    host: str
    port: int


def route(routes: Sequence[Mapping[str, Any]], path: str,
          headers: Mapping[str, str] | None = None) -> Routed | None:
    """Where a request for `path` goes by a VirtualService's `spec.http`, or None."""
    headers = {k.lower(): v for k, v in (headers or {}).items()}
    for entry in routes:
        for match in entry.get("match") or [{}]:
            if any(headers.get(k.lower()) != v["exact"]
                   for k, v in (match.get("headers") or {}).items()):
                continue
            uri = match.get("uri") or {"prefix": "/"}
            rewrite = (entry.get("rewrite") or {}).get("uri")
            if "prefix" in uri and path.startswith(uri["prefix"]):
                target = rewrite + path[len(uri["prefix"]):] if rewrite else path
            elif "exact" in uri and path == uri["exact"]:
                target = rewrite or path
            elif "regex" in uri and re.fullmatch(uri["regex"], path):
                target = path
            else:
                continue
            destination = entry["route"][0]["destination"]
            return Routed(target, destination["host"], destination["port"]["number"])
    return None


class RoutingProxy:
    """HTTP on loopback: each request goes where `routes` send it, to `upstreams[(host, port)]`
    (a base URL); 404 when nothing matches. A context manager that always stops the server."""

    def __init__(self, routes: Sequence[Mapping[str, Any]],
                 upstreams: Mapping[tuple[str, int], str]):
        self.routes, self.upstreams = routes, upstreams
        self.seen: list[tuple[str, str | None]] = []
        proxy = self

        class Handler(http_server_handler()):
            def _forward(self) -> None:
                path, _, query = self.path.partition("?")
                target = route(proxy.routes, path, dict(self.headers))
                proxy.seen.append((self.path, target.path if target else None))
                if target is None:
                    self._answer(404, b"no route", {})
                    return
                base = proxy.upstreams[(target.host, target.port)]
                length = int(self.headers.get("Content-Length") or 0)
                request = urllib.request.Request(
                    base + target.path + (f"?{query}" if query else ""),
                    data=self.rfile.read(length) if length else None, method=self.command,
                    headers={k: v for k, v in self.headers.items()
                             if k.lower() not in ("host", "content-length", "connection")})
                try:
                    with urllib.request.urlopen(request, timeout=60) as answer:
                        self._answer(answer.status, answer.read(), answer.headers)
                except urllib.error.HTTPError as exc:
                    self._answer(exc.code, exc.read(), exc.headers)

            do_GET = do_POST = _forward  # noqa: N815

            def _answer(self, status: int, body: bytes, headers: Mapping[str, str]) -> None:
                self.send_response(status)
                content_type = headers.get("Content-Type")
                if content_type:
                    self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def rebase(self, url: str) -> str:
        """`url` with its scheme and authority replaced by the proxy's (a client's URL for the
        load balancer, pointed here)."""
        parts = urlsplit(url)
        return self.url + parts.path + (f"?{parts.query}" if parts.query else "")

    def __enter__(self) -> RoutingProxy:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def http_server_handler() -> type[http.server.BaseHTTPRequestHandler]:
    class Quiet(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

    return Quiet
