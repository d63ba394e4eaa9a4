"""Faults injected into real components: the Bolt server killed (SIGKILL) during a load
and while the API serves, and the API killed during a stream of applied decisions.

The Bolt server here is a private one (tests/bolt_server.py), so killing it does not
disturb the session's server. No timing is asserted: waits are deadlines for recovery.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from graph.embedded import EmbeddedStore
from graph.neo4j_store import Neo4jStore, connect
from limits.audit import AuditLog
from tests.api_graph import load_small_graph
from tests.bolt_server import BoltServer, BoltServerError
from tests.faults import (
    DECIDE,
    USER,
    ApiProcess,
    api_keys,
    audit_decisions,
    codes,
    get,
    graphql,
    iso_to_ms,
    riskgraph,
)

pytestmark = pytest.mark.neo4j
RECOVERY_DEADLINE_S = 60.0


@pytest.fixture(scope="module")
def crash_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BoltServer]:
    """A Bolt server of this module's own, to be killed and started again."""
    server = BoltServer(root=tmp_path_factory.mktemp("bolt-crash"), heap="-Xmx768m")
    try:
        server.start()
    except BoltServerError as exc:
        pytest.fail(f"the Bolt server for fault tests did not start: {exc}", pytrace=False)
    yield server
    server.stop()


def _env(server: BoltServer, home: Path) -> dict[str, str]:
    return {"RISKGRAPH_HOME": str(home), "RISKGRAPH_STORE": "neo4j",
            "RISKGRAPH_NEO4J_URI": server.uri, "RISKGRAPH_NEO4J_USER": server.user,
            "RISKGRAPH_NEO4J_PASSWORD": server.password,
            "RISKGRAPH_NEO4J_DATABASE": server.database}


def _fresh_store(server: BoltServer) -> Neo4jStore:
    if server._proc is None:
        server.start()
    store = Neo4jStore(connect(server.uri, server.user, server.password), owns_driver=True)
    store.init()
    store.clear()
    return store


def _wait(cond: object, what: str) -> None:
    deadline = time.monotonic() + RECOVERY_DEADLINE_S
    while time.monotonic() < deadline:
        try:
            if cond():  # type: ignore[operator]
                return
        except OSError:
            pass
        time.sleep(0.2)
    pytest.fail(f"{what} within {RECOVERY_DEADLINE_S:.0f} s")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict[str, int]]]:
    """Synthetic files, and the counts a clean load gives (into the embedded store)."""
    root = tmp_path_factory.mktemp("fault-data")
    data = root / "data"
    done = riskgraph("generate", "--users", "1500", "--seed", "3", "--out", str(data), env={})
    assert done.returncode == 0, done.stderr
    done = riskgraph("load", str(data), env={"RISKGRAPH_HOME": str(root / "ref")})
    assert done.returncode == 0, done.stderr
    ref = EmbeddedStore(root / "ref" / "graph")
    ref.init()
    counts = ref.counts()
    ref.close()
    return data, counts


