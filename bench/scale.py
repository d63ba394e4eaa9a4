"""Scale benchmark (issue 17): the Neo4j path against the embedded store on the same
data, and distributed batch work against one worker.

For each size in ``--sizes`` a synthetic ecosystem is generated once and loaded into an
embedded store and into a Bolt server (ArcadeDB, tests/bolt_server.py, or the server at
``--neo4j-uri``); a model is trained once on the embedded store. Then, side by side:

* per request (largest size): ``linked --depth 2`` and a ``decideLimit`` dry run over the
  same sampled users on both stores (medians, p99); the Neo4j walk over primitives (what
  ``linked`` cost before it became one statement) for reference;
* whole graph (largest size): rings, score (``riskgraph score``) and review (dry run) on
  both stores;
* export (every size): the GNN export (gnn.tensors.export_graph) on the Neo4j store,
  seconds per million rows read, to check the cost is linear in rows;
* distributed (largest size, embedded store): ``score`` and ``review`` in 2 partitions on
  a local Ray cluster of 1 then 2 worker slots (the same work, spread or not), the
  cluster started before timing (its start-up is reported apart); scores checked
  against the single-process run (within 1e-6), and the users each worker held and its
  peak memory with 2 and 4 partitions.

Prints a table and writes JSON (with the machine and the load average) to
bench/results/scale.json; each target has ``target_met``.

    .venv/bin/python bench/scale.py --sizes 20000            # development
    .venv/bin/python bench/scale.py --sizes 20000,100000     # the issue's targets
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, bench/ comes first on the path, and bench/gnn.py would hide gnn/.
sys.path[:] = [str(ROOT)] + [p for p in sys.path
                             if Path(p or ".").resolve() not in (ROOT, ROOT / "bench")]

from bench.dataset import load_generated  # noqa: E402
from bench.machine import machine_info  # noqa: E402

DEFAULT_OUT = ROOT / "bench" / "results" / "scale.json"
NOW = 1_735_689_600_000


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def _latency(fn: Callable[[str], Any], users: list[str]) -> dict[str, float]:
    times = []
    for u in users:
        t = time.perf_counter()
        fn(u)
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return {"median_ms": round(statistics.median(times), 3),
            "p99_ms": round(times[min(len(times) - 1, int(len(times) * 0.99))], 3),
            "n": len(times)}


class World:
    """One generated size, in both stores, with a trained model."""

    def __init__(self, users: int, seed: int, work: Path, bolt: Any, epochs: int) -> None:
        from gnn import pipeline
        from graph import linkindex
        from graph.embedded import EmbeddedStore
        from graph.neo4j_store import Neo4jStore, connect
        from loaders.synthetic import GeneratorConfig, generate

        self.users = users
        self.home = work / f"home-{users}"
        data = work / f"data-{users}"
        generate(GeneratorConfig(users=users, seed=seed), data, "parquet")
        self.embedded = EmbeddedStore(self.home / "graph")
        self.embedded.init()
        self.load_s = {"embedded": _timed(lambda: load_generated(self.embedded, data))[0]}
        linkindex.refresh(self.embedded)
        self.driver = connect(bolt["uri"], bolt["user"], bolt["password"])
        self.neo4j = Neo4jStore(self.driver, database=bolt["database"])
        self.neo4j.init()
        self.neo4j.clear()
        self.load_s["neo4j"] = _timed(lambda: load_generated(self.neo4j, data))[0]
        self.rows = sum(self.embedded.counts()["relationships"].values())
        self.version, _ = pipeline.train_users(self.embedded, self.home / "models", "random",
                                               seed=0, max_epochs=epochs)

    def store(self, name: str) -> Any:
        return self.embedded if name == "embedded" else self.neo4j

    def close(self) -> None:
        self.embedded.close()
        self.neo4j.clear()
        self.driver.close()


def _service(store: Any, audit: Path) -> Any:
    from api.limits_service import LimitsService
    from limits.audit import AuditLog
    from limits.policy import parse_policy, read_policy_text

    text = read_policy_text()[0]
    return LimitsService(store, AuditLog(audit), parse_policy(text), text)


def per_request(w: World, queries_n: int, seed: int) -> dict[str, Any]:
    from graph import queries

    ids = w.embedded.node_ids("User", limit=w.users + 1)
    users = random.Random(seed).sample(ids, min(queries_n, len(ids)))
    out: dict[str, Any] = {"users_sampled": len(users)}
    same = all(queries.linked_accounts(w.embedded, u, depth=2)
               == queries.linked_accounts(w.neo4j, u, depth=2) for u in users[:50])
    for name in ("embedded", "neo4j"):
        s = w.store(name)
        svc = _service(s, w.home / f"audit-request-{name}")
        out[name] = {
            "linked_depth2": _latency(lambda u, s=s: queries.linked_accounts(s, u, depth=2),
                                      users),
            "decide_limit": _latency(lambda u, svc=svc: svc.decide(
                u, apply=False, counterfactuals=False), users),
        }
    out["neo4j_primitives_linked_depth2"] = _latency(
        lambda u: queries.linked_accounts_from_primitives(w.neo4j, u, depth=2),
        users[: max(20, len(users) // 5)])
    out["same_linked_answers"] = same
    for k in ("linked_depth2", "decide_limit"):
        out[f"{k}_ratio"] = round(out["neo4j"][k]["median_ms"]
                                  / out["embedded"][k]["median_ms"], 2)
    return out


def whole_graph(w: World) -> dict[str, Any]:
    from gnn import pipeline
    from graph import queries

    out: dict[str, Any] = {}
    for name in ("embedded", "neo4j"):
        s = w.store(name)
        svc = _service(s, w.home / f"audit-review-{name}")
        rings_s, found = _timed(lambda s=s: queries.rings(s, min_size=3))
        score_s, _ = _timed(lambda s=s: pipeline.score_all(s, w.home / "models", w.version))
        review_s, summary = _timed(lambda svc=svc: svc.review(dry_run=True))
        out[name] = {"rings_s": round(rings_s, 2), "rings": len(found),
                     "score_s": round(score_s, 2), "review_s": round(review_s, 2),
                     "review_users": summary.users}
    for k in ("rings_s", "score_s", "review_s"):
        out[k.replace("_s", "_ratio")] = round(out["neo4j"][k] / out["embedded"][k], 2)
    return out


def export_cost(w: World) -> dict[str, Any]:
    return export_measure(w.neo4j, w.users, w.rows)


def export_measure(store: Any, users: int, rows: int) -> dict[str, Any]:
    """The GNN export from ``store``: wall and client CPU seconds per row, and the
    payload (string lengths and 8 bytes per number) per row read."""
    from gnn.features import PAID_EXPORT_PROPS, USER_EXPORT_PROPS
    from gnn.tensors import export_graph
    from graph.model import SHARED_ITEM_RELS, USER_USER_RELS

    cpu = time.process_time()
    seconds, g = _timed(lambda: export_graph(store))
    cpu = time.process_time() - cpu
    payload = 0
    read = 0
    tables = [("User", None, list(USER_EXPORT_PROPS))] + [
        (None, t, ["src", "dst"]) for t in (*SHARED_ITEM_RELS, *USER_USER_RELS)] + [
        (None, "PAID", ["src", *PAID_EXPORT_PROPS])]
    for label, rel, cols in tables:
        chunks = (store.export_nodes(label, cols) if label
                  else store.export_relationship_columns(rel, cols))
        for chunk in chunks:
            read += len(next(iter(chunk.values())))
            for arr in chunk.values():
                payload += sum(len(v) if isinstance(v, str) else 8 for v in arr.tolist())
    return {"users": users, "relationship_rows": rows, "rows_read": read,
            "rows_read_per_user": round(read / max(1, users), 2),
            "seconds": round(seconds, 2), "client_cpu_s": round(cpu, 2),
            "s_per_million_rows": round(seconds / max(1, read) * 1e6, 2),
            "client_cpu_us_per_row": round(cpu / max(1, read) * 1e6, 2),
            "payload_bytes_per_row": round(payload / max(1, read), 1),
            "exported_users": g.n_users}


def _scores(store: Any) -> dict[str, np.ndarray]:
    names = ["fraud_risk", "own_risk", "relational_risk", "scored_at"]
    chunks = list(store.export_nodes("User", names))
    return {k: np.concatenate([c[k] for c in chunks]) for k in ["id", *names]}


def distributed_runs(w: World) -> dict[str, Any]:
    from api import distributed
    from api.settings import Settings
    from gnn import pipeline
    from limits.policy import parse_policy, read_policy_text

    settings = Settings(home=w.home, store="embedded")
    pipeline.score_all(w.embedded, w.home / "models", w.version)
    reference = _scores(w.embedded)
    text = read_policy_text()[0]
    policy = parse_policy(text)
    out: dict[str, Any] = {}
    for workers in (1, 2):
        start_s = time.perf_counter()
        with distributed.cluster(None, workers):
            started = time.perf_counter() - start_s
            runs = {}
            # the same partitions on one worker and on two: the same work, spread or not
            for parts in ([2] if workers == 1 else [2, 4]):
                run = distributed.score(settings, w.home / "models", w.version,
                                        partitions=parts, scored_at_ms=NOW + parts)
                runs[f"score_{parts}_partitions"] = run.to_dict()
            got = _scores(w.embedded)
            worst = max(float(np.max(np.abs(got[k] - reference[k])))
                        for k in ("fraud_risk", "own_risk", "relational_risk"))
            summary, review_run = distributed.review(settings, policy, text, dry_run=True,
                                                     partitions=2, at_ms=NOW)
            runs["review"] = review_run.to_dict() | {"users": summary.users}
        out[f"workers_{workers}"] = {"cluster_start_s": round(started, 2),
                                     "max_abs_score_difference": worst, **runs}
    one, two = out["workers_1"], out["workers_2"]
    out["score_speedup"] = round(one["score_2_partitions"]["seconds"]
                                 / two["score_2_partitions"]["seconds"], 2)
    out["review_speedup"] = round(one["review"]["seconds"] / two["review"]["seconds"], 2)
    return out


def targets(result: dict[str, Any]) -> dict[str, Any]:
    req, whole, dist = result["per_request"], result["whole_graph"], result["distributed"]
    exports = result["export"]
    t: dict[str, Any] = {
        "linked_depth2_at_most_3x": {"ratio": req["linked_depth2_ratio"],
                                     "target_met": req["linked_depth2_ratio"] <= 3},
        "decide_limit_at_most_3x": {"ratio": req["decide_limit_ratio"],
                                    "target_met": req["decide_limit_ratio"] <= 3},
    }
    for k in ("rings", "score", "review"):
        r = whole[f"{k}_ratio"]
        t[f"{k}_at_most_2x"] = {"ratio": r, "users": result["largest"], "target_met": r <= 2}
    if len(exports) >= 2:
        lo, hi = exports[0], exports[-1]
        growth = hi["s_per_million_rows"] / lo["s_per_million_rows"]  # per row read
        # linear: the cost per row at the large size within 1.5x of the small size's
        t["export_linear_in_rows"] = {"per_row_cost_ratio": round(growth, 2),
                                      "sizes": [lo["users"], hi["users"]],
                                      "target_met": growth <= 1.5}
    worst = max(dist["workers_1"]["max_abs_score_difference"],
                dist["workers_2"]["max_abs_score_difference"])
    t["distributed_scores_equal"] = {"max_abs_difference": worst, "target_met": worst <= 1e-6}
    for k in ("score", "review"):
        t[f"distributed_{k}_2_workers_1_6x"] = {"speedup": dist[f"{k}_speedup"],
                                               "target_met": dist[f"{k}_speedup"] >= 1.6}
    # A worker holds its partition and the neighbours their scores need: bounded by the
    # partition when the users it reads shrink with it and stay below the graph's.
    w2 = dist["workers_2"]
    read = {p: w2[f"score_{p}_partitions"]["max_read_users"] for p in (2, 4)}
    peaks = {p: w2[f"score_{p}_partitions"]["max_peak_rss_mb"] for p in (2, 4)}
    t["worker_memory_bounded_by_partition"] = {
        "read_users_by_partitions": read, "peak_rss_mb_by_partitions": peaks,
        "graph_users": result["largest"],
        "target_met": read[4] < read[2] < result["largest"] and peaks[4] <= peaks[2]}
    return t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="20000", help="users per size, comma-separated")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--queries", type=int, default=300, help="users per latency sample")
    ap.add_argument("--epochs", type=int, default=30, help="training epochs (the model's "
                    "quality does not matter here, only its cost)")
    ap.add_argument("--neo4j-uri", default=None, help="an existing Bolt server (user root, "
                    "password from --neo4j-password), else one is started")
    ap.add_argument("--neo4j-password", default="")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--targets-only", action="store_true",
                    help="recompute the targets of the result file --out, and print them")
    args = ap.parse_args(argv)
    if args.targets_only:
        result = json.loads(args.out.read_text())
        result["targets"] = targets(result)
        args.out.write_text(json.dumps(result, indent=2))
        _print_targets(result, args.out)
        return 0
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    sizes = [int(s) for s in args.sizes.split(",")]
    work = Path(tempfile.mkdtemp(prefix="riskgraph-scale-"))
    server = None
    if args.neo4j_uri:
        bolt = {"uri": args.neo4j_uri, "user": "root", "password": args.neo4j_password,
                "database": "neo4j"}
    else:
        from tests.bolt_server import BoltServer

        server = BoltServer(root=work / "bolt").start()
        bolt = {"uri": server.uri, "user": server.user, "password": server.password,
                "database": server.database}
    result: dict[str, Any] = {"machine": machine_info(), "started": datetime.now(UTC)
                              .isoformat(timespec="seconds"), "load_before": _load(),
                              "sizes": sizes, "largest": max(sizes), "export": []}
    try:
        for users in sorted(sizes):
            print(f"-- {users:,} users: generating, loading, training", flush=True)
            w = World(users, args.seed, work, bolt, args.epochs)
            result.setdefault("load_s", {})[str(users)] = {
                k: round(v, 1) for k, v in w.load_s.items()} | {"rows": w.rows}
            result["export"].append(export_cost(w))
            print(f"   export {result['export'][-1]}", flush=True)
            if users == max(sizes):
                result["per_request"] = per_request(w, args.queries, args.seed)
                print(f"   per request {result['per_request']}", flush=True)
                result["whole_graph"] = whole_graph(w)
                print(f"   whole graph {result['whole_graph']}", flush=True)
                result["distributed"] = distributed_runs(w)
                print(f"   distributed {json.dumps(result['distributed'])}", flush=True)
            w.close()
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    result["load_after"] = _load()
    result["targets"] = targets(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    _print_targets(result, args.out)
    return 0


def _print_targets(result: dict[str, Any], out: Path) -> None:
    print(f"\n{'target':<40}{'figure':>28}  met")
    for name, t in result["targets"].items():
        figure = {k: v for k, v in t.items() if k != "target_met"}
        print(f"{name:<40}{json.dumps(figure)[:60]:>28}  {t['target_met']}")
    print(f"load average before {result['load_before']}, after {result['load_after']}; "
          f"{out}")


if __name__ == "__main__":
    sys.exit(main())
