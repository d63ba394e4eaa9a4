"""demo: the whole main job on the embedded store, from nothing to a running API.

generate -> load -> train -> score -> review limits -> a few users worth a look ->
serve, each step the real command a user would run.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from api.commands.common import settings_for
from api.settings import ROLES, Settings, new_api_key
from graph.store import GraphStore


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="generate, load, train, score, decide, then serve")
    p.add_argument("--users", type=int, default=20_000, help="users to generate")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--no-serve", action="store_true",
                   help="stop after printing the users worth a look")
    p.set_defaults(func=demo)


def _step(title: str, run: Callable[[], Any]) -> Any:
    print(f"\n== {title}", flush=True)
    started = time.perf_counter()
    out = run()
    print(f"   ({time.perf_counter() - started:.1f} s)", flush=True)
    return out


# The `riskgraph` entry point, main(argv) -> exit code; api/cli.py hands it to every
# subcommand as args.run_cli, so the demo runs the real commands without importing the CLI.
RunCli = Callable[[list[str]], int]


def _cli(run: RunCli, *argv: str) -> None:
    from graph.errors import RiskGraphError

    code = run(list(argv))
    if code != 0:
        raise RiskGraphError(f"`riskgraph {' '.join(argv)}` exited {code}; see above")


def demo(args: argparse.Namespace) -> int:
    run: RunCli = args.run_cli
    settings = settings_for(args).with_store("embedded")
    os.environ["RISKGRAPH_STORE"] = "embedded"
    os.environ["RISKGRAPH_HOME"] = str(settings.home)
    data = settings.home / "demo-data"
    print(f"RiskGraph demo: {args.users:,} users, seed {args.seed}, data in {settings.home}")
    _step("generate a synthetic ecosystem", lambda: _cli(
        run, "generate", "--users", str(args.users), "--seed", str(args.seed), "--out", str(data)))
    _step("load it into the embedded store", lambda: _cli(run, "load", str(data)))
    _step("counts", lambda: _cli(run, "stats"))
    _step("train the fraud model (GNN beside LightGBM baselines)", lambda: _cli(
        run, "train", "--task", "user", "--seed", str(args.seed)))
    _step("evaluate", lambda: _cli(run, "evaluate", "--plots", str(settings.home / "plots")))
    _step("score every user", lambda: _cli(run, "score"))
    _step("review every user's limits", lambda: _cli(run, "review"))
    picks = _step("users worth a look", lambda: show_picks(settings, data))
    if args.no_serve:
        return 0
    return serve(settings, args.port, picks, run)


def show_picks(settings: Settings, data: Path) -> dict[str, str]:
    from api.bootstrap import open_store

    store = open_store(settings)
    try:
        picks = pick_users(store, settings, data)
    finally:
        store.close()
    return picks


def pick_users(store: GraphStore, settings: Settings, data: Path) -> dict[str, str]:
    """A ring member, a clean user tied to a ring, a new user, and a user whose limit
    did not rise although they repay on time: each printed with why."""
    from api.limits_service import LimitsService
    from graph import queries
    from limits.audit import AuditLog
    from limits.policy import parse_policy, read_policy_text

    text, source = read_policy_text(None)
    audit = AuditLog(settings.audit_dir, key=settings.audit_key_bytes)
    service = LimitsService(store, audit, parse_policy(text, source), text)
    picks: dict[str, str] = {}
    users = {n.id: n for n in _all_users(store)}

    def risk(uid: str) -> str:
        p = users[uid].properties
        return (f"fraud risk {float(p.get('fraud_risk', float('nan'))):.2f}, "
                f"relational risk {float(p.get('relational_risk', float('nan'))):.2f}")

    rings = queries.rings(store, min_size=4)
    scored = sorted(
        rings,
        key=lambda r: -sum(float(users[m].properties.get("fraud_risk", 0.0)) for m in r.members)
        / r.size,
    )
    if scored:
        ring = scored[0]
        member = max(ring.members,
                     key=lambda m: float(users[m].properties.get("fraud_risk", 0.0)))
        picks["ring member"] = member
        items = ", ".join(f"{s.label} {s.id}" for s in ring.shared_items[:3])
        print(f"  ring member      {member}: {ring.id}, {ring.size} members sharing {items}; "
              f"{risk(member)}")
    manifest = json.loads((data / "manifest.json").read_text())
    for case in manifest.get("relational_risk_cases", [])[:1]:
        uid = case["user"]
        picks["tied to a ring"] = uid
        print(f"  tied to a ring   {uid}: shares device {case['ring_device']} with ring "
              f"member {case['ring_member']}; {risk(uid)}")
    new = sorted(u for u, n in users.items() if n.properties.get("lifecycle") == "new")
    if new:
        picks["new user"] = new[0]
        d = service.decide(new[0], apply=False)
        print(f"  new user         {new[0]}: {d.action}; " + "; ".join(
            f"{ld.line} {ld.current_limit or 0:,.0f} -> {ld.new_limit:,.0f}" for ld in d.lines))
    for uid, node in users.items():
        hist = str(node.properties.get("repayment_history", ""))
        if node.properties.get("lifecycle") != "active" or not hist.endswith("000") or \
                "1" in hist or len(hist) < 6:
            continue
        d = service.decide(uid, apply=False)
        if d.action in ("keep", "reduce") and d.counterfactuals:
            picks["refused a raise"] = uid
            print(f"  on time, no raise {uid}: {d.action}")
            for r in d.all_reasons[:3]:
                print(f"      because: {r.en}")
            for c in d.counterfactuals[:2]:
                print(f"      would change: {c.en}")
            break
    return picks


def _all_users(store: GraphStore) -> list[Any]:
    ids: list[str] = []
    after = None
    while True:
        page = store.node_ids("User", after=after, limit=50_000)
        if not page:
            break
        ids += page
        after = page[-1]
    return [n for n in store.get_nodes("User", ids) if n is not None]


def serve(settings: Settings, port: int, picks: dict[str, str], run: RunCli) -> int:
    keys = {role: new_api_key(role) for role in ROLES}
    os.environ["RISKGRAPH_API_KEYS"] = ",".join(entry for _, entry in keys.values())
    print("\n== serving the GraphQL API (Ctrl-C to stop)")
    print(f"  GraphiQL:  http://127.0.0.1:{port}/graphql")
    print(f"  Explorer:  http://127.0.0.1:{port}/explore")
    for role, (key, _) in keys.items():
        print(f"  {role:<13} key: {key}")
    if picks:
        first = next(iter(picks.values()))
        print(f'  try:  query {{ user(id: "{first}") {{ id fraudRisk relationalRisk }} }}')
        print("  with the header  Authorization: Bearer <investigator key>")
    return run(["serve", "--port", str(port)])
