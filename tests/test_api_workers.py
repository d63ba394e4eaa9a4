"""Several server processes on one audit trail: `riskgraph serve --workers N` and plain
processes deciding at once keep the hash chain valid and record every applied decision
once; the workers stop with the server."""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
import time
from pathlib import Path

import psutil

from api import services
from api.bootstrap import bootstrap
from api.cli import build_parser
from api.limits_service import ApplyLocks
from api.settings import Settings
from graph.embedded import EmbeddedStore
from limits.audit import AuditLog
from tests.api_graph import USERS, load_small_graph
from tests.faults import DECIDE, ApiProcess, api_keys, codes, get, graphql, riskgraph


def _home_with_graph(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    store = EmbeddedStore(home / "graph")
    store.init()
    load_small_graph(store)
    store.close()
    return home


def _apply_decisions(home: str, users: list[str], rounds: int, start: multiprocessing.Event
                     ) -> None:
    """Child process: apply a decision for each user, ``rounds`` times over."""
    store = EmbeddedStore(Path(home) / "graph")
    store.init()
    rt = bootstrap(Settings(home=Path(home)), store)
    start.wait(30)
    for _ in range(rounds):
        for uid in users:
            services.decide_limit(rt.limits, uid, dry_run=False, counterfactuals=False)
    rt.close()
    store.close()


def test_two_processes_applying_decisions_keep_the_audit_chain_valid(tmp_path: Path) -> None:
    home = _home_with_graph(tmp_path)
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    rounds = 5
    procs = [ctx.Process(target=_apply_decisions, args=(str(home), USERS, rounds, start))
             for _ in range(2)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    audit = AuditLog(home / "audit")
    result = audit.verify()
    assert result.ok, result.error
    assert result.records == 2 * rounds * len(USERS)
    seqs = [r["seq"] for r in audit.records()]
    assert seqs == list(range(len(seqs)))
    env = {"RISKGRAPH_HOME": str(home), "RISKGRAPH_STORE": "embedded"}
    verify = riskgraph("audit", "verify", "--json", env=env)
    assert verify.returncode == 0, verify.stderr
    assert json.loads(verify.stdout)["ok"] is True


def test_apply_locks_exclude_threads_and_processes_per_user(tmp_path: Path) -> None:
    locks = ApplyLocks(tmp_path / "apply.lock", stripes=4)
    inside: list[str] = []
    overlap = threading.Event()

    def hold(uid: str) -> None:
        with locks.user(uid):
            if inside:
                overlap.set()
            inside.append(uid)
            time.sleep(0.05)
            inside.remove(uid)

    threads = [threading.Thread(target=hold, args=("u01",)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not overlap.is_set()
    # Another process holds u01's stripe: this one waits for it.
    ctx = multiprocessing.get_context("spawn")
    held, release = ctx.Event(), ctx.Event()
    other = ctx.Process(target=_hold_in_child, args=(str(tmp_path / "apply.lock"), held,
                                                      release))
    other.start()
    try:
        assert held.wait(30)
        got = threading.Event()
        waiter = threading.Thread(target=lambda: (locks.user("u01").__enter__(), got.set()))
        waiter.daemon = True
        waiter.start()
        assert not got.wait(0.3)
        release.set()
        assert got.wait(10)
    finally:
        release.set()
        other.join(30)


def _hold_in_child(path: str, held: multiprocessing.Event, release: multiprocessing.Event
                   ) -> None:
    with ApplyLocks(Path(path), stripes=4).user("u01"):
        held.set()
        release.wait(30)


def _cross_in_child(path: str, mine: str, theirs: str, waiting: multiprocessing.Event
                    ) -> None:
    """Child process: hold ``mine``'s stripe, then wait for ``theirs``."""
    locks = ApplyLocks(Path(path), stripes=4)
    with locks.user(mine):
        waiting.set()
        with locks.user(theirs):
            pass


def test_crossed_waits_of_two_processes_are_not_a_deadlock(tmp_path: Path) -> None:
    """POSIX locks belong to processes: with one thread of each process holding a stripe
    and another waiting for the other process's stripe, the kernel sees a cycle and
    refuses the last wait (EDEADLK), though the holders will finish. The wait is asked
    again until the stripe is free."""
    import zlib

    locks = ApplyLocks(tmp_path / "apply.lock", stripes=4)
    a, b = "u01", next(u for u in (f"u{i:02d}" for i in range(2, 99))
                       if zlib.crc32(u.encode()) % 4 != zlib.crc32(b"u01") % 4)
    ctx = multiprocessing.get_context("spawn")
    waiting = ctx.Event()
    release = threading.Event()
    holding = threading.Event()

    def hold_a() -> None:
        with locks.user(a):
            holding.set()
            release.wait(30)

    holder = threading.Thread(target=hold_a)
    holder.start()
    assert holding.wait(10)
    other = ctx.Process(target=_cross_in_child,
                        args=(str(tmp_path / "apply.lock"), b, a, waiting))
    other.start()
    got: list[object] = []
    try:
        assert waiting.wait(30)
        time.sleep(0.3)  # the child is now waiting for a's stripe, which this one holds

        def take_b() -> None:
            try:
                with locks.user(b):
                    got.append("b")
            except OSError as exc:
                got.append(exc)

        taker = threading.Thread(target=take_b)
        taker.start()
        time.sleep(0.3)  # asked while the child waits on us: the kernel's false cycle
        release.set()
        taker.join(30)
        assert got == ["b"]
    finally:
        release.set()
        holder.join(30)
        other.join(30)
    assert other.exitcode == 0


def test_serve_with_workers_answers_from_several_processes(tmp_path: Path) -> None:
    home = _home_with_graph(tmp_path)
    keys, entries = api_keys()
    env = {"RISKGRAPH_HOME": str(home), "RISKGRAPH_STORE": "embedded",
           "RISKGRAPH_API_KEYS": entries, "RISKGRAPH_API_WORKERS": "2"}
    api = ApiProcess(env, log_path=tmp_path / "api.log").start()
    try:
        assert api.proc is not None
        workers = psutil.Process(api.proc.pid).children()
        assert len([w for w in workers if "spawn_main" in " ".join(w.cmdline())]) == 2
        answered: list[str] = []
        errors: list[object] = []

        def client(n: int) -> None:
            for i in range(12):
                uid = USERS[(n + i) % len(USERS)]
                status, got = graphql(api.url, keys["limit_engine"], DECIDE,
                                      {"id": uid, "dry": i % 2 == 0}, timeout=15)
                if status != 200 or codes(got):
                    errors.append(got)
                else:
                    answered.append(uid)

        threads = [threading.Thread(target=client, args=(n,)) for n in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors
        assert len(answered) == 6 * 12
        audit = AuditLog(home / "audit").verify()
        assert audit.ok, audit.error
        assert audit.records == 6 * 6  # every applied (not dry-run) decision, once
        pids = {json.loads(line).get("pid")
                for line in (tmp_path / "api.log").read_text().splitlines()
                if line.startswith("{") and '"msg": "request"' in line}
        assert len(pids) >= 2, f"requests were served by {pids}"
        # /metrics counts the decisions of every worker, whichever worker answers it.
        deadline = time.monotonic() + 10
        while True:
            status, body = get(api.url + "/metrics")
            decided = sum(float(line.rsplit(" ", 1)[1]) for line in body.decode().splitlines()
                          if line.startswith("riskgraph_limit_decisions_total{"))
            if decided == 6 * 12 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert status == 200 and decided == 6 * 12
    finally:
        api.kill()  # SIGKILL the supervisor, as a crash would
    deadline = time.monotonic() + 15
    while any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers):
        assert time.monotonic() < deadline, "workers outlived the server"
        time.sleep(0.1)


def test_serve_workers_default_to_the_cores() -> None:
    assert Settings.from_env({}).api_workers == (os.cpu_count() or 1)
    assert Settings.from_env({"RISKGRAPH_API_WORKERS": "3"}).api_workers == 3
    args = build_parser().parse_args(["serve", "--workers", "1"])
    assert args.workers == 1


def test_metrics_sum_the_snapshots_of_every_worker(tmp_path: Path) -> None:
    from api.metrics import Metrics

    mine, other = Metrics(tmp_path), Metrics(tmp_path)
    other.decisions.inc("raise", "true", by=3)
    other.latency.observe(0.003, "/graphql", "decideLimit")
    snapshot = {m.name: m.snapshot() for m in (other.requests, other.latency,
                                                other.decisions, other.errors)}
    (tmp_path / "999999.json").write_text(json.dumps(snapshot))  # another process's
    mine.decisions.inc("raise", "true")
    mine.latency.observe(0.2, "/graphql", "decideLimit")
    text = mine.render()
    assert 'riskgraph_limit_decisions_total{action="raise",dry_run="true"} 4' in text
    assert ('riskgraph_request_duration_seconds_count{route="/graphql",'
            'operation="decideLimit"} 2') in text
    assert ('riskgraph_request_duration_seconds_bucket{route="/graphql",'
            'operation="decideLimit",le="0.005"} 1') in text
    mine.publish()
    assert json.loads((tmp_path / f"{os.getpid()}.json").read_text())[
        "riskgraph_limit_decisions_total"] == [[["raise", "true"], 1.0]]


def test_serve_with_workers_on_a_port_in_use_says_so(tmp_path: Path) -> None:
    import socket

    home = _home_with_graph(tmp_path)
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        done = riskgraph("serve", "--workers", "2", "--port", str(port),
                         env={"RISKGRAPH_HOME": str(home), "RISKGRAPH_STORE": "embedded"},
                         timeout=60)
    finally:
        taken.close()
    assert done.returncode == 2, done.stderr
    assert f"127.0.0.1:{port}" in done.stderr and "Traceback" not in done.stderr
