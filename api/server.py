"""The ASGI app: /graphql (POST queries, GET the GraphiQL page), /healthz, /readyz,
/metrics. ``create_app(store, settings)`` serves a store (the caller owns it);
``app_for`` serves a runtime built by ``api.bootstrap.bootstrap``.

Every request gets an id (the caller's ``X-Request-ID`` if sane, else a new one),
returned in the response header and written in its JSON log line.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from strawberry.http.ides import get_graphql_ide_html

from api import gnn_service
from api.auth import Authenticator
from api.bootstrap import bootstrap
from api.context import Context, Runtime
from api.logs import request_id_var
from api.schema import schema as default_schema
from api.settings import Settings
from graph import queries
from graph.errors import RiskGraphError
from graph.store import GraphStore

log = logging.getLogger("riskgraph.api")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

MAX_BODY_BYTES = 256 * 1024
READY_TIMEOUT_S = 3.0
METRICS_PUBLISH_S = 1.0
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_JSON = b"application/json"
# The investigator explorer: files built by `make` from explorer/ (see explorer/build.mjs).
EXPLORE_DIR = Path(__file__).parent / "static" / "explore"
_EXPLORE_TYPES = {".html": b"text/html; charset=utf-8", ".js": b"text/javascript; charset=utf-8",
                  ".css": b"text/css; charset=utf-8", ".map": b"application/json",
                  ".txt": b"text/plain; charset=utf-8"}
_EXPLORE_CSP = (b"default-src 'self'; img-src 'self' data:; object-src 'none'; "
                b"base-uri 'none'; frame-ancestors 'none'")


# A \\uD800-\\uDFFF escape in JSON text: the body may hold a lone surrogate.
_LONE_SURROGATE = re.compile(rb"\\[uU][dD][89a-fA-F]")


def _graphql_payload(body: bytes) -> tuple[dict[str, Any], str | None]:
    """A GraphQL request body as its JSON object, or ``({}, why)`` when it is refused
    (answered 400): not JSON, nested too deeply, not text, or fields of the wrong type."""
    try:
        payload = json.loads(body)
    except RecursionError:
        return {}, "the body nests JSON too deeply; send a flat object"
    except ValueError:
        return {}, "the body is not JSON"
    if _LONE_SURROGATE.search(body) and _has_lone_surrogate(payload):
        return {}, ("the body holds a lone UTF-16 surrogate (\\ud800-\\udfff without its "
                    "pair), which is not text; send valid Unicode")
    if not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
        return {}, 'send a JSON object with a "query" string'
    variables = payload.get("variables")
    op_name = payload.get("operationName")
    if variables is not None and not isinstance(variables, dict):
        return {}, '"variables" must be an object'
    if op_name is not None and not isinstance(op_name, str):
        return {}, '"operationName" must be a string'
    return payload, None


def _has_lone_surrogate(value: Any) -> bool:
    """Whether any string in a decoded JSON value (keys too) is not encodable as UTF-8;
    iterative, as a body may nest deeply."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return False


def _error_body(message: str, code: str, **extra: Any) -> dict[str, Any]:
    return {"errors": [{"message": message, "extensions": {"code": code, **extra}}]}