def test_bolt_server_killed_during_a_load_then_a_rerun_converges(
    crash_server: BoltServer, dataset: tuple[Path, dict[str, dict[str, int]]], tmp_path: Path
) -> None:
    data, expected = dataset
    store = _fresh_store(crash_server)
    env = {**_env(crash_server, tmp_path / "home"), "RISKGRAPH_NEO4J_RETRY_S": "1"}
    load = subprocess.Popen([sys.executable, "-m", "api.cli", "load", str(data)],
                            cwd=Path(__file__).resolve().parents[1], env={**env_base(), **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # Kill the server once the load has written something, and before it is done.
        _wait(lambda: load.poll() is not None or store.counts()["nodes"]["User"] > 0,
              "the load did not start writing")
        assert load.poll() is None, "the load finished before the fault; use more data"
        crash_server.kill()
        _, err = load.communicate(timeout=120)
    finally:
        if load.poll() is None:
            load.kill()
    assert load.returncode == 2, err
    assert "riskgraph: " in err and "cannot be reached" in err and "Traceback" not in err

    crash_server.start()
    again = riskgraph("load", str(data), env=env)
    assert again.returncode == 0, again.stderr
    twice = riskgraph("load", str(data), env=env)  # and once more: idempotent
    assert twice.returncode == 0, twice.stderr
    assert store.counts() == expected
    store.close()


def env_base() -> dict[str, str]:
    import os

    return {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}


def test_bolt_server_lost_while_the_api_serves(crash_server: BoltServer, tmp_path: Path
                                               ) -> None:
    store = _fresh_store(crash_server)
    load_small_graph(store)
    store.close()
    keys, entries = api_keys()
    home = tmp_path / "home"
    api = ApiProcess({**_env(crash_server, home), "RISKGRAPH_API_KEYS": entries,
                      "RISKGRAPH_API_TIMEOUT_S": "6"}, log_path=tmp_path / "api.log").start()
    engine = keys["limit_engine"]
    try:
        assert get(api.url + "/readyz")[0] == 200
        status, before = graphql(api.url, engine, DECIDE, {"id": "u07", "dry": False})
        assert status == 200 and codes(before) == [], before
        assert before["data"]["decideLimit"]["fallback"] is False
        recorded = audit_decisions(home / "audit")
        assert len(recorded) == 1

        crash_server.kill()
        status, body = get(api.url + "/readyz")
        assert status == 503 and json.loads(body)["status"] == "unavailable"
        status, read = graphql(api.url, engine, USER, {"id": "u02"})
        assert status == 200 and codes(read) == ["UNAVAILABLE"], read
        for dry in (True, False):
            status, got = graphql(api.url, engine, DECIDE, {"id": "u07", "dry": dry})
            assert status == 200 and codes(got) == [], got
            d = got["data"]["decideLimit"]
            assert (d["action"], d["fallback"], d["lines"]) == ("keep", True, [])
            assert [r["code"] for r in d["reasons"]] == ["RISK_DATA_UNAVAILABLE"]
            assert d["reasons"][0]["en"] and d["reasons"][0]["zh"]
        # The fallback is not a decision: nothing more in the audit trail.
        assert audit_decisions(home / "audit") == recorded
        assert AuditLog(home / "audit").verify().ok

        crash_server.start()
        _wait(lambda: get(api.url + "/readyz")[0] == 200, "/readyz did not recover")
        status, read = graphql(api.url, engine, USER, {"id": "u02"})
        assert codes(read) == [] and read["data"]["user"]["id"] == "u02"
        status, after = graphql(api.url, engine, DECIDE, {"id": "u07", "dry": False})
        assert codes(after) == [] and after["data"]["decideLimit"]["fallback"] is False
        assert len(audit_decisions(home / "audit")) == 2
        assert api.proc is not None and api.proc.poll() is None
    finally:
        api.stop()


def test_api_killed_during_decisions_loses_no_acknowledged_one(tmp_path: Path) -> None:
    home = tmp_path / "home"
    store = EmbeddedStore(home / "graph")
    store.init()
    load_small_graph(store)
    store.close()
    keys, entries = api_keys()
    env = {"RISKGRAPH_HOME": str(home), "RISKGRAPH_STORE": "embedded",
           "RISKGRAPH_API_KEYS": entries}
    api = ApiProcess(env, log_path=tmp_path / "api.log").start()
    acked: list[tuple[str, int]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client(n: int) -> None:
        users = [f"u{i:02d}" for i in range(1, 13)]
        i = n
        while not stop.is_set():
            uid = users[i % len(users)]
            i += 1
            try:
                status, got = graphql(api.url, keys["limit_engine"], DECIDE,
                                      {"id": uid, "dry": False}, timeout=5)
            except OSError:
                return  # the server is gone: this decision was never acknowledged
            if status == 200 and not codes(got):
                d = got["data"]["decideLimit"]
                with lock:
                    acked.append((d["userId"], iso_to_ms(d["decidedAt"])))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    try:
        for t in threads:
            t.start()
        _wait(lambda: len(acked) >= 60, "fewer than 60 decisions were acknowledged")
        api.kill()
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        api.kill()

    verify = riskgraph("audit", "verify", "--json", env=env)
    assert verify.returncode == 0, verify.stderr
    assert json.loads(verify.stdout)["ok"] is True
    recorded = {(u, ms) for u, ms, applied in audit_decisions(home / "audit") if applied}
    missing = [a for a in acked if a not in recorded]
    assert len(acked) >= 60 and missing == []

    # It starts again over the same data and keeps the chain going.
    api = ApiProcess(env, log_path=tmp_path / "api2.log").start()
    try:
        assert get(api.url + "/readyz")[0] == 200
        status, got = graphql(api.url, keys["limit_engine"], DECIDE, {"id": "u03", "dry": False})
        assert status == 200 and codes(got) == []
    finally:
        api.stop()
    assert AuditLog(home / "audit").verify().records == len(recorded) + 1


def test_loader_killed_then_a_rerun_converges_on_the_embedded_store(
    dataset: tuple[Path, dict[str, dict[str, int]]], tmp_path: Path
) -> None:
    data, expected = dataset
    home = tmp_path / "home"
    load = subprocess.Popen([sys.executable, "-m", "api.cli", "load", str(data)],
                            cwd=Path(__file__).resolve().parents[1],
                            env={**env_base(), "RISKGRAPH_HOME": str(home)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait(lambda: load.poll() is not None or (home / "quarantine").exists()
              or (home / "graph").exists(), "the load did not start")
        time.sleep(0.3)
    finally:
        load.kill()  # SIGKILL, wherever it is
        load.wait(10)
    again = riskgraph("load", str(data), env={"RISKGRAPH_HOME": str(home)})
    assert again.returncode == 0, again.stderr
    store = EmbeddedStore(home / "graph")
    store.init()
    try:
        assert store.counts() == expected
    finally:
        store.close()
