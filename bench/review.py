"""Bulk limit review: users per second, against a baseline run side by side.

Two measurements:

1. engine: decide() over N random profiles held in memory with precomputed scores, on
   one process and on all cores (one worker per core, profiles split in chunks); the
   baseline is a plain loop that only reads every field the engine reads.
2. review: LimitsService.review over an embedded store of M users, in rounds; each round
   runs, side by side on the same store: the baseline that only streams the profiles,
   the dry run, and the recorded review (every decision in the hash-chained audit log,
   synced per batch, then written back) in one process and with --workers processes.
   Each recorded run starts from a fresh copy of the store and an empty audit log.
   Medians over the rounds are reported, with the log's bytes per record, the time of
   `audit verify` and of one `decide` against the log the review left.

3. coverage (``--coverage``): a full ``review --counterfactuals`` (dry run) on a store of
   generated users (``riskgraph generate``, ``load``, ``train``, ``score``, as a new user
   runs them; ``--coverage-home`` reuses a store built so), decided as of the
   generator's date; prints how many users who never missed a payment were kept without
   a raise, and how many of those got neither a counterfactual that improves their
   decision nor a dated reason.

Usage: python bench/review.py [--users 100000] [--store-users 20000] [--rounds 3]
       [--workers N] [--out FILE.json]
       python bench/review.py --coverage [--coverage-users 20000]
       [--coverage-home DIR]
Targets (issue 5): at least 5,000 users/s on 2 cores; 1M users in at most 5 minutes.
Target (issue 16): no on-time user kept without a raise and unexplained.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from limits.engine import decide
from limits.features import DAY_MS, LineState, Profile
from limits.policy import load_policy

NOW = 1_735_689_600_000


def random_profiles(n: int, seed: int) -> list[Profile]:
    rng = np.random.default_rng(seed)
    hist_len = rng.integers(0, 37, n)
    bad = rng.random(n) < 0.15
    out = []
    cols = {
        "credit_score": rng.integers(350, 951, n).astype(float),
        "income": rng.lognormal(11.3, 0.6, n),
        "mob": rng.integers(0, 60, n),
        "util": rng.uniform(0, 1.2, n),
        "txns": rng.gamma(2, 3, n),
        "active": rng.integers(0, 31, n),
        "oblig": rng.exponential(1500, n),
        "fraud": rng.beta(1, 12, n),
        "rel": rng.beta(1, 6, n),
        "limit": np.round(rng.uniform(0, 40_000, n), -2),
        "has_cash": rng.random(n) < 0.3,
        "ring": rng.random(n) < 0.02,
        "last": rng.integers(0, 200, n),
    }
    for i in range(n):
        h = "".join(rng.choice(list("0000000000-1"), int(hist_len[i])))
        if bad[i] and h:
            h = h[:-1] + str(rng.integers(1, 4))
        lines = {"bnpl": LineState(limit=float(cols["limit"][i]), balance=0.0,
                                   last_raise_ms=NOW - int(cols["last"][i]) * DAY_MS)}
        if cols["has_cash"][i]:
            lines["cash_loan"] = LineState(limit=float(cols["limit"][i]) / 2)
        out.append(Profile(
            user_id=f"u{i:08d}", now_ms=NOW, lifecycle="active",
            credit_score=float(cols["credit_score"][i]), income=float(cols["income"][i]),
            months_on_book=int(cols["mob"][i]), repayment_history=h,
            overdue_count=int(bad[i]), worst_dpd=30 * int(bad[i]),
            utilisation=float(cols["util"][i]), monthly_txns=float(cols["txns"][i]),
            active_days_30d=int(cols["active"][i]), obligations=float(cols["oblig"][i]),
            fraud_risk=float(cols["fraud"][i]), relational_risk=float(cols["rel"][i]),
            ring_id="ring:x" if cols["ring"][i] else None, ring_size=5 if cols["ring"][i] else 0,
            lines=lines,
        ))
    return out


def baseline_read(profiles: list[Profile]) -> float:
    acc = 0.0
    for p in profiles:
        acc += (p.months_on_book + p.utilisation + p.monthly_txns + p.obligations
                + (p.income or 0) + (p.credit_score or 0) + len(p.repayment_history)
                + (p.fraud_risk or 0) + (p.relational_risk or 0) + p.ring_size
                + sum(st.limit + st.temp_limit for st in p.lines.values()))
    return acc


def _decide_chunk(args: tuple[int, int, int]) -> tuple[int, dict[str, int], float]:
    n, seed, _ = args
    policy = load_policy()
    profiles = random_profiles(n, seed)
    t = time.perf_counter()
    actions: dict[str, int] = {}
    for p in profiles:
        a = decide(p, policy).action
        actions[a] = actions.get(a, 0) + 1
    return n, actions, time.perf_counter() - t


def timed(fn, *args):  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t


def bench_engine(n: int, workers: int) -> dict[str, float]:
    policy = load_policy()
    profiles = random_profiles(n, 1)
    _, t_base = timed(baseline_read, profiles)
    _, t_one = timed(lambda: [decide(p, policy) for p in profiles])
    chunks = [(n // workers, 100 + k, k) for k in range(workers)]
    t = time.perf_counter()
    with ProcessPoolExecutor(workers) as ex:
        done = list(ex.map(_decide_chunk, chunks))
    t_wall = time.perf_counter() - t
    decide_only = max(d[2] for d in done)  # slowest worker, generation excluded
    m = sum(d[0] for d in done)
    return {
        "profiles": n,
        "baseline_read_users_per_s": n / t_base,
        "engine_1_process_users_per_s": n / t_one,
        f"engine_{workers}_processes_users_per_s": m / decide_only,
        f"engine_{workers}_processes_wall_incl_generation_s": t_wall,
        "engine_vs_baseline_ratio": (n / t_one) / (n / t_base),
        "projected_1M_minutes_on_all_cores": 1_000_000 / (m / decide_only) / 60,
    }


def build_store(path: Path, n: int) -> None:
    from graph.embedded import EmbeddedStore

    store = EmbeddedStore(path)
    store.init()
    profiles = random_profiles(n, 7)
    store.upsert_nodes("Product", {"id": ["p-bnpl", "p-cash"], "kind": ["bnpl", "cash_loan"]})
    store.upsert_nodes("User", {
        "id": [p.user_id for p in profiles],
        "lifecycle": [p.lifecycle for p in profiles],
        "credit_score": [p.credit_score for p in profiles],
        "income": [p.income for p in profiles],
        "months_on_book": [p.months_on_book for p in profiles],
        "repayment_history": [p.repayment_history for p in profiles],
        "overdue_count": [p.overdue_count for p in profiles],
        "worst_dpd": [p.worst_dpd for p in profiles],
        "utilisation": [p.utilisation for p in profiles],
        "monthly_txns": [p.monthly_txns for p in profiles],
        "active_days_30d": [p.active_days_30d for p in profiles],
        "obligations": [p.obligations for p in profiles],
    })
    store.write_scores([p.user_id for p in profiles], {
        "fraud_risk": [p.fraud_risk for p in profiles],
        "relational_risk": [p.relational_risk for p in profiles]}, "bench", NOW)
    src, dst, lim = [], [], []
    for p in profiles:
        for line, st in p.lines.items():
            src.append(p.user_id)
            dst.append("p-bnpl" if line == "bnpl" else "p-cash")
            lim.append(st.limit)
    store.upsert_relationships("HOLDS", {"src": src, "dst": dst, "limit": lim})
    store.close()


def bench_review(n: int, root: Path, rounds: int, workers: int) -> dict[str, object]:
    from api.limits_service import LimitsService
    from graph.embedded import EmbeddedStore
    from limits.audit import AuditLog
    from limits.policy import parse_policy, read_policy_text

    build_store(root / "graph", n)
    text = read_policy_text()[0]
    policy = parse_policy(text)

    def service(graph: Path, audit: Path) -> tuple[LimitsService, EmbeddedStore]:
        store = EmbeddedStore(graph)
        store.init()
        return LimitsService(store, AuditLog(audit), policy, text, clock=lambda: NOW), store

    def recorded(k: int, w: int) -> tuple[float, dict[str, object]]:
        graph, audit = root / f"graph-{k}-{w}", root / f"audit-{k}-{w}"
        shutil.copytree(root / "graph", graph)
        svc, store = service(graph, audit)
        try:
            s, t = timed(lambda: svc.review(workers=w))
            log = AuditLog(audit)
            res, t_verify = timed(log.verify)
            assert res.ok and res.records == n, res
            extra: dict[str, object] = {
                "recorded": s.recorded, "written": s.written,
                "bytes_per_record": log.path.stat().st_size / n,
                "verify_records_per_s": n / t_verify,
            }
            # One decision against the log the review left: the index finds the user.
            lat = []
            for i in range(0, n, max(1, n // 20)):
                _, t1 = timed(lambda i=i: svc.decide(f"u{i:08d}", apply=False))
                lat.append(t1)
            extra["decide_ms_median"] = statistics.median(lat) * 1000
            return t, extra
        finally:
            store.close()
            shutil.rmtree(graph)
            shutil.rmtree(audit)

    svc, store = service(root / "graph", root / "audit-dry")
    t_base: list[float] = []
    t_dry: list[float] = []
    t_rec1: list[float] = []
    t_recw: list[float] = []
    extra: dict[str, object] = {}
    for k in range(rounds):
        t_base.append(timed(lambda: sum(len(b) for b in svc.profiles(NOW)))[1])
        t_dry.append(timed(lambda: svc.review(dry_run=True))[1])
        t, extra = recorded(k, 1)
        t_rec1.append(t)
        t_recw.append(recorded(k, workers)[0])
    store.close()
    med = statistics.median
    return {
        "users": n,
        "rounds": rounds,
        "baseline_stream_profiles_users_per_s": n / med(t_base),
        "review_dry_run_users_per_s": n / med(t_dry),
        "review_recorded_1_process_users_per_s": n / med(t_rec1),
        f"review_recorded_{workers}_workers_users_per_s": n / med(t_recw),
        "review_dry_run_vs_baseline_ratio": med(t_base) / med(t_dry),
        "review_recorded_1_process_vs_dry_run_ratio": med(t_dry) / med(t_rec1),
        f"review_recorded_{workers}_workers_vs_dry_run_ratio": med(t_dry) / med(t_recw),
        "recorded_records": extra["recorded"],
        "recorded_line_writes": extra["written"],
        "audit_bytes_per_record": extra["bytes_per_record"],
        "audit_verify_records_per_s": extra["verify_records_per_s"],
        "decide_one_user_after_review_ms": extra["decide_ms_median"],
        "projected_1M_dry_run_minutes": 1_000_000 / (n / med(t_dry)) / 60,
        f"projected_1M_recorded_{workers}_workers_minutes":
            1_000_000 / (n / med(t_recw)) / 60,
    }


def build_generated_store(home: Path, users: int, seed: int) -> None:
    """Generate, load, train and score, each the real command a user would run."""
    import subprocess

    env = {**os.environ, "RISKGRAPH_HOME": str(home), "RISKGRAPH_STORE": "embedded"}
    data = home / "data"
    for argv in (["generate", "--users", str(users), "--seed", str(seed), "--out", str(data)],
                 ["load", str(data)], ["train", "--task", "user", "--seed", str(seed)],
                 ["score"]):
        subprocess.run([sys.executable, "-m", "api.cli", *argv], env=env, check=True,
                       stdout=subprocess.DEVNULL)


def bench_coverage(home: Path) -> dict[str, object]:
    """Counterfactual coverage of a full review on the store in ``home``."""
    from api.bootstrap import open_store
    from api.limits_service import LimitsService
    from api.settings import Settings
    from limits.audit import AuditLog
    from limits.counterfactuals import is_explained, never_overdue, with_counterfactuals
    from limits.policy import parse_policy, read_policy_text
    from loaders.synthetic import END_MS

    settings = replace(Settings.from_env().with_store("embedded"), home=home)
    text = read_policy_text()[0]
    policy = parse_policy(text)
    store = open_store(settings)
    counts = {"users": 0, "never_overdue": 0, "never_overdue_kept": 0,
              "never_overdue_kept_unexplained": 0, "unexplained_dormant": 0,
              "records_without_counterfactual": 0}
    examples: list[object] = []
    t = time.perf_counter()
    try:
        svc = LimitsService(store, AuditLog(home / "audit-bench"), policy, text,
                            clock=lambda: END_MS)
        for batch in svc.profiles(END_MS):
            for p in batch:
                d = with_counterfactuals(decide(p, policy), policy)
                counts["users"] += 1
                counts["records_without_counterfactual"] += not d.counterfactuals
                if not never_overdue(p):
                    continue
                counts["never_overdue"] += 1
                if d.action != "keep":
                    continue
                counts["never_overdue_kept"] += 1
                if not is_explained(d):
                    counts["never_overdue_kept_unexplained"] += 1
                    counts["unexplained_dormant"] += d.assessment.stage == "dormant"
                    if len(examples) < 5:
                        examples.append([p.user_id, [r.code for r in d.all_reasons]])
    finally:
        store.close()
    return {**counts, "seconds": time.perf_counter() - t, "examples": examples}


def machine() -> dict[str, object]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"platform": platform.platform(), "python": platform.python_version(),
            "cpu": cpu, "cores": os.cpu_count(),
            "loadavg": os.getloadavg() if hasattr(os, "getloadavg") else None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--store-users", type=int, default=20_000)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default="bench/results/review.json")
    ap.add_argument("--coverage", action="store_true",
                    help="measure the counterfactual coverage of a full review instead")
    ap.add_argument("--coverage-users", type=int, default=20_000)
    ap.add_argument("--coverage-home", default=None,
                    help="a RISKGRAPH_HOME with a generated, loaded and scored store to use")
    args = ap.parse_args()
    if args.coverage:
        return coverage_main(args)
    result: dict[str, object] = {"machine": machine()}
    result["engine"] = bench_engine(args.users, args.workers)
    with tempfile.TemporaryDirectory() as tmp:
        result["review"] = bench_review(args.store_users, Path(tmp), args.rounds,
                                        args.workers)
    result["loadavg_after"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(f"machine: {result['machine']}; load average after: {result['loadavg_after']}")
    for part in ("engine", "review"):
        print(f"\n{part}")
        for k, v in result[part].items():  # type: ignore[attr-defined]
            print(f"  {k:<52}{v:>14,.2f}" if isinstance(v, float) else f"  {k:<52}{v:>14,}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"\nwritten {args.out}")
    return 0


def coverage_main(args: argparse.Namespace) -> int:
    result: dict[str, object] = {"machine": machine()}
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(args.coverage_home) if args.coverage_home else Path(tmp)
        if not args.coverage_home:
            build_generated_store(home, args.coverage_users, 7)
        result["coverage"] = cov = bench_coverage(home)
    print(f"machine: {result['machine']}")
    for k, v in cov.items():
        print(f"  {k:<40}{v:>14,.1f}" if isinstance(v, float) else f"  {k:<40}{v}")
    out = Path(args.out if args.out != "bench/results/review.json"
               else "bench/results/coverage.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"\nwritten {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
