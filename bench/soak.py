"""Soak: hold a target request rate against `riskgraph serve` for a long time, with zero
errors and flat memory.

    .venv/bin/python bench/soak.py [--seconds 600] [--rate 100] [--users 20000]
                                   [--out bench/results/soak.json]

The server is `python -m api.cli serve` in a child process over the embedded store (a
synthetic graph with precomputed scores, bench/api.py's). The load is open-loop: request
i is sent at start + i / rate whatever the answers before it, so a slow server shows as
a missed rate rather than as a quietly lower one. The mix is what the limit engine and
investigators send: decideLimit dry runs (15%), applied decideLimit (5%, each one
fsynced to the audit trail), a user's risk (60%) and linkedAccounts(depth: 2) (20%).
The default rate is 100/s on two cores shared with other work. Before decisions stopped
walking large linked groups (ring_max_size), a decision cost 60 to 100 ms of CPU and 50/s
did not hold (bench/results/soak-*-before-ring-cap.json). The server's resident memory
is sampled every 5 s; "flat" means the median of the last fifth of the run is at most
10% or 50 MB (whichever is larger) above that of the second fifth, the first fifth
being warm-up. At the end the audit chain is
verified and every applied decision acknowledged is looked up in it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import machine_info

DECIDE = ('mutation($id: ID!, $dry: Boolean!) { decideLimit(userId: $id, dryRun: $dry) '
          '{ userId action fallback decidedAt lines { line limit } reasons { code } } }')
RISK = ('query($id: ID!) { user(id: $id) { fraudRisk relationalRisk creditFeatures '
        '{ creditScore income } limits { totalLimit lines { line limit balance } } } }')
LINKED = ('query($id: ID!) { user(id: $id) { linkedAccounts(depth: 2, first: 20) '
          '{ totalCount edges { node { id fraudRisk } } } } }')
# (name, share, query, role, variables beyond the id)
MIX = [
    ("decide_dry", 0.15, DECIDE, "limit_engine", {"dry": True}),
    ("decide_apply", 0.05, DECIDE, "limit_engine", {"dry": False}),
    ("risk", 0.60, RISK, "limit_engine", {}),
    ("linked_d2", 0.20, LINKED, "investigator", {}),
]
WINDOW_S = 10.0
MAX_IN_FLIGHT = 256


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


async def drive(url: str, keys: dict[str, str], users: list[str], rate: float,
                seconds: float, pid: int) -> dict[str, Any]:
    import aiohttp
    import psutil

    rnd = random.Random(11)
    proc = psutil.Process(pid)
    windows: list[dict[str, Any]] = []
    cur: dict[str, Any] = {"sent": 0, "ok": 0, "errors": 0, "lat": []}
    errors: dict[str, int] = {}
    acked: list[tuple[str, str]] = []
    rss: list[tuple[float, int]] = []
    by_op: dict[str, list[float]] = {m[0]: [] for m in MIX}
    in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)
    missed = 0
    shares = [m[1] for m in MIX]
    conn = aiohttp.TCPConnector(limit=MAX_IN_FLIGHT)
    timeout = aiohttp.ClientTimeout(total=30)

    async with aiohttp.ClientSession(connector=conn, timeout=timeout) as session:
        async def one(op: tuple[str, float, str, str, dict[str, Any]], window: dict[str, Any]
                      ) -> None:
            name, _, query, role, extra = op
            body = json.dumps({"query": query, "variables": {"id": rnd.choice(users), **extra}})
            t0 = time.perf_counter()
            try:
                async with session.post(url, data=body, headers={
                        "Authorization": f"Bearer {keys[role]}",
                        "Content-Type": "application/json"}) as r:
                    payload = await r.json()
                    status = r.status
            except Exception as exc:  # every failure is counted
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                window["errors"] += 1
                return
            finally:
                in_flight.release()
            dt = time.perf_counter() - t0
            if status != 200 or payload.get("errors"):
                code = str(status) if status != 200 else ",".join(
                    str((e.get("extensions") or {}).get("code")) for e in payload["errors"])
                errors[code] = errors.get(code, 0) + 1
                window["errors"] += 1
                return
            window["ok"] += 1
            window["lat"].append(dt)
            by_op[name].append(dt)
            if name == "decide_apply":
                d = payload["data"]["decideLimit"]
                acked.append((d["userId"], d["decidedAt"]))

        async def sample_memory() -> None:
            while True:
                rss.append((time.monotonic() - start, proc.memory_info().rss))
                await asyncio.sleep(5.0)

        start = time.monotonic()
        sampler = asyncio.create_task(sample_memory())
        tasks: set[asyncio.Task[None]] = set()
        i = 0
        window_end = start + WINDOW_S
        while True:
            due = start + i / rate
            if due >= start + seconds:
                break
            now = time.monotonic()
            if due > now:
                await asyncio.sleep(due - now)
            if time.monotonic() >= window_end:
                windows.append(cur)
                cur = {"sent": 0, "ok": 0, "errors": 0, "lat": []}
                window_end += WINDOW_S
            if in_flight.locked():
                missed += 1  # the server is MAX_IN_FLIGHT requests behind: not held
                i += 1
                continue
            await in_flight.acquire()
            op = rnd.choices(MIX, weights=shares)[0]
            cur["sent"] += 1
            t = asyncio.create_task(one(op, cur))
            tasks.add(t)
            t.add_done_callback(tasks.discard)
            i += 1
        await asyncio.gather(*tasks)
        windows.append(cur)
        sampler.cancel()
        rss.append((time.monotonic() - start, proc.memory_info().rss))
    elapsed = time.monotonic() - start
    return {"windows": windows, "errors": errors, "acked": acked, "rss": rss,
            "missed": missed, "elapsed": elapsed, "by_op": by_op, "scheduled": i}


def memory_verdict(rss: list[tuple[float, int]]) -> dict[str, Any]:
    """Resident memory of the server over the run: second fifth against last fifth."""
    if len(rss) < 5:
        return {"samples": len(rss), "flat": None}
    n = len(rss)
    second = [v for _, v in rss[n // 5: 2 * n // 5]] or [rss[1][1]]
    last = [v for _, v in rss[4 * n // 5:]]
    a, b = statistics.median(second), statistics.median(last)
    xs = [t for t, _ in rss[n // 5:]]
    ys = [v / 2**20 for _, v in rss[n // 5:]]
    slope = statistics.linear_regression(xs, ys).slope * 60 if len(set(xs)) > 1 else 0.0
    growth = b - a
    return {"samples": n, "rss_start_mb": round(rss[0][1] / 2**20, 1),
            "rss_after_warmup_mb": round(a / 2**20, 1), "rss_end_mb": round(b / 2**20, 1),
            "rss_max_mb": round(max(v for _, v in rss) / 2**20, 1),
            "growth_mb": round(growth / 2**20, 1), "slope_mb_per_min": round(slope, 3),
            "flat": growth <= max(0.10 * a, 50 * 2**20)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=600.0)
    ap.add_argument("--rate", type=float, default=100.0, help="requests per second to hold")
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument("--out", type=Path, default=None,
                    help="default bench/results/soak.json (soak-short.json under 120 s)")
    args = ap.parse_args(argv)
    out = args.out or Path("bench/results/soak.json" if args.seconds >= 120
                           else "bench/results/soak-short.json")

    from api.settings import ROLES, new_api_key
    from bench.api import build_graph
    from limits.audit import AuditLog
    from tests.faults import ApiProcess, iso_to_ms

    load_start = round(os.getloadavg()[0], 2)
    with tempfile.TemporaryDirectory(prefix="riskgraph-soak-") as tmp:
        home = Path(tmp) / "home"
        t0 = time.perf_counter()
        users = build_graph(home / "graph", args.users)
        print(f"graph of {args.users:,} users built in {time.perf_counter() - t0:.1f} s",
              flush=True)
        made = {r: new_api_key(r) for r in ROLES}
        api = ApiProcess({"RISKGRAPH_HOME": str(home),
                          "RISKGRAPH_API_KEYS": ",".join(e for _, e in made.values())},
                         log_path=Path(tmp) / "api.log")
        api.start()
        try:
            assert api.proc is not None
            print(f"holding {args.rate:g} requests/s for {args.seconds:g} s ...", flush=True)
            got = asyncio.run(drive(api.url + "/graphql", {r: k for r, (k, _) in made.items()},
                                    users, args.rate, args.seconds, api.proc.pid))
            server_alive = api.proc.poll() is None
        finally:
            api.stop()
        log = AuditLog(home / "audit")
        verified = log.verify()
        recorded = {(rec["decision"]["user_id"], int(rec["decision"]["decided_at_ms"]))
                    for rec in log.records() if rec["applied"]}
        lost = sum(1 for u, at in got["acked"] if (u, iso_to_ms(at)) not in recorded)

    windows = [w for w in got["windows"] if w["sent"]]
    sent = sum(w["sent"] for w in got["windows"])
    ok = sum(w["ok"] for w in got["windows"])
    errs = sum(w["errors"] for w in got["windows"])
    lat_all = [x for w in got["windows"] for x in w["lat"]]
    per_window = [{"sent": w["sent"], "ok": w["ok"], "errors": w["errors"],
                   "rps": round(w["ok"] / WINDOW_S, 1),
                   "p99_ms": round(pct(w["lat"], 0.99) * 1000, 2)} for w in windows]
    # the last window may be partial; every full one must hold the rate
    full = per_window[:-1] if len(per_window) > 1 else per_window
    held = [w for w in full if w["ok"] >= 0.99 * args.rate * WINDOW_S]
    memory = memory_verdict(got["rss"])
    result = {
        "benchmark": "soak",
        "machine": machine_info(),
        "load_average_1m": {"start": load_start, "end": round(os.getloadavg()[0], 2)},
        "config": {"seconds": args.seconds, "rate": args.rate, "users": args.users,
                   "mix": {m[0]: m[1] for m in MIX}, "store": "embedded",
                   "server": "riskgraph serve, 1 process", "window_s": WINDOW_S},
        "requests": {"scheduled": got["scheduled"], "sent": sent, "ok": ok, "errors": errs,
                     "not_sent_backlog": got["missed"], "error_kinds": got["errors"],
                     "achieved_rps": round(ok / got["elapsed"], 1),
                     "p50_ms": round(pct(lat_all, 0.5) * 1000, 2),
                     "p99_ms": round(pct(lat_all, 0.99) * 1000, 2),
                     "max_ms": round(max(lat_all) * 1000, 2) if lat_all else None},
        "by_operation": {k: {"requests": len(v), "p50_ms": round(pct(v, 0.5) * 1000, 2),
                             "p99_ms": round(pct(v, 0.99) * 1000, 2)}
                         for k, v in got["by_op"].items()},
        "windows_held": f"{len(held)}/{len(full)}",
        "memory": memory,
        "audit": {"applied_acknowledged": len(got["acked"]), "records": verified.records,
                  "chain_ok": verified.ok, "acknowledged_missing": lost},
        "server_alive_at_end": server_alive,
        "windows": per_window,
    }
    result["pass"] = bool(errs == 0 and got["missed"] == 0 and len(held) == len(full)
                          and memory["flat"] is not False and verified.ok and lost == 0
                          and server_alive)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    r = result["requests"]
    print(f"{'seconds':>8}{'target/s':>10}{'held/s':>9}{'requests':>10}{'errors':>8}"
          f"{'p50 ms':>8}{'p99 ms':>8}{'windows':>9}{'rss MB':>14}{'lost':>6}")
    print(f"{got['elapsed']:>8.0f}{args.rate:>10g}{r['achieved_rps']:>9}{ok:>10}{errs:>8}"
          f"{r['p50_ms']:>8}{r['p99_ms']:>8}{result['windows_held']:>9}"
          f"{memory.get('rss_after_warmup_mb', '?')!s:>7}>{memory.get('rss_end_mb', '?')!s:<6}"
          f"{lost:>6}")
    print(f"audit: {verified.records} records, chain ok: {verified.ok}; memory flat: "
          f"{memory['flat']} (slope {memory.get('slope_mb_per_min')} MB/min)")
    print(f"pass: {result['pass']}; wrote {out}")
    return 0 if result["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
