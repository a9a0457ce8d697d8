"""An Istio VirtualService's HTTP routes, applied the way Istio 1.30 tells Envoy to: the first
route with a matching `match` entry wins (uri exact / prefix / regex, RE2 full match; header
exact matches), and `rewrite.uri` replaces the matched prefix, or the whole path of an exact
match (istio.io HTTPRewrite.uri; pilot/pkg/networking/core/route/route.go sets Envoy's
prefix_rewrite, which swaps "the matched prefix (or path)"). No route: Envoy answers 404.

A destination's `headers.request.set.host` is the Host the request leaves with (Istio makes it
that cluster's host rewrite). `interceptor_target` is where the KEDA HTTP add-on's interceptor
forwards a request it holds, by that Host.

`RoutingProxy` serves those routes on loopback in front of real servers, so a client can be
tested against exactly the paths the stack renders, through the interceptor where the route sends
it there.
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
    authority: str | None = None
    """The Host the destination sets, or None: the client's own."""


def interceptor_target(routes: Sequence[Mapping[str, Any]], host: str) -> tuple[str, int] | None:
    """Where the KEDA HTTP add-on's interceptor (v0.15.0) forwards a request with this Host once
    the target has a ready endpoint: the InterceptorRoute whose `rules[].hosts` name the Host
    without its port (pkg/routing/key.go:42-68; exact hosts only, the stack writes no others), to
    `<service>.<route's namespace>:<port>` (interceptor/middleware/routing.go:118-133), path and
    Host unchanged (interceptor/handler/upstream.go:112-116). None: it answers 404 (routing.go:
    40-47)."""
    name = re.sub(r":\d+$", "", host)
    for route in routes:
        spec = route["spec"]
        if any(name in rule.get("hosts", []) for rule in spec.get("rules", [])):
            target = spec["target"]
            return f"{target['service']}.{route['metadata']['namespace']}", target["port"]
    return None


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
            to = entry["route"][0]
            destination = to["destination"]
            authority = ((to.get("headers") or {}).get("request") or {}).get("set", {}).get("host")
            return Routed(target, destination["host"], destination["port"]["number"], authority)
    return None


class RoutingProxy:
    """HTTP on loopback: each request goes where `routes` send it, to `upstreams[(host, port)]`
    (a base URL); 404 when nothing matches. A request the routes send to `interceptor` (its
    (host, port)) goes on where `interceptor_routes` (InterceptorRoute manifests) forward it, as
    once the target is ready. A context manager that always stops the server."""

    def __init__(self, routes: Sequence[Mapping[str, Any]],
                 upstreams: Mapping[tuple[str, int], str],
                 interceptor: tuple[str, int] | None = None,
                 interceptor_routes: Sequence[Mapping[str, Any]] = ()):
        self.routes, self.upstreams = routes, upstreams
        self.interceptor, self.interceptor_routes = interceptor, interceptor_routes
        self.seen: list[tuple[str, str | None]] = []
        self.hops: list[tuple[tuple[str, int], ...]] = []
        """Per routed request, the (host, port) it went to, then where the interceptor sent it."""
        proxy = self

        class Handler(http_server_handler()):
            def _forward(self) -> None:
                path, _, query = self.path.partition("?")
                target = route(proxy.routes, path, dict(self.headers))
                proxy.seen.append((self.path, target.path if target else None))
                if target is None:
                    self._answer(404, b"no route", {})
                    return
                hops = [(target.host, target.port)]
                if hops[0] == proxy.interceptor:
                    onward = interceptor_target(proxy.interceptor_routes,
                                                target.authority or self.headers["Host"])
                    if onward is None:
                        self._answer(404, b"no interceptor route", {})
                        return
                    hops.append(onward)
                proxy.hops.append(tuple(hops))
                base = proxy.upstreams[hops[-1]]
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
