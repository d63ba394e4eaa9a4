"""API load: throughput and latency (p50, p99) of decideLimit and linkedAccounts(depth: 2)
with 32 concurrent clients in a separate process over loopback, beside the same
operations run in-process (schema.execute, and the plain function call) as baselines.

    .venv/bin/python bench/api.py [--users 20000] [--seconds 10] [--concurrency 32]
                                  [--workers N] [--out bench/results/api.json]

The server is `riskgraph serve` itself, in a child process, over the embedded store with
precomputed scores, its link index, and an audit log holding a recorded review of every
user (``--no-audit`` leaves it out), with as many worker processes as it would start in production
(``--workers``, default RISKGRAPH_API_WORKERS, else one per core). The load generator
writes the same request a gql client would (POST /graphql, JSON, Authorization: Bearer)
over raw HTTP/1.1 keep-alive connections on asyncio, one per client, so that its own
cost stays small on a machine whose cores it shares with the server; its CPU time and
the server's are both reported per request, with each server process's share of the
server's CPU (how evenly connections were spread over the workers; with
``--log-level info`` the requests per worker pid are counted from the server's log).
When the limit engine (api.limits_service.decide_limit) is not installed, decideLimit is reported as
unavailable and the limit engine's read (a user's risk, features and limits) is
measured in its place.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import machine_info

DECIDE = ('mutation($id: ID!) { decideLimit(userId: $id, dryRun: true) '
          '{ action lines { line limit } reasons { code } } }')
RISK = ('query($id: ID!) { user(id: $id) { fraudRisk relationalRisk creditFeatures '
        '{ creditScore income overdueCount utilisation } limits { totalLimit lines '
        '{ line limit balance } } } }')
LINKED = ('query($id: ID!) { user(id: $id) { linkedAccounts(depth: 2, first: 20) '
          '{ totalCount edges { depth strength node { id fraudRisk } } } } }')


def build_graph(path: Path, n_users: int, seed: int = 1, link_index: bool = True
                ) -> list[str]:
    """Users with credit features and scores, devices and phones shared by a few,
    transfers, referrals, and the two credit lines."""
    from graph.embedded import EmbeddedStore

    rnd = random.Random(seed)
    store = EmbeddedStore(path)
    store.init()
    users = [f"u{i:07d}" for i in range(n_users)]
    store.upsert_nodes("User", {
        "id": users,
        "name": [f"user {i}" for i in range(n_users)],
        "lifecycle": [rnd.choice(["new", "active", "active", "dormant"]) for _ in users],
        "credit_score": [rnd.randint(450, 900) for _ in users],
        "income": [rnd.uniform(30_000, 400_000) for _ in users],
        "months_on_book": [rnd.randint(0, 60) for _ in users],
        "repayment_history": ["".join(rnd.choice("0000000001-") for _ in range(24))
                              for _ in users],
        "overdue_count": [rnd.choice([0, 0, 0, 1, 2]) for _ in users],
        "worst_dpd": [rnd.choice([0, 0, 0, 15, 45]) for _ in users],
        "utilisation": [rnd.uniform(0, 1) for _ in users],
        "monthly_spend": [rnd.uniform(100, 20_000) for _ in users],
        "monthly_txns": [rnd.uniform(1, 80) for _ in users],
        "merchant_categories": [rnd.randint(1, 15) for _ in users],
        "active_days_30d": [rnd.randint(0, 30) for _ in users],
        "other_products": [rnd.randint(0, 3) for _ in users],
        "obligations": [rnd.uniform(0, 5000) for _ in users],
        "fraud_risk": [rnd.betavariate(1, 12) for _ in users],
        "relational_risk": [rnd.betavariate(1, 8) for _ in users],
        "own_risk": [rnd.betavariate(1, 12) for _ in users],
        "model_version": ["bench-1"] * n_users,
        "scored_at": [1_700_000_000_000] * n_users,
    })
    devices = [f"d{i:07d}" for i in range(n_users // 2)]
    phones = [f"p{i:07d}" for i in range(int(n_users * 0.8))]
    store.upsert_nodes("Device", {"id": devices})
    store.upsert_nodes("Phone", {"id": phones})
    store.upsert_nodes("Product", {"id": ["bnpl", "cash"], "kind": ["bnpl", "cash_loan"]})
    store.upsert_relationships("USES", {"src": users, "dst": [rnd.choice(devices) for _ in users]})
    store.upsert_relationships("HAS_PHONE", {"src": users,
                                             "dst": [rnd.choice(phones) for _ in users]})
    pairs = [(rnd.choice(users), rnd.choice(users)) for _ in range(n_users // 2)]
    store.upsert_relationships("TRANSFERRED", {"src": [a for a, _ in pairs],
                                               "dst": [b for _, b in pairs],
                                               "id": [f"t{i}" for i in range(len(pairs))]})
    refs = rnd.sample(users, n_users // 10)
    store.upsert_relationships("REFERRED", {"src": refs, "dst": [rnd.choice(users) for _ in refs]})
    store.upsert_relationships("HOLDS", {
        "src": users + users[::2], "dst": ["bnpl"] * n_users + ["cash"] * len(users[::2]),
        "limit": [rnd.choice([2000.0, 5000.0, 10000.0]) for _ in range(n_users + len(users[::2]))],
        "balance": [rnd.uniform(0, 2000) for _ in range(n_users + len(users[::2]))],
        "status": ["active"] * (n_users + len(users[::2])),
    })
    if link_index:  # as `riskgraph load` leaves a store
        from graph import linkindex

        linkindex.refresh(store)
    store.close()
    return users


def record_review(home: Path, graph: Path) -> dict[str, Any]:
    """A recorded review of every user, as a deployment's audit trail holds one (the
    nightly `riskgraph limits review`): with an audit log present every decision, dry
    runs included, reads the last raises through its index."""
    from api import services
    from api.settings import Settings
    from graph import linkindex
    from graph.embedded import EmbeddedStore

    store = EmbeddedStore(graph)
    store.init()
    try:
        settings = Settings(home=home)
        t0 = time.perf_counter()
        summary = services.build_limits_service(store, settings).review(dry_run=False)
        log_file = settings.audit_dir / "decisions.jsonl"
        if (graph / linkindex.DIR_NAME).exists() and linkindex.fresh_index(store) is None:
            raise SystemExit("the review made the link index stale; it writes HOLDS only")
        return {"records": summary.recorded, "seconds": round(time.perf_counter() - t0, 1),
                "log_mb": round(log_file.stat().st_size / 2**20, 1)}
    finally:
        store.close()


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


def summary(lat: list[float], seconds: float, errors: int) -> dict[str, Any]:
    return {"requests": len(lat), "errors": errors, "rps": round(len(lat) / seconds, 1),
            "p50_ms": round(pct(lat, 0.50) * 1000, 3), "p99_ms": round(pct(lat, 0.99) * 1000, 3),
            "mean_ms": round(statistics.fmean(lat) * 1000, 3) if lat else None}


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection with one request in flight at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.lost: BaseException | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost = exc or ConnectionError("the server closed the connection")
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(self.lost)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        got = parse_response(self.buf)
        if got is not None and self.waiter is not None and not self.waiter.done():
            del self.buf[:got[2]]
            self.waiter.set_result((got[0], got[1]))

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        if self.lost is not None:
            raise self.lost
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return await self.waiter


def parse_response(buf: bytearray) -> tuple[int, bytes, int] | None:
    """(status, body, bytes used) of the complete response at the start of ``buf``, or
    None while it is incomplete. Content-Length and chunked bodies."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buf[:end]).decode("latin-1").split("\r\n")
    status = int(head[0].split(" ", 2)[1])
    headers = {}
    for line in head[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    start = end + 4
    if "content-length" in headers:
        stop = start + int(headers["content-length"])
        return (status, bytes(buf[start:stop]), stop) if len(buf) >= stop else None
    if headers.get("transfer-encoding", "").lower() != "chunked":
        return status, b"", start
    pos, body = start, bytearray()
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        size = int(bytes(buf[pos:eol]).split(b";")[0], 16)
        if len(buf) < eol + 4 + size:
            return None
        body += buf[eol + 2:eol + 2 + size]
        pos = eol + 4 + size
        if size == 0:
            return status, bytes(body), pos


def graphql_request(host: str, port: int, key: str, query: str, variables: dict[str, Any]
                    ) -> bytes:
    """The bytes of the POST a gql client sends for one operation."""
    body = json.dumps({"query": query, "variables": variables}).encode("utf-8")
    return (f"POST /graphql HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
            f"Accept: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode("latin-1") + body


async def load(host: str, port: int, key: str, query: str, users: list[str],
               concurrency: int, seconds: float, warmup: float,
               server_cpu: Callable[[], dict[int, float]]) -> dict[str, Any]:
    """``concurrency`` clients, each on its own connection, asking one after another for
    ``warmup`` + ``seconds``; latencies of the last ``seconds``, and the CPU seconds the
    server and this process spent in them."""
    loop = asyncio.get_running_loop()
    conns = []
    for _ in range(concurrency):
        _, proto = await loop.create_connection(_Connection, host, port)
        conns.append(proto)
    lat: list[float] = []
    errors = 0
    rnd = random.Random(3)
    start = time.perf_counter()
    measure_from = start + warmup
    stop = measure_from + seconds
    cpu: dict[str, float] = {}

    async def client(conn: _Connection) -> None:
        nonlocal errors
        while True:
            raw = graphql_request(host, port, key, query, {"id": rnd.choice(users)})
            t0 = time.perf_counter()
            if t0 >= stop:
                return
            status, body = await conn.request(raw)
            t1 = time.perf_counter()
            if t0 >= measure_from:
                lat.append(t1 - t0)
                if status != 200 or json.loads(body).get("errors"):
                    errors += 1

    split: list[float] = []

    async def meter() -> None:
        await asyncio.sleep(max(0.0, measure_from - time.perf_counter()))
        before, cpu["client"] = server_cpu(), time.process_time()
        await asyncio.sleep(max(0.0, stop - time.perf_counter()))
        after = server_cpu()
        cpu["server"] = sum(after.values()) - sum(before.values())
        cpu["client"] = time.process_time() - cpu["client"]
        split.extend(worker_split(before, after))

    await asyncio.gather(meter(), *(client(c) for c in conns))
    for c in conns:
        if c.transport is not None:
            c.transport.close()
    out = summary(lat, seconds, errors)
    n = max(1, len(lat))
    out["server_cpu_ms_per_request"] = round(cpu["server"] * 1000 / n, 3)
    out["client_cpu_ms_per_request"] = round(cpu["client"] * 1000 / n, 3)
    out["server_cpu_cores"] = round(cpu["server"] / seconds, 2)
    out["client_cpu_cores"] = round(cpu["client"] / seconds, 2)
    out["server_cpu_share_by_process"] = split
    return out


def run_load(*args: Any) -> dict[str, Any]:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(load(*args))
    return uvloop.run(load(*args))


def process_cpu(pid: int) -> Callable[[], dict[int, float]]:
    """CPU seconds (user + system) so far of a process and each of its children, by pid."""
    import psutil

    root = psutil.Process(pid)

    def each() -> dict[int, float]:
        out = {}
        for p in [root, *root.children(recursive=True)]:
            try:
                c = p.cpu_times()
            except psutil.Error:
                continue
            out[p.pid] = c.user + c.system
        return out

    return each


def worker_split(before: dict[int, float], after: dict[int, float]) -> list[float]:
    """Each busy server process's share of the server's CPU between two readings, largest
    first: how evenly the kernel spread the connections over the workers."""
    used = {p: after[p] - before.get(p, 0.0) for p in after}
    total = sum(used.values()) or 1.0
    return sorted((round(v / total, 2) for v in used.values() if v / total >= 0.02),
                  reverse=True)


def requests_by_pid(log_file: Path) -> dict[str, int]:
    """Requests per worker process, from the server's JSON log (``--log-level info``)."""
    counts: dict[str, int] = {}
    for line in log_file.read_text(errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("msg") == "request" and rec.get("path") == "/graphql":
            counts[str(rec.get("pid"))] = counts.get(str(rec.get("pid")), 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def in_process(graph: Path, home: Path, users: list[str], n: int) -> dict[str, Any]:
    """The same operations without HTTP: schema.execute, and the functions under it."""
    from api import services
    from api.auth import Principal
    from api.bootstrap import bootstrap
    from api.context import Context
    from api.dataloaders import linked_accounts_many
    from api.errors import ServiceUnavailableError
    from api.schema import schema
    from api.settings import Settings
    from graph import queries
    from graph.embedded import EmbeddedStore

    store = EmbeddedStore(graph)
    store.init()
    settings = Settings(home=home)
    rt = bootstrap(settings, store)
    rnd = random.Random(5)
    out: dict[str, Any] = {}

    def timed(fn: Any) -> list[float]:
        lat = []
        for _ in range(n):
            uid = rnd.choice(users)
            t0 = time.perf_counter()
            fn(uid)
            lat.append(time.perf_counter() - t0)
        return lat

    loop = asyncio.new_event_loop()

    def gql_call(query: str, role: str) -> Any:
        def call(uid: str) -> None:
            ctx = Context(rt, Principal(role, role), "bench")
            r = loop.run_until_complete(
                schema.execute(query, variable_values={"id": uid}, context_value=ctx))
            assert not r.errors, r.errors
        return call

    try:
        services.decide_limit(rt.limits, users[0], dry_run=True)
        have_limits = True
    except ServiceUnavailableError:
        have_limits = False
    if have_limits:
        out["decideLimit_function"] = summary(timed(
            lambda uid: services.decide_limit(rt.limits, uid, dry_run=True,
                                              counterfactuals=False)), 1, 0)
        out["decideLimit_schema_execute"] = summary(timed(gql_call(DECIDE, "limit_engine")), 1, 0)
    out["risk_function"] = summary(timed(lambda uid: store.get_nodes("User", [uid])), 1, 0)
    out["risk_schema_execute"] = summary(timed(gql_call(RISK, "limit_engine")), 1, 0)
    out["linked_function"] = summary(timed(
        lambda uid: queries.linked_accounts(store, uid, depth=2)), 1, 0)
    out["linked_batched_function"] = summary(timed(
        lambda uid: linked_accounts_many(store, [uid], depth=2)), 1, 0)
    out["linked_schema_execute"] = summary(timed(gql_call(LINKED, "investigator")), 1, 0)
    for v in out.values():
        if isinstance(v, dict):
            v.pop("rps", None)
            v.pop("requests", None)
            v.pop("errors", None)
    loop.close()
    rt.close()
    store.close()
    out["have_limits_service"] = have_limits
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--workers", type=int, default=None,
                    help="server processes (default: what `riskgraph serve` starts)")
    ap.add_argument("--log-level", default="warning",
                    choices=["debug", "info", "warning", "error"],
                    help="the server's log level (info writes a line per request)")
    ap.add_argument("--in-process-n", type=int, default=2000)
    ap.add_argument("--no-link-index", action="store_true",
                    help="leave the store without its link index (rings and linked "
                         "accounts then walk SQL)")
    ap.add_argument("--no-audit", action="store_true",
                    help="no audit log (by default a recorded review of every user is "
                         "in it, as in a deployment)")
    ap.add_argument("--out", type=Path, default=Path("bench/results/api.json"))
    args = ap.parse_args(argv)

    from api.settings import Settings, new_api_key
    from tests.bolt_server import free_port

    workers = args.workers or Settings.from_env(
        {k: v for k, v in os.environ.items() if k == "RISKGRAPH_API_WORKERS"}).api_workers
    root = Path(__file__).resolve().parents[1]
    load_start = round(os.getloadavg()[0], 2)
    with tempfile.TemporaryDirectory(prefix="riskgraph-bench-api-") as tmp:
        home = Path(tmp) / "home"
        graph = home / "graph"
        t0 = time.perf_counter()
        users = build_graph(graph, args.users, link_index=not args.no_link_index)
        print(f"graph of {args.users:,} users built in {time.perf_counter() - t0:.1f} s")
        audit = None if args.no_audit else record_review(home, graph)
        if audit is not None:
            print(f"audit log: a recorded review of {audit['records']:,} decisions "
                  f"({audit['log_mb']} MB) in {audit['seconds']} s")
        base = in_process(graph, home, users, args.in_process_n)

        keys = {r: new_api_key(r) for r in ("investigator", "limit_engine")}
        port = free_port()
        env = {**os.environ, "PYTHONPATH": str(root), "RISKGRAPH_HOME": str(home),
               "RISKGRAPH_STORE": "embedded",
               "RISKGRAPH_API_KEYS": ",".join(e for _, e in keys.values())}
        server_log = Path(tmp) / "server.log"
        child = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "serve", "--port", str(port),
             "--workers", str(workers), "--log-level", args.log_level],
            cwd=root, env=env, stdin=subprocess.DEVNULL, stderr=server_log.open("wb"),
        )
        try:
            _wait(f"http://127.0.0.1:{port}/healthz", child)
            server_cpu = process_cpu(child.pid)
            engine_query = DECIDE if base["have_limits_service"] else RISK
            engine_name = "decideLimit" if base["have_limits_service"] else "risk"
            http: dict[str, Any] = {}
            for name, query, role in [(engine_name, engine_query, "limit_engine"),
                                      ("linkedAccounts_depth2", LINKED, "investigator")]:
                key = keys[role][0]
                http[name] = {
                    f"c{args.concurrency}": run_load(
                        "127.0.0.1", port, key, query, users, args.concurrency,
                        args.seconds, args.warmup, server_cpu),
                    "c1": run_load("127.0.0.1", port, key, query, users, 1,
                                   min(args.seconds, 5.0), 0.5, server_cpu),
                }
        finally:
            child.terminate()
            child.wait(15)
            by_pid = requests_by_pid(server_log)
            errors_logged = [ln for ln in server_log.read_text(errors="replace").splitlines()
                             if '"level": "error"' in ln][:5]
        for ln in errors_logged:
            print("server:", ln, file=sys.stderr)

    fn_key = "decideLimit" if base["have_limits_service"] else "risk"
    ratios = {
        engine_name: {
            "http_c1_over_schema_execute_p50": _ratio(http[engine_name]["c1"]["p50_ms"],
                                                     base[f"{fn_key}_schema_execute"]["p50_ms"]),
            "http_c1_over_function_p50": _ratio(http[engine_name]["c1"]["p50_ms"],
                                               base[f"{fn_key}_function"]["p50_ms"]),
        },
        "linkedAccounts_depth2": {
            "http_c1_over_schema_execute_p50": _ratio(
                http["linkedAccounts_depth2"]["c1"]["p50_ms"],
                base["linked_schema_execute"]["p50_ms"]),
            "http_c1_over_function_p50": _ratio(http["linkedAccounts_depth2"]["c1"]["p50_ms"],
                                               base["linked_function"]["p50_ms"]),
        },
    }
    c = f"c{args.concurrency}"
    eng = http[engine_name][c]
    targets = {
        "engine_operation": engine_name,
        "rps_at_least_500": eng["rps"] >= 500,
        "p99_at_most_50ms": eng["p99_ms"] <= 50,
        "http_at_most_3x_schema_execute": all(
            r["http_c1_over_schema_execute_p50"] <= 3 for r in ratios.values()),
    }
    targets["met"] = [k for k, v in targets.items() if v is True]
    targets["missed"] = [k for k, v in targets.items() if v is False]
    result = {
        "benchmark": "api",
        "machine": machine_info(),
        # other work on the machine skews every figure; recorded so a reader can tell
        "load_average_1m": {"start": load_start, "end": round(os.getloadavg()[0], 2)},
        "config": {"users": args.users,
                   "link_index": not args.no_link_index, "audit_log": audit,
                   "seconds": args.seconds,
                   "warmup": args.warmup,
                   "concurrency": args.concurrency, "store": "embedded",
                   "server": f"riskgraph serve (uvicorn), {workers} worker process(es)",
                   "workers": workers, "server_log_level": args.log_level,
                   "client": "raw HTTP/1.1 keep-alive on asyncio (uvloop), one connection "
                             "per client, in the benchmark's own process",
                   "scores": "precomputed"},
        "http": http,
        # from the server's log lines, so only with --log-level info (every run, c1 too)
        "requests_by_worker_pid": by_pid or None,
        "in_process": base,
        "ratios": ratios,
        "targets": targets,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"server: {workers} worker(s); load average {result['load_average_1m']}")
    print(f"{'operation':<24}{'clients':>8}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}"
          f"{'errors':>8}{'srv cpu ms':>12}{'cli cpu ms':>12}  cpu share by process")
    for name, runs in http.items():
        for cl, s in runs.items():
            print(f"{name:<24}{cl[1:]:>8}{s['rps']:>10}{s['p50_ms']:>10}{s['p99_ms']:>10}"
                  f"{s['errors']:>8}{s['server_cpu_ms_per_request']:>12}"
                  f"{s['client_cpu_ms_per_request']:>12}  "
                  f"{'/'.join(str(x) for x in s['server_cpu_share_by_process'])}")
    if by_pid:
        print("requests by worker pid (whole run):", by_pid)
    print("in-process p50 ms:", {k: v["p50_ms"] for k, v in base.items() if isinstance(v, dict)})
    print("ratios:", json.dumps(ratios))
    print("targets:", json.dumps(targets))
    print(f"wrote {args.out}")
    return 0


def _ratio(a: float, b: float) -> float:
    return round(a / b, 2) if b else float("nan")


def _wait(url: str, child: subprocess.Popen[bytes]) -> None:
    import urllib.request

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise SystemExit("the API server exited before it was ready")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("the API server did not come up in 30 s")


if __name__ == "__main__":
    sys.exit(main())
