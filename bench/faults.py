"""Faults, repeated: each scenario of tests/test_faults.py run again and again, counting
what survived and what was lost.

    .venv/bin/python bench/faults.py [--seconds 300] [--users 3000]
                                     [--out bench/results/faults.json]

Scenarios, in turn until the time is up (each at least once):

* load_kill: the Bolt server (ArcadeDB) is killed with SIGKILL while `riskgraph load`
  writes; the load must stop with exit code 2 and a message; the server is started
  again and the load re-run; the graph must then have exactly the counts of a clean
  load (nothing lost, nothing twice).
* serve_kill: the Bolt server is killed while `riskgraph serve` answers a stream of
  requests; while it is down every answer must be UNAVAILABLE (reads, /readyz 503) or
  the decideLimit fallback (keep, RISK_DATA_UNAVAILABLE), never anything else; the
  fallback must add nothing to the audit trail; after the restart the API must be
  ready again by itself.
* api_kill: `riskgraph serve` is killed with SIGKILL during a stream of applied
  decisions from 4 clients; `riskgraph audit verify` must pass and every decision
  acknowledged to a client must be in the log; the API must start again on the data.
* store_damage: the embedded store's file is overwritten with zeros while `riskgraph
  serve` answers; every answer must be UNAVAILABLE or the decideLimit fallback, never
  INTERNAL, /readyz 503; the file restored, /readyz must be 200 again without a restart.
* audit_tamper: applied decisions through the API with RISKGRAPH_AUDIT_KEY set, then the
  log attacked as a writer without the key would (newest records deleted, the log
  emptied, a record deleted and the rest re-chained, a forged record appended): every
  attack must fail `riskgraph audit verify` (with the number missing where records went).
* hostile_requests: a 180-level chain of fragments (each spreading the next twice), a
  lone surrogate, a 100,000-deep JSON body: each answered with a code (never INTERNAL)
  and in less than a second, while /healthz keeps answering.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import machine_info
from tests.faults import (
    DECIDE,
    ROOT,
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

USERS = [f"u{i:02d}" for i in range(1, 13)]


def bolt_env(server: Any, home: Path) -> dict[str, str]:
    return {"RISKGRAPH_HOME": str(home), "RISKGRAPH_STORE": "neo4j",
            "RISKGRAPH_NEO4J_URI": server.uri, "RISKGRAPH_NEO4J_USER": server.user,
            "RISKGRAPH_NEO4J_PASSWORD": server.password,
            "RISKGRAPH_NEO4J_DATABASE": server.database}


def fresh_store(server: Any) -> Any:
    from graph.neo4j_store import Neo4jStore, connect

    store = Neo4jStore(connect(server.uri, server.user, server.password), owns_driver=True)
    store.init()
    store.clear()
    return store


def wait_for(cond: Any, limit_s: float = 60.0) -> bool:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        try:
            if cond():
                return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


def load_kill(server: Any, data: Path, expected: dict[str, Any], work: Path) -> dict[str, Any]:
    store = fresh_store(server)
    env = {**bolt_env(server, work / "home"), "RISKGRAPH_NEO4J_RETRY_S": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "api.cli", "load", str(data)], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT), **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: proc.poll() is not None or store.counts()["nodes"]["User"] > 0)
    in_flight = proc.poll() is None
    server.kill()
    _, err = proc.communicate(timeout=180)
    stopped_clearly = proc.returncode == 2 and "riskgraph: " in err and "Traceback" not in err
    server.start()
    rerun = riskgraph("load", str(data), env=env, timeout=600)
    counts = store.counts()
    store.close()
    lost = sum(max(0, expected[k][t] - counts[k][t]) for k in expected for t in expected[k])
    extra = sum(max(0, counts[k][t] - expected[k][t]) for k in expected for t in expected[k])
    return {"killed_mid_load": in_flight, "stopped_with_message": stopped_clearly,
            "rerun_ok": rerun.returncode == 0, "records_lost": lost, "duplicates": extra,
            "ok": in_flight and stopped_clearly and rerun.returncode == 0 and lost == extra == 0}


def serve_kill(server: Any, work: Path) -> dict[str, Any]:
    from tests.api_graph import load_small_graph

    store = fresh_store(server)
    load_small_graph(store)
    store.close()
    keys, entries = api_keys()
    home = work / "home"
    api = ApiProcess({**bolt_env(server, home), "RISKGRAPH_API_KEYS": entries,
                      "RISKGRAPH_API_TIMEOUT_S": "6"}, log_path=work / "api.log").start()
    key = keys["limit_engine"]
    seen: dict[str, int] = {}
    try:
        before = len(audit_decisions(home / "audit"))
        server.kill()
        down_ready = get(api.url + "/readyz")[0]
        for i in range(12):
            uid = USERS[i % len(USERS)]
            _, r = graphql(api.url, key, USER, {"id": uid})
            seen["read:" + (",".join(codes(r)) or "ok")] = \
                seen.get("read:" + (",".join(codes(r)) or "ok"), 0) + 1
            _, d = graphql(api.url, key, DECIDE, {"id": uid, "dry": i % 2 == 0})
            dec = (d.get("data") or {}).get("decideLimit") or {}
            tag = "decide:" + ("fallback" if dec.get("fallback") and
                               [x["code"] for x in dec["reasons"]] == ["RISK_DATA_UNAVAILABLE"]
                               and dec["action"] == "keep" else ",".join(codes(d)) or "other")
            seen[tag] = seen.get(tag, 0) + 1
        unchanged = len(audit_decisions(home / "audit")) == before
        server.start()
        recovered = wait_for(lambda: get(api.url + "/readyz")[0] == 200)
        _, after = graphql(api.url, key, DECIDE, {"id": "u07", "dry": False})
        works = codes(after) == [] and after["data"]["decideLimit"]["fallback"] is False
    finally:
        api.stop()
    good = {"read:UNAVAILABLE", "decide:fallback"}
    return {"readyz_while_down": down_ready, "answers_while_down": seen,
            "audit_unchanged_by_fallback": unchanged, "recovered_by_itself": recovered,
            "decides_after_recovery": works,
            "ok": down_ready == 503 and set(seen) <= good and unchanged and recovered and works}


def api_kill(work: Path, target_acks: int = 60) -> dict[str, Any]:
    from graph.embedded import EmbeddedStore
    from tests.api_graph import load_small_graph

    home = work / "home"
    store = EmbeddedStore(home / "graph")
    store.init()
    load_small_graph(store)
    store.close()
    keys, entries = api_keys()
    env = {"RISKGRAPH_HOME": str(home), "RISKGRAPH_STORE": "embedded",
           "RISKGRAPH_API_KEYS": entries}
    api = ApiProcess(env, log_path=work / "api.log").start()
    acked: list[tuple[str, int]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client(n: int) -> None:
        i = n
        while not stop.is_set():
            uid = USERS[i % len(USERS)]
            i += 1
            try:
                status, got = graphql(api.url, keys["limit_engine"], DECIDE,
                                      {"id": uid, "dry": False}, timeout=5)
            except OSError:
                return
            if status == 200 and not codes(got):
                d = got["data"]["decideLimit"]
                with lock:
                    acked.append((d["userId"], iso_to_ms(d["decidedAt"])))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    wait_for(lambda: len(acked) >= target_acks)
    api.kill()
    stop.set()
    for t in threads:
        t.join(10)
    verify = riskgraph("audit", "verify", "--json", env=env)
    chain_ok = verify.returncode == 0 and json.loads(verify.stdout)["ok"] is True
    recorded = {(u, ms) for u, ms, applied in audit_decisions(home / "audit") if applied}
    missing = sum(1 for a in acked if a not in recorded)
    api = ApiProcess(env, log_path=work / "api2.log").start()
    try:
        restarted = get(api.url + "/readyz")[0] == 200 and not codes(graphql(
            api.url, keys["limit_engine"], DECIDE, {"id": "u03", "dry": False})[1])
    finally:
        api.stop()
    return {"acknowledged": len(acked), "recorded": len(recorded), "missing": missing,
            "chain_ok": chain_ok, "restarted": restarted,
            "ok": chain_ok and missing == 0 and restarted and len(acked) >= target_acks}


def _embedded_api(work: Path, extra: dict[str, str] | None = None
                  ) -> tuple[ApiProcess, dict[str, str], dict[str, str], Path]:
    from graph.embedded import EmbeddedStore
    from tests.api_graph import load_small_graph

    home = work / "home"
    store = EmbeddedStore(home / "graph")
    store.init()
    load_small_graph(store)
    store.close()
    keys, entries = api_keys()
    env = {"RISKGRAPH_HOME": str(home), "RISKGRAPH_STORE": "embedded",
           "RISKGRAPH_API_KEYS": entries, "RISKGRAPH_API_WORKERS": "1", **(extra or {})}
    return ApiProcess(env, log_path=work / "api.log").start(), keys, env, home


def store_damage(work: Path) -> dict[str, Any]:
    api, keys, _, home = _embedded_api(work)
    db = home / "graph" / "graph.sqlite"
    seen: dict[str, int] = {}
    try:
        good = db.read_bytes()
        db.write_bytes(b"\0" * len(good))
        for i in range(20):
            uid = USERS[i % len(USERS)]
            status, got = graphql(api.url, keys["investigator"], USER, {"id": uid})
            key = "read:" + (",".join(codes(got)) or "answered")
            seen[key] = seen.get(key, 0) + 1
            status, got = graphql(api.url, keys["limit_engine"], DECIDE,
                                  {"id": uid, "dry": False})
            fell_back = not codes(got) and got["data"]["decideLimit"]["fallback"]
            key = "decide:" + ("fallback" if fell_back else ",".join(codes(got)) or "decided")
            seen[key] = seen.get(key, 0) + 1
        ready_down = get(api.url + "/readyz")[0]
        db.write_bytes(good)
        recovered = wait_for(lambda: get(api.url + "/readyz")[0] == 200, 15)
    finally:
        api.stop()
    good_answers = {"read:UNAVAILABLE", "decide:fallback"}
    return {"answers_while_damaged": seen, "readyz_while_damaged": ready_down,
            "recovered_by_itself": recovered,
            "ok": set(seen) <= good_answers and ready_down == 503 and recovered}


def audit_tamper(work: Path, decisions: int = 12) -> dict[str, Any]:
    from limits.audit import GENESIS, canonical, record_hash

    key = os.urandom(16).hex()
    api, keys, env, home = _embedded_api(work, {"RISKGRAPH_AUDIT_KEY": key})
    try:
        for i in range(decisions):
            graphql(api.url, keys["limit_engine"], DECIDE,
                    {"id": USERS[i % len(USERS)], "dry": False})
    finally:
        api.stop()
    log = home / "audit" / "decisions.jsonl"
    original = log.read_bytes()
    n = original.count(b"\n")

    def rechain(recs: list[dict[str, Any]]) -> bytes:
        out, prev = [], GENESIS
        for seq, rec in enumerate(recs):
            rec = {k: v for k, v in rec.items() if k not in ("hash", "mac")}
            rec["seq"], rec["prev_hash"] = seq, prev
            rec["hash"] = prev = record_hash(rec)
            out.append(canonical(rec) + "\n")
        return "".join(out).encode()

    records = [json.loads(x) for x in original.splitlines()]
    forged = {**records[-1], "decision": {**records[-1]["decision"], "user_id": "forged"}}
    attacks = {
        "delete_newest_3": (b"".join(original.splitlines(keepends=True)[:-3]), 3),
        "empty": (b"", n),
        "delete_and_rechain": (rechain(records[:2] + records[3:]), None),
        "append_forged": (original + rechain([*records, forged]).splitlines(
            keepends=True)[-1], None),
    }
    outcome: dict[str, Any] = {}
    for name, (content, missing) in attacks.items():
        log.write_bytes(content)
        done = riskgraph("audit", "verify", "--json", env=env)
        got = json.loads(done.stdout)
        outcome[name] = {"exit": done.returncode, "missing": got.get("missing"),
                         "error": got.get("error"),
                         "found": done.returncode == 1 and (missing is None
                                                           or got.get("missing") == missing)}
        log.write_bytes(original)
    intact = riskgraph("audit", "verify", "--json", env=env).returncode == 0
    return {"records": n, "attacks": outcome, "intact_after_restore": intact,
            "ok": intact and all(v["found"] for v in outcome.values())}


def hostile_requests(work: Path) -> dict[str, Any]:
    import urllib.request

    api, keys, _, _ = _embedded_api(work)
    levels = 180
    bomb = "\n".join(["query { me { ...F0 } }"]
                     + [f"fragment F{i} on Caller {{ ...F{i + 1} ...F{i + 1} }}"
                        for i in range(levels)] + [f"fragment F{levels} on Caller {{ role }}"])
    deep = (b'{"query": "{ me { role } }", "variables": {"x": ' + b"[" * 100_000
            + b"]" * 100_000 + b"}}")
    surrogate = json.dumps({"query": USER, "variables": {"id": "\ud800"}}).encode()
    out: dict[str, Any] = {}
    try:
        for name, body in (("fragment_chain_180", json.dumps({"query": bomb}).encode()),
                           ("deep_json_100k", deep), ("lone_surrogate", surrogate)):
            times, answers = [], set()
            for _ in range(5):
                req = urllib.request.Request(api.url + "/graphql", data=body, method="POST",
                                             headers={"Authorization":
                                                      f"Bearer {keys['admin']}",
                                                      "Content-Type": "application/json"})
                t0 = time.perf_counter()
                try:
                    with urllib.request.urlopen(req, timeout=30) as r:
                        payload = json.loads(r.read())
                except urllib.error.HTTPError as e:
                    payload = json.loads(e.read() or b"{}")
                times.append(time.perf_counter() - t0)
                answers.add(",".join(codes(payload)) or "answered")
            times.sort()
            out[name] = {"median_ms": round(times[len(times) // 2] * 1000, 1),
                         "max_ms": round(times[-1] * 1000, 1), "answers": sorted(answers)}
        healthy = get(api.url + "/healthz")[0] == 200
    finally:
        api.stop()
    return {"requests": out, "healthy": healthy,
            "ok": healthy and all(v["max_ms"] < 1000 and "INTERNAL" not in ",".join(v["answers"])
                                  and v["answers"] != ["answered"] for v in out.values())}


NEEDS_BOLT = ("load_kill", "serve_kill")
SCENARIOS = ("load_kill", "serve_kill", "api_kill", "store_damage", "audit_tamper",
             "hostile_requests")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=300.0,
                    help="keep repeating the scenarios this long (each runs at least once)")
    ap.add_argument("--users", type=int, default=3000, help="users in the loaded data set")
    ap.add_argument("--only", nargs="+", choices=SCENARIOS, default=list(SCENARIOS),
                    help="run these scenarios only (default: all)")
    ap.add_argument("--out", type=Path, default=None,
                    help="default bench/results/faults.json (faults-short.json under 120 s)")
    args = ap.parse_args(argv)
    out = args.out or Path("bench/results/faults.json" if args.seconds >= 120
                           else "bench/results/faults-short.json")

    from graph.embedded import EmbeddedStore
    from tests.bolt_server import BoltServer

    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in args.only}
    bolt = any(name in NEEDS_BOLT for name in runs)
    rows = 0
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="riskgraph-faults-") as tmp:
        root = Path(tmp)
        data = root / "data"
        expected: dict[str, Any] = {}
        if "load_kill" in runs:
            made = riskgraph("generate", "--users", str(args.users), "--seed", "3", "--out",
                             str(data), env={})
            assert made.returncode == 0, made.stderr
            ref_home = root / "ref"
            done = riskgraph("load", str(data), env={"RISKGRAPH_HOME": str(ref_home)},
                             timeout=600)
            assert done.returncode == 0, done.stderr
            ref = EmbeddedStore(ref_home / "graph")
            ref.init()
            expected = ref.counts()
            ref.close()
            rows = sum(expected["nodes"].values()) + sum(expected["relationships"].values())
        server = BoltServer(root=root / "bolt", heap="-Xmx768m").start() if bolt else None
        try:
            n = 0
            while n == 0 or time.monotonic() - started < args.seconds:
                for name in runs:
                    work = root / f"{name}-{n}"
                    work.mkdir()
                    t0 = time.monotonic()
                    if name == "load_kill":
                        got = load_kill(server, data, expected, work)
                    elif name == "serve_kill":
                        got = serve_kill(server, work)
                    elif name == "api_kill":
                        got = api_kill(work)
                    else:
                        got = SCENARIO_RUN[name](work)
                    got["seconds"] = round(time.monotonic() - t0, 1)
                    runs[name].append(got)
                    print(f"{name} #{n + 1}: {'ok' if got['ok'] else 'FAILED'} "
                          f"({got['seconds']} s)", flush=True)
                n += 1
        finally:
            if server is not None:
                server.stop()

    summary: dict[str, dict[str, Any]] = {
        name: {"runs": len(r), "survived": sum(x["ok"] for x in r)} for name, r in runs.items()}
    if "load_kill" in runs:
        summary["load_kill"].update(
            rows_per_load=rows, records_lost=sum(r["records_lost"] for r in runs["load_kill"]),
            duplicates=sum(r["duplicates"] for r in runs["load_kill"]))
    if "serve_kill" in runs:
        summary["serve_kill"].update(
            requests_while_down=sum(sum(r["answers_while_down"].values())
                                    for r in runs["serve_kill"]),
            unexpected_answers=sum(sum(v for k, v in r["answers_while_down"].items()
                                       if k not in ("read:UNAVAILABLE", "decide:fallback"))
                                   for r in runs["serve_kill"]))
    if "api_kill" in runs:
        summary["api_kill"].update(
            acknowledged=sum(r["acknowledged"] for r in runs["api_kill"]),
            missing=sum(r["missing"] for r in runs["api_kill"]))
    result = {"benchmark": "faults", "machine": machine_info(),
              "load_average_1m": round(os.getloadavg()[0], 2),
              "config": {"seconds": args.seconds, "users": args.users},
              "summary": summary, "runs": runs,
              "pass": all(s["survived"] == s["runs"] for s in summary.values())}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{'scenario':<18}{'runs':>6}{'survived':>10}  detail")
    for name, sm in summary.items():
        detail = ", ".join(f"{k} {v}" for k, v in sm.items() if k not in ("runs", "survived"))
        print(f"{name:<18}{sm['runs']:>6}{sm['survived']:>10}  {detail}")
    print(f"pass: {result['pass']}; wrote {out}")
    return 0 if result["pass"] else 1


SCENARIO_RUN = {"store_damage": store_damage, "audit_tamper": audit_tamper,
                "hostile_requests": hostile_requests}


if __name__ == "__main__":
    sys.exit(main())