class RiskGraphApp:
    """An ASGI application. Built by ``create_app``."""

    def __init__(self, runtime: Runtime, authenticator: Authenticator,
                 schema: Any = default_schema, owns_store: bool = False) -> None:
        self.runtime = runtime
        self.auth = authenticator
        self.schema = schema
        self.owns_store = owns_store
        self._graphiql: bytes | None = None

    def __repr__(self) -> str:
        return f"RiskGraphApp(store={self.runtime.store!r}, {self.auth!r})"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        started = time.perf_counter()
        rid = self._request_id(scope)
        token = request_id_var.set(rid)
        path = scope["path"].rstrip("/") or "/"
        state: dict[str, Any] = {"operation": "", "role": "", "status": 500}
        try:
            status, headers, body = await self._route(path, scope, receive, state)
        except Exception:  # the last line of defence: no trace to callers
            log.exception("unhandled error serving a request")
            status, headers, body = self._json(500, _error_body(
                f"internal error; quote request id {rid} to the operators", "INTERNAL"))
        state["status"] = status
        headers.append((b"x-request-id", rid.encode()))
        # The body is whole: said so, the server need not send it chunked.
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        elapsed = time.perf_counter() - started
        route = path if path in ("/graphql", "/healthz", "/readyz", "/metrics") else "other"
        m = self.runtime.metrics
        m.requests.inc(route, str(status))
        m.latency.observe(elapsed, route, state["operation"])
        log.info("request", extra={
            "method": scope.get("method"), "path": path, "status": status,
            "ms": round(elapsed * 1000, 2), "operation": state["operation"] or None,
            "role": state["role"] or None,
        })
        request_id_var.reset(token)

    # -- routing -----------------------------------------------------------------
    async def _route(
        self, path: str, scope: Scope, receive: Receive, state: dict[str, Any]
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        method = scope.get("method", "GET")
        if path == "/graphql":
            if method == "POST":
                return await self._graphql(scope, receive, state)
            if method in ("GET", "HEAD"):
                return 200, [(b"content-type", b"text/html; charset=utf-8")], self._ide()
            return self._json(405, _error_body("use POST for GraphQL requests", "BAD_REQUEST"),
                              [(b"allow", b"GET, POST")])
        if method not in ("GET", "HEAD"):
            return self._json(405, _error_body(f"{path} answers GET only", "BAD_REQUEST"))
        if path == "/healthz":
            return self._json(200, {"status": "ok"})
        if path == "/readyz":
            return await self._ready()
        if path == "/metrics":
            body = self.runtime.metrics.render().encode()
            return 200, [(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")], body
        if path == "/":
            return self._json(200, {"service": "riskgraph", "graphql": "/graphql"})
        if path == "/explore" or path.startswith("/explore/"):
            return self._explore(path)
        return self._json(404, _error_body(f"no route {path}", "NOT_FOUND"))

    async def _ready(self) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        store = self.runtime.store
        try:
            await asyncio.wait_for(self.runtime.run(store.ping), READY_TIMEOUT_S)
        except Exception as exc:  # any failure means not ready
            log.warning("store not ready", extra={"store": store.name, "error": str(exc)})
            return self._json(503, {"status": "unavailable", "store": store.name,
                                    "error": type(exc).__name__})
        return self._json(200, {"status": "ready", "store": store.name})

    async def _graphql(
        self, scope: Scope, receive: Receive, state: dict[str, Any]
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        headers = dict(scope.get("headers") or ())
        principal = self.auth.authenticate(
            headers.get(b"authorization", b"").decode("latin-1") or None)
        if principal is None:
            return self._json(
                401,
                _error_body("missing or unknown API key; send Authorization: Bearer <key>",
                            "UNAUTHENTICATED"),
                [(b"www-authenticate", b'Bearer realm="riskgraph"')],
            )
        state["role"] = principal.role
        body = await self._body(receive)
        if body is None:
            return self._json(413, _error_body(
                f"request body over {MAX_BODY_BYTES} bytes", "BAD_REQUEST"))
        payload, problem = _graphql_payload(body)
        if problem is not None:
            return self._json(400, _error_body(problem, "BAD_REQUEST"))
        variables = payload.get("variables")
        op_name = payload.get("operationName")
        ctx = Context(self.runtime, principal, request_id_var.get())
        timeout = self.runtime.settings.api_timeout_s
        try:
            result = await asyncio.wait_for(
                self.schema.execute(payload["query"], variable_values=variables,
                                    context_value=ctx, operation_name=op_name),
                timeout,
            )
        except TimeoutError:
            self.runtime.metrics.errors.inc("TIMEOUT")
            return self._json(200, {"data": None, **_error_body(
                f"the request took longer than {timeout:g} s and was stopped; ask for less",
                "TIMEOUT")})
        except Exception as exc:  # e.g. an operation name that matches nothing
            self.runtime.metrics.errors.inc("BAD_REQUEST")
            return self._json(200, {"data": None, **_error_body(str(exc), "BAD_REQUEST")})
        out: dict[str, Any] = {"data": result.data}
        if result.errors:
            out["errors"] = [e.formatted for e in result.errors]
            for e in out["errors"]:
                self.runtime.metrics.errors.inc(str((e.get("extensions") or {}).get("code")))
        state["operation"] = ctx.operation
        return self._json(200, out)

    # -- helpers -----------------------------------------------------------------
    async def _body(self, receive: Receive) -> bytes | None:
        chunks, size = [], 0
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                break
            part = msg.get("body", b"")
            size += len(part)
            if size > MAX_BODY_BYTES:
                return None
            chunks.append(part)
            if not msg.get("more_body"):
                break
        return b"".join(chunks)

    @staticmethod
    def _json(status: int, obj: Any, extra: list[tuple[bytes, bytes]] | None = None
              ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        body = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return status, [(b"content-type", _JSON), *(extra or [])], body

    @classmethod
    def _explore(cls, path: str) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """A built file of the explorer; its page at /explore itself."""
        name = path[len("/explore"):].lstrip("/") or "index.html"
        root = EXPLORE_DIR.resolve()
        file = (root / name).resolve()
        if root not in file.parents or file.suffix not in _EXPLORE_TYPES or not file.is_file():
            if name == "index.html":
                return cls._json(503, _error_body(
                    "the explorer is not built; run `make` (it needs npm)", "UNAVAILABLE"))
            return cls._json(404, _error_body(f"no file {path}", "NOT_FOUND"))
        return 200, [(b"content-type", _EXPLORE_TYPES[file.suffix]),
                     (b"cache-control", b"no-cache"),
                     (b"content-security-policy", _EXPLORE_CSP),
                     (b"x-content-type-options", b"nosniff")], file.read_bytes()

    def _ide(self) -> bytes:
        if self._graphiql is None:
            self._graphiql = get_graphql_ide_html("graphiql").encode("utf-8")
        return self._graphiql

    @staticmethod
    def _request_id(scope: Scope) -> str:
        for k, v in scope.get("headers") or ():
            if k == b"x-request-id":
                given: str = v.decode("latin-1")
                if _REQUEST_ID.match(given):
                    return given
        return uuid.uuid4().hex

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        publisher: asyncio.Task[None] | None = None
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                if self.runtime.metrics.share_dir is not None:
                    publisher = asyncio.create_task(self._publish_metrics())
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                if publisher is not None:
                    publisher.cancel()
                    self._publish_once()
                self.runtime.close()
                if self.owns_store:
                    self.runtime.store.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _publish_metrics(self) -> None:
        """This worker's metrics for the others' /metrics, once a second."""
        while True:
            self._publish_once()
            await asyncio.sleep(METRICS_PUBLISH_S)

    def _publish_once(self) -> None:
        try:
            self.runtime.metrics.publish()
        except OSError as exc:
            log.warning("cannot share this worker's metrics",
                        extra={"dir": str(self.runtime.metrics.share_dir), "error": str(exc)})


def create_app(store: GraphStore, settings: Settings, owns_store: bool = False) -> RiskGraphApp:
    """The API over an initialised store. Keys, limits and paths come from ``settings``."""
    return app_for(bootstrap(settings, store), owns_store=owns_store)


def app_for(runtime: Runtime, owns_store: bool = False) -> RiskGraphApp:
    """The API over a runtime (``api.bootstrap.bootstrap``). The fraud model is loaded
    and the ring pass made sure of first, so the server is ready only once the first
    score or ring request answers in normal time."""
    gnn_service.warm_up(runtime.models, runtime.store)
    _rings_ready(runtime.store)
    return RiskGraphApp(runtime, Authenticator(runtime.settings.api_keys),
                        owns_store=owns_store)


def _rings_ready(store: GraphStore) -> None:
    """Run the ring pass on a store that never had one (a load runs it): otherwise the
    first ring request pays for it, seconds even on a small graph (the community
    detection library's import, the columnar read's child process)."""
    try:
        queries.ensure_pass(store)
    except RiskGraphError as exc:
        # a store that cannot be read now is the API's to report per request
        log.warning("ring pass at start-up failed", extra={"error": str(exc)})


def app_from_env() -> RiskGraphApp:
    """Factory for ``uvicorn --factory api.server:app_from_env``, and each worker process
    of ``riskgraph serve --workers N``: settings from RISKGRAPH_*, JSON logs."""
    from api import logs

    settings = Settings.from_env()
    logs.configure(settings.log_level)
    return app_for(bootstrap(settings), owns_store=True)


def worker_app() -> RiskGraphApp:
    """Factory for each worker process of ``riskgraph serve --workers N``: as
    ``app_from_env``, and the worker stops when the supervising process dies, so that a
    crash of the server leaves no orphan still serving the port and writing the audit."""
    _stop_with_parent()
    app = app_from_env()
    _settle_gc()
    return app


def _settle_gc() -> None:
    """What the worker loaded at start (schema, policy, model, link index) is moved out
    of the collector's sight, and young collections run less often: a request makes a
    few thousand short-lived objects, and each full pass over the start-up heap was a
    tail-latency spike under load (bench/api.py)."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


def _stop_with_parent() -> None:
    import multiprocessing
    import os
    import signal

    parent = multiprocessing.parent_process()
    if parent is None:
        return
    try:
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: uvicorn's supervisor still stops workers
        return
    if os.getppid() != parent.pid:  # it died before the signal was asked for
        os.kill(os.getpid(), signal.SIGTERM)
