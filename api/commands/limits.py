"""decide, review, simulate, audit: credit-limit decisions from the command line."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC
from pathlib import Path
from typing import Any

from api.commands.common import (
    add_json_option,
    add_store_option,
    print_json,
    settings_for,
    store_for,
)
from api.commands.scale import add_distributed_options, review_distributed
from api.limits_service import LimitsService
from graph.errors import NotFoundError
from graph.store import GraphStore
from limits.audit import AuditLog, parse_head
from limits.decision import as_of_ms, date_text
from limits.engine import Decision
from limits.errors import AuditError
from limits.policy import Policy, parse_policy, read_policy_text
from limits.reasons import Reason


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("decide", help="the limit decision for one user, with its reasons")
    p.add_argument("user_id")
    p.add_argument("--dry-run", action="store_true",
                   help="do not record the decision nor write it to the store")
    _common(p)
    p.set_defaults(func=decide)

    p = sub.add_parser("review", help="re-evaluate every user's limits")
    p.add_argument("--dry-run", action="store_true",
                   help="decide and summarise only: record nothing, write nothing")
    p.add_argument("--batch-size", type=int, default=20_000)
    p.add_argument("--workers", type=int, default=1,
                   help="processes that decide (default 1, in this process); this "
                        "process alone records and writes")
    p.add_argument("--counterfactuals", action="store_true",
                   help="also search what would change each decision (slow; off in bulk)")
    add_distributed_options(p)
    _common(p)
    p.set_defaults(func=review)

    p = sub.add_parser("simulate", help="compare two policies on the current population")
    p.add_argument("--policy", required=True, metavar="A.toml")
    p.add_argument("--vs", required=True, metavar="B.toml")
    p.add_argument("--png", default=None,
                   help="where to draw the comparison (default <RISKGRAPH_HOME>/simulate.png)")
    _as_of_option(p)
    add_store_option(p)
    add_json_option(p)
    p.set_defaults(func=simulate)

    p = sub.add_parser("audit", help="the decision audit trail")
    asub = p.add_subparsers(dest="audit_command", required=True, metavar="SUBCOMMAND")
    v = asub.add_parser("verify", help="check the hash chain (exit 1 at the first bad record)")
    v.add_argument("--replay", action="store_true",
                   help="also re-run every record under its policy and compare")
    v.add_argument("--head", default=None, metavar="SEQ:HASH",
                   help="a head kept elsewhere (`riskgraph audit head`): the log must still "
                        "hold that record, unchanged")
    add_json_option(v)
    v.set_defaults(func=audit_verify)
    hd = asub.add_parser("head", help="print SEQ:HASH of the last record, to keep elsewhere")
    add_json_option(hd)
    hd.set_defaults(func=audit_head)
    h = asub.add_parser("history", help="the recorded decisions of one user")
    h.add_argument("user_id")
    add_store_option(h)
    add_json_option(h)
    h.set_defaults(func=audit_history)


def _as_of_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--as-of", default=None, metavar="DATE",
                   help="decide as of this day (YYYY-MM-DD, in the policy's UTC offset) or "
                        "ISO date and time, for its seasons and cool-downs (default: now); "
                        "the audit record keeps it as decided_at_ms")


def _at_ms(args: argparse.Namespace, policy: Policy) -> int | None:
    return None if args.as_of is None else as_of_ms(args.as_of, policy)


def _common(p: argparse.ArgumentParser) -> None:
    _as_of_option(p)
    p.add_argument("--policy", default=None, metavar="FILE.toml",
                   help="policy file (default: RISKGRAPH_POLICY, else the packaged "
                        "limits/policy.toml)")
    add_store_option(p)
    add_json_option(p)


def _policy(path: str | None) -> tuple[Policy, str]:
    text, source = read_policy_text(path)
    return parse_policy(text, source), text


def _audit(args: argparse.Namespace) -> AuditLog:
    settings = settings_for(args)
    return AuditLog(settings.audit_dir, key=settings.audit_key_bytes)


def _service(args: argparse.Namespace, store: GraphStore) -> LimitsService:
    default = settings_for(args).policy
    policy, text = _policy(getattr(args, "policy", None) or (str(default) if default else None))
    return LimitsService(store, _audit(args), policy, text)


# -- decide ----------------------------------------------------------------------
def decide(args: argparse.Namespace) -> int:
    with store_for(args) as store:
        svc = _service(args, store)
        d = svc.decide(args.user_id, apply=not args.dry_run, at_ms=_at_ms(args, svc.policy))
    if args.json:
        print_json(d.to_dict())
        return 0
    print(render_decision(d, svc.policy))
    return 0


def render_decision(d: Decision, policy: Policy) -> str:
    a = d.assessment
    out = [
        f"user {d.user_id}: {d.action.upper()}   (as of {date_text(d.decided_at_ms, policy)}, "
        f"policy {d.policy_version}, "
        f"{d.model_version}, PD {a.pd:.2%}, band {a.band}, stage {a.stage}, "
        f"segment {a.segment})",
    ]
    if d.refer:
        out.append(f"  referred to: {d.refer}")
    out.append(f"  {'line':<10}{'action':<8}{'current':>10}{'new':>10}{'temp':>9}"
               f"{'until':>12}{'ceiling':>11}")
    for ld in d.lines:
        cur = "-" if ld.current_limit is None else f"{ld.current_limit:,.0f}"
        until = "" if ld.temp_until_ms is None else date_text(ld.temp_until_ms - 1, policy)
        out.append(f"  {ld.line:<10}{ld.action:<8}{cur:>10}{ld.new_limit:>10,.0f}"
                   f"{ld.temp_limit:>9,.0f}{until:>12}{ld.ceiling:>11,.0f}")
    out.append("  reasons:")
    for r in d.all_reasons:
        out.append(f"    [{r.code}] {r.en}")
        out.append(f"    {' ' * (len(r.code) + 2)} {r.zh}")
    if d.counterfactuals:
        out.append("  what would change it:")
        for c in d.counterfactuals:
            out.append(f"    - {c.en}")
            out.append(f"      {c.zh}")
    return "\n".join(out)


def _date(ms: int) -> str:
    from datetime import datetime

    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d")


# -- review ----------------------------------------------------------------------
def review(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    if args.distributed:
        return review_distributed(args)
    with store_for(args) as store:
        total = store.counts()["nodes"]["User"]
        svc = _service(args, store)
        with tqdm(total=total, unit="user", disable=args.json or not sys.stderr.isatty(),
                  file=sys.stderr) as bar:
            summary = svc.review(dry_run=args.dry_run, batch_size=args.batch_size,
                                 progress=bar.update, workers=max(1, args.workers),
                                 counterfactuals=args.counterfactuals,
                                 at_ms=_at_ms(args, svc.policy))
    if args.json:
        print_json(summary.to_dict() | {"dry_run": args.dry_run,
                                        "policy": svc.policy.id})
        return 0
    s = summary
    print(f"reviewed {s.users:,} users in {s.seconds:.1f} s ({s.users_per_second:,.0f}/s) "
          f"under policy {svc.policy.id}{' (dry run)' if args.dry_run else ''}")
    print(f"  {'action':<10}{'users':>10}" + "".join(f"{ln:>12}" for ln in s.line_actions))
    for act in ("open", "raise", "keep", "reduce", "freeze"):
        print(f"  {act:<10}{s.actions.get(act, 0):>10,}"
              + "".join(f"{c.get(act, 0):>12,}" for c in s.line_actions.values()))
    print(f"  exposure {s.exposure_before:,.0f} -> {s.exposure_after:,.0f}; "
          f"referred for investigation: {s.referred:,}")
    if not args.dry_run:
        print(f"  recorded {s.recorded:,} decisions, wrote {s.written:,} line changes")
    return 0


# -- simulate --------------------------------------------------------------------
def simulate(args: argparse.Namespace) -> int:
    pa, ta = _policy(args.policy)
    pb, tb = _policy(args.vs)
    png = Path(args.png) if args.png else settings_for(args).home / "simulate.png"
    with store_for(args) as store:
        svc = LimitsService(store, _audit(args), pa, ta)
        (sa, la), (sb, lb) = svc.simulate([pa, pb], at_ms=_at_ms(args, pa))
    _plot(png, (args.policy, sa, la), (args.vs, sb, lb))
    changed = sum(1 for x, y in zip(la, lb) if x != y)
    result: dict[str, Any] = {
        "a": {"file": args.policy, "policy": pa.id, **sa.to_dict()},
        "b": {"file": args.vs, "policy": pb.id, **sb.to_dict()},
        "users_with_different_limit": changed,
        "exposure_change": round(sb.exposure_after - sa.exposure_after, 2),
        "png": str(png),
    }
    if args.json:
        print_json(result)
        return 0
    print(f"{'':<22}{'A':>18}{'B':>18}")
    print(f"{'policy':<22}{pa.id:>18}{pb.id:>18}")
    print(f"{'users':<22}{sa.users:>18,}{sb.users:>18,}")
    print(f"{'total exposure':<22}{sa.exposure_after:>18,.0f}{sb.exposure_after:>18,.0f}")
    mean_a = sa.exposure_after / sa.users if sa.users else 0.0
    mean_b = sb.exposure_after / sb.users if sb.users else 0.0
    print(f"{'mean limit per user':<22}{mean_a:>18,.0f}{mean_b:>18,.0f}")
    for act in ("open", "raise", "keep", "reduce", "freeze"):
        print(f"{act:<22}{sa.actions.get(act, 0):>18,}{sb.actions.get(act, 0):>18,}")
    print(f"users whose limit differs: {changed:,}; plot: {png}")
    return 0


def _plot(png: Path, *runs: tuple[str, Any, list[float]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    png.parent.mkdir(parents=True, exist_ok=True)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    top = max([max(lim, default=0.0) for _, _, lim in runs] + [1.0])
    bins = [top * i / 40 for i in range(41)]
    for name, _, lim in runs:
        ax1.hist(lim, bins=bins, alpha=0.5, label=Path(name).name)
    ax1.set_xlabel("total limit per user (CNY, permanent + temporary)")
    ax1.set_ylabel("users")
    ax1.legend()
    acts = ["open", "raise", "keep", "reduce", "freeze"]
    width = 0.8 / len(runs)
    for k, (name, s, _) in enumerate(runs):
        ax2.bar([i + k * width for i in range(len(acts))], [s.actions.get(a, 0) for a in acts],
                width=width, label=f"{Path(name).name}: exposure {s.exposure_after:,.0f}")
    ax2.set_xticks([i + width * (len(runs) - 1) / 2 for i in range(len(acts))], acts)
    ax2.set_ylabel("users")
    ax2.legend()
    fig.suptitle("Policy comparison on the current population")
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


# -- audit -----------------------------------------------------------------------
def audit_head(args: argparse.Namespace) -> int:
    log = _audit(args)
    head = log.head()
    if args.json:
        print_json({"seq": head[0] if head else None, "hash": head[1] if head else None,
                    "head": f"{head[0]}:{head[1]}" if head else None, "path": str(log.path)})
    elif head is None:
        print(f"no records in {log.path}", file=sys.stderr)
    else:
        print(f"{head[0]}:{head[1]}")
    return 0


def audit_verify(args: argparse.Namespace) -> int:
    log = _audit(args)
    result = log.verify(head=parse_head(args.head) if args.head else None)
    replayed = 0
    if result.ok and args.replay:
        for rec in log.records():
            log.replay(rec)
            replayed += 1
    if args.json:
        print_json({"ok": result.ok, "records": result.records, "replayed": replayed,
                    "error": str(result.error) if result.error else None,
                    "first_bad_line": result.error.line if result.error else None,
                    "first_bad_seq": result.error.seq if result.error else None,
                    "index_rebuilt": result.index_rebuilt, "path": str(log.path),
                    "missing": result.missing, "keyed": result.keyed,
                    "warnings": list(result.warnings)})
    elif result.ok:
        extra = f", {replayed:,} replayed identically" if args.replay else ""
        print(f"audit log intact: {result.records:,} records{extra} ({log.path})")
    else:
        print(f"riskgraph: {result.error}", file=sys.stderr)
    if not args.json:
        for warning in result.warnings:
            print(f"warning: {warning}", file=sys.stderr)
    if result.index_rebuilt and not args.json:
        print(f"index rebuilt: {log.index.path}", file=sys.stderr)
    return 0 if result.ok else 1


def audit_history(args: argparse.Namespace) -> int:
    log = _audit(args)
    recs = log.history(args.user_id)
    if not recs:
        _check_user(args, args.user_id)
    if args.json:
        print_json({"user": args.user_id, "records": recs})
        return 0
    if not recs:
        print(f"no recorded decisions for {args.user_id}")
        return 0
    for rec in recs:
        d = rec["decision"]
        held = d["inputs"].get("lines") or {}
        lines = ", ".join(
            f"{ld['line']} {ld['action']} {_current(ld, held)}->{ld['new_limit']:,.0f}"
            for ld in d["lines"])
        print(f"#{rec['seq']} {_date(d['decided_at_ms'])} {d['action']:<7} {lines}  "
              f"(policy {d['policy_version']}, {d['model_version']})")
        for code, text in _reasons(log, rec):
            print(f"    [{code}] {text}")
    return 0


def _check_user(args: argparse.Namespace, user_id: str) -> None:
    """NotFoundError (exit 1) when the store has no such user: a user without records
    and an id that does not exist are told apart."""
    with store_for(args) as store:
        if store.get_nodes("User", [user_id])[0] is None:
            raise NotFoundError(f"no user with id {user_id!r} (ids are case-sensitive, "
                                "e.g. u0000042); check it with `riskgraph stats`")


def _current(ld: dict[str, Any], held: dict[str, Any]) -> str:
    if "current_limit" in ld:  # the earlier full record form
        cur = ld["current_limit"]
    else:
        cur = held[ld["line"]].get("limit", 0.0) if ld["line"] in held else None
    return "-" if cur is None else format(cur, ",.0f")


def _reasons(log: AuditLog, rec: dict[str, Any]) -> list[tuple[str, str]]:
    """(code, text) of a record's line reasons: the full form keeps their numbers; the
    compact one keeps the codes, and replay gives the numbers back."""
    d = rec["decision"]
    if "format" not in rec:
        return [(r["code"], Reason(r["code"], r["line"], r["params"]).en)
                for ld in d["lines"] for r in ld["reasons"]]
    try:
        return [(r.code, r.en) for ld in log.replay(rec).lines for r in ld.reasons]
    except AuditError as exc:
        return [(code, f"(text unavailable: {exc})") for ld in d["lines"]
                for code in ld["reasons"]]
