"""serve, query, apikey: run the API, talk to a running one, make API keys."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import sys
import tempfile
from typing import Any

from api.commands.common import UsageError, add_store_option, print_json, settings_for
from api.settings import LOG_LEVELS, ROLES, new_api_key
from graph.errors import NotFoundError, RiskGraphError

DEFAULT_PORT = 8000


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve the GraphQL API (GraphiQL at /graphql)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    p.add_argument("--log-level", default=None, choices=LOG_LEVELS,
                   help="default RISKGRAPH_LOG_LEVEL, else info")
    p.add_argument("--workers", type=int, default=None,
                   help="server processes sharing the port (default RISKGRAPH_API_WORKERS, "
                        "else one per CPU core)")
    add_store_option(p)
    p.set_defaults(func=serve)

    p = sub.add_parser("apikey", help="make a new API key and its RISKGRAPH_API_KEYS entry")
    p.add_argument("role", choices=ROLES)
    p.set_defaults(func=apikey)

    p = sub.add_parser("query", help="ask a running API (key from RISKGRAPH_API_KEY)")
    p.add_argument("--url", default=None,
                   help=f"GraphQL endpoint (default RISKGRAPH_API_URL or "
                        f"http://127.0.0.1:{DEFAULT_PORT}/graphql)")
    p.add_argument("--key", default=None, help="API key (default RISKGRAPH_API_KEY)")
    q = p.add_subparsers(dest="what", required=True, metavar="WHAT")
    d = q.add_parser("decide", help="a limit decision (dry run unless --apply)")
    d.add_argument("user_id")
    d.add_argument("--apply", action="store_true")
    r = q.add_parser("risk", help="a user's scores, credit features and limits")
    r.add_argument("user_id")
    lk = q.add_parser("linked", help="linked accounts, one page")
    lk.add_argument("user_id")
    lk.add_argument("--depth", type=int, default=1)
    lk.add_argument("--via", action="append", default=None)
    lk.add_argument("--first", type=int, default=20)
    lk.add_argument("--after", default=None)
    rg = q.add_parser("ring", help="the ring a user belongs to")
    rg.add_argument("user_id")
    g = q.add_parser("graphql", help="any GraphQL document")
    g.add_argument("document", help="the query text, or @file")
    g.add_argument("--variables", default=None, help="JSON object")
    p.set_defaults(func=query)


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from api import logs
    from api.bootstrap import api_store_retry_s, bootstrap, open_store
    from api.server import app_for

    settings = settings_for(args)
    level = args.log_level or settings.log_level
    workers = settings.api_workers if args.workers is None else args.workers
    if workers < 1:
        raise UsageError(f"--workers must be at least 1, got {workers}")
    logs.configure(level)
    if not settings.api_keys:
        print("riskgraph: no API keys configured, every request will get 401; "
              "make one with `riskgraph apikey ROLE` and set RISKGRAPH_API_KEYS",
              file=sys.stderr)
    common: dict[str, Any] = {"host": args.host, "port": args.port, "log_config": None,
                              "access_log": False, "lifespan": "on", "log_level": level}
    if workers == 1:
        uvicorn.Server(uvicorn.Config(app_for(bootstrap(settings), owns_store=True),
                                      **common)).run()
        return 0
    # Several processes: uvicorn binds the port once and starts each worker, which builds
    # its own app from the environment (api.server.worker_app). The store is opened
    # here first so that a store that cannot be reached, or a schema to create, is dealt
    # with once, before any worker starts.
    open_store(settings, retry_s=api_store_retry_s(settings)).close()
    os.environ["RISKGRAPH_STORE"] = settings.store
    os.environ["RISKGRAPH_LOG_LEVEL"] = level
    # The workers' metrics meet here, so that /metrics counts every worker's requests;
    # a directory of this run's own, as counters start again with the server.
    metrics_dir = tempfile.mkdtemp(prefix="riskgraph-metrics-")
    os.environ["RISKGRAPH_METRICS_DIR"] = metrics_dir
    try:
        if hasattr(socket, "SO_REUSEPORT"):
            _run_reuseport_workers(workers, common)
        else:
            uvicorn.run("api.server:worker_app", factory=True, workers=workers, **common)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


def _run_reuseport_workers(workers: int, common: dict[str, Any]) -> None:
    """Each worker listens on a socket of its own, bound to the same port with
    SO_REUSEPORT, so the kernel spreads connections evenly over the workers. With one
    shared socket, whichever worker wakes first accepts: 32 keep-alive clients split
    24/8 and the busy worker's queue sets the latency (bench/api.py). A worker that
    dies is started again; SIGINT or SIGTERM stops them all."""
    import multiprocessing
    import signal
    import time

    # Bind once here so a port in use fails now, with a message, before any worker.
    _reuseport_socket(common["host"], common["port"]).close()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_reuseport_worker, args=(common,), daemon=False)
             for _ in range(workers)]
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for p in procs:
            p.start()
        while not stopping:
            time.sleep(0.2)
            for i, p in enumerate(procs):
                if not p.is_alive() and not stopping:
                    procs[i] = ctx.Process(target=_reuseport_worker, args=(common,))
                    procs[i].start()
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _reuseport_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()

        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    sock.listen(2048)
    return sock


def _reuseport_worker(common: dict[str, Any]) -> None:
    import uvicorn

    sock = _reuseport_socket(common["host"], common["port"])
    config = uvicorn.Config("api.server:worker_app", factory=True, **common)
    uvicorn.Server(config).run(sockets=[sock])


def apikey(args: argparse.Namespace) -> int:
    key, entry = new_api_key(args.role)
    print(f"key:   {key}")
    print(f"entry: {entry}")
    print("Give the key to its user; add the entry to RISKGRAPH_API_KEYS (comma-separated).",
          file=sys.stderr)
    return 0


def query(args: argparse.Namespace) -> int:
    from gql.transport.exceptions import TransportError
    from requests.exceptions import RequestException

    from api.client import ApiClientError, RiskGraphClient

    url = args.url or os.environ.get("RISKGRAPH_API_URL",
                                     f"http://127.0.0.1:{DEFAULT_PORT}/graphql")
    key = args.key or os.environ.get("RISKGRAPH_API_KEY")
    if not key:
        raise UsageError("no API key: pass --key or set RISKGRAPH_API_KEY")
    try:
        out = _ask(args, RiskGraphClient(url, key))
    except ApiClientError as exc:
        if "NOT_FOUND" in exc.codes:
            raise NotFoundError(str(exc)) from None
        raise
    except (TransportError, RequestException, OSError) as exc:
        raise QueryTransportError(
            f"cannot reach the API at {url}: {_first_line(exc)}; start it with "
            "`riskgraph serve`, or point --url (or RISKGRAPH_API_URL) at it") from None
    print_json(out)
    return 0


class QueryTransportError(RiskGraphError):
    """The API could not be reached or did not answer in GraphQL (exit code 2)."""


def _first_line(exc: BaseException) -> str:
    """The cause in a few words: the system error a connection failed with when there is
    one ("[Errno 111] Connection refused"), else the first line of the message."""
    from requests.exceptions import Timeout

    text = str(exc).strip() or type(exc).__name__
    errno_text = re.search(r"\[Errno -?\d+\] [^'\")\]]+", text)
    if errno_text:
        return errno_text.group(0).strip()
    if isinstance(exc, Timeout):
        return "no answer in time"
    return text.splitlines()[0][:160]


def _ask(args: argparse.Namespace, client: Any) -> Any:

    out: Any
    with client as rg:
        if args.what == "decide":
            out = rg.decide(args.user_id, dry_run=not args.apply)
        elif args.what == "risk":
            out = rg.risk(args.user_id)
        elif args.what == "linked":
            out = rg.linked(args.user_id, args.depth, args.via, args.first, args.after)
        elif args.what == "ring":
            out = rg.ring(args.user_id)
        else:
            doc = args.document
            if doc.startswith("@"):
                with open(doc[1:], encoding="utf-8") as f:
                    doc = f.read()
            try:
                variables = json.loads(args.variables) if args.variables else None
            except ValueError:
                raise UsageError("--variables must be a JSON object") from None
            out = rg.execute(doc, variables)
    if out is None and args.what == "risk":
        raise NotFoundError(f"no user with id {args.user_id!r} (ids are case-sensitive, "
                            "e.g. u0000042)")
    return out
