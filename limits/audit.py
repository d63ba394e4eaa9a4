"""The audit trail: every decision, append-only, chained by hashes.

Layout of the audit directory:

* ``decisions.jsonl``: one JSON object a line. Each record holds ``seq`` (0, 1, ...),
  ``prev_hash`` (the previous record's ``hash``, 64 zeros for the first), the decision
  with its inputs, policy and model versions, and ``hash``: the SHA-256 of the record's
  canonical JSON without ``hash``. Changing, removing or reordering any record breaks
  the chain from that record on, which ``verify`` reports.
* ``policies/<content_hash>.toml``: the text of every policy a record names, so a
  record can be re-run under the exact policy that made it (``replay``).

A record is written, flushed and fsynced before its decision is applied to the store;
``append_many`` syncs once per batch, still before any of the batch is applied.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from limits import scorecard
from limits.engine import Decision, decide
from limits.errors import AuditError, AuditIntegrityError, ReplayMismatchError
from limits.features import Profile
from limits.policy import Policy, parse_policy

GENESIS = "0" * 64
LOG_NAME = "decisions.jsonl"
RECORD_KEYS = ("seq", "prev_hash", "kind", "recorded_at_ms", "applied", "options", "decision")


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


def record_hash(record: dict[str, Any]) -> str:
    body = {k: v for k, v in record.items() if k != "hash"}
    return hashlib.sha256(canonical(body).encode("utf-8")).hexdigest()


def _raw_body(d: Decision) -> dict[str, Any]:
    """What a record keeps of a decision: everything, reasons as codes and numbers
    (their texts are rendered from the codes when read)."""
    lines = []
    for ld in d.lines:
        row = {k: getattr(ld, k) for k in ld.__dataclass_fields__ if k != "reasons"}
        row["effective_limit"] = ld.effective_limit
        row["reasons"] = [_reason_body(r) for r in ld.reasons]
        lines.append(row)
    return {
        "user_id": d.user_id, "action": d.action, "lines": lines,
        "reasons": [_reason_body(r) for r in d.reasons],
        "counterfactuals": [c.to_dict() for c in d.counterfactuals],
        "assessment": d.assessment.to_dict(), "refer": d.refer,
        "inputs": d.inputs.to_dict(), "policy_version": d.policy_version,
        "policy_hash": d.policy_hash, "model_version": d.model_version,
        "decided_at_ms": d.decided_at_ms,
    }


def decision_body(d: Decision) -> dict[str, Any]:
    """The record form of a decision, as read back from JSON."""
    return json.loads(canonical(_raw_body(d)))  # type: ignore[no-any-return]


def _reason_body(r: Any) -> dict[str, Any]:
    return {"code": r.code, "line": r.line, "params": r.params}


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    records: int
    error: AuditIntegrityError | None = None


class AuditLog:
    """The audit trail in ``directory``. Nothing touches the disk until a method is called."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def __repr__(self) -> str:
        return f"AuditLog({str(self.directory)!r})"

    @property
    def path(self) -> Path:
        return self.directory / LOG_NAME

    @property
    def policies_dir(self) -> Path:
        return self.directory / "policies"

    def _ensure_dir(self) -> None:
        try:
            self.policies_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise AuditError(
                f"cannot create the audit directory {self.directory}: {exc.strerror}; "
                "check RISKGRAPH_HOME points to a writable directory"
            ) from exc

    # -- policies -----------------------------------------------------------------
    def keep_policy(self, policy: Policy, text: str) -> Path:
        """Store the policy text under its content hash (once)."""
        self._ensure_dir()
        if parse_policy(text).content_hash != policy.content_hash:
            raise AuditError("the policy text given does not match the policy in use")
        target = self.policies_dir / f"{policy.content_hash}.toml"
        if not target.exists():
            tmp = target.with_suffix(".tmp")
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        return target

    def policy(self, content_hash: str) -> Policy:
        """The policy a record names, from the archive."""
        target = self.policies_dir / f"{content_hash}.toml"
        try:
            text = target.read_text("utf-8")
        except OSError:
            raise AuditError(
                f"policy {content_hash[:12]} is not in {self.policies_dir}; it was never "
                "archived or has been removed, so records made under it cannot be replayed"
            ) from None
        policy = parse_policy(text, str(target))
        if policy.content_hash != content_hash:
            raise AuditError(f"archived policy {target} has been changed: its hash no longer "
                             "matches its name")
        return policy

    # -- writing ------------------------------------------------------------------
    def append(self, decision: Decision, *, applied: bool, recorded_at_ms: int
               ) -> dict[str, Any]:
        """Record one decision; returns the record once it is on disk."""
        return self.append_many([decision], applied=applied, recorded_at_ms=recorded_at_ms)[0]

    def append_many(self, decisions: Iterable[Decision], *, applied: bool, recorded_at_ms: int
                    ) -> list[dict[str, Any]]:
        self._ensure_dir()
        out: list[dict[str, Any]] = []
        with open(self.path, "a+b") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                seq, prev = self._tail(f)
                lines: list[bytes] = []
                for d in decisions:
                    rec: dict[str, Any] = {
                        "seq": seq, "prev_hash": prev, "kind": "decision",
                        "recorded_at_ms": int(recorded_at_ms), "applied": bool(applied),
                        "options": {"counterfactuals": bool(d.counterfactuals)},
                        "decision": _raw_body(d),
                    }
                    rec["hash"] = record_hash(rec)
                    lines.append(canonical(rec).encode("utf-8") + b"\n")
                    out.append(rec)
                    seq, prev = seq + 1, rec["hash"]
                f.seek(0, os.SEEK_END)
                f.write(b"".join(lines))
                f.flush()
                os.fsync(f.fileno())
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)
        return out

    @staticmethod
    def _tail(f: Any) -> tuple[int, str]:
        """(next seq, last hash) from the end of the open log."""
        f.seek(0, os.SEEK_END)
        end = f.tell()
        if end == 0:
            return 0, GENESIS
        pos, buf = end, b""
        while pos > 0:
            step = min(65536, pos)
            pos -= step
            f.seek(pos)
            buf = f.read(step) + buf
            if buf.rstrip(b"\n").count(b"\n") >= 1 or pos == 0:
                break
        last = buf.rstrip(b"\n").rsplit(b"\n", 1)[-1]
        if not buf.endswith(b"\n"):
            raise AuditError(
                f"the last line of {f.name} is incomplete (a write was cut short); run "
                "`riskgraph audit verify` and restore the log before recording more"
            )
        try:
            rec = json.loads(last)
            return int(rec["seq"]) + 1, str(rec["hash"])
        except (ValueError, KeyError, TypeError):
            raise AuditError(
                f"the last record of {f.name} is unreadable; run `riskgraph audit verify`"
            ) from None

    # -- reading ------------------------------------------------------------------
    def records(self) -> Iterator[dict[str, Any]]:
        """Every record in order. Unreadable lines raise AuditIntegrityError."""
        if not self.path.exists():
            return
        with open(self.path, "rb") as f:
            for n, raw in enumerate(f, 1):
                try:
                    yield json.loads(raw)
                except ValueError:
                    raise AuditIntegrityError(n, None, "not valid JSON") from None

    def history(self, user_id: str) -> list[dict[str, Any]]:
        """The records of one user, oldest first."""
        needle = json.dumps(user_id, ensure_ascii=False).encode("utf-8")
        out: list[dict[str, Any]] = []
        if not self.path.exists():
            return out
        with open(self.path, "rb") as f:
            for raw in f:
                if needle in raw:
                    rec = json.loads(raw)
                    if rec.get("decision", {}).get("user_id") == user_id:
                        out.append(rec)
        return out

    def last_raises(self) -> dict[tuple[str, str], int]:
        """(user, line) -> time of the last applied raise, from the whole log."""
        out: dict[tuple[str, str], int] = {}
        if not self.path.exists():
            return out
        with open(self.path, "rb") as f:
            for raw in f:
                if b'"action":"raise"' not in raw:
                    continue
                rec = json.loads(raw)
                if not rec.get("applied"):
                    continue
                d = rec["decision"]
                for ld in d["lines"]:
                    if ld["action"] == "raise":
                        out[(d["user_id"], ld["line"])] = int(d["decided_at_ms"])
        return out

    def verify(self) -> VerifyResult:
        """Check every record against the chain; stop at the first bad one."""
        prev, n = GENESIS, 0
        if not self.path.exists():
            return VerifyResult(True, 0)
        with open(self.path, "rb") as f:
            for line_no, raw in enumerate(f, 1):
                err = _check_record(raw, line_no, n, prev)
                if isinstance(err, AuditIntegrityError):
                    return VerifyResult(False, n, err)
                prev, n = err, n + 1
        return VerifyResult(True, n)

    def replay(self, record: dict[str, Any]) -> Decision:
        """Re-run a record under its own policy; ReplayMismatchError if the result differs."""
        d = record["decision"]
        if d["model_version"] != scorecard.MODEL_VERSION:
            raise ReplayMismatchError(
                f"record {record.get('seq')} was made by {d['model_version']}, this engine "
                f"runs {scorecard.MODEL_VERSION}; replay it with that engine version"
            )
        policy = self.policy(d["policy_hash"])
        again = decide(Profile.from_dict(d["inputs"]), policy,
                       counterfactuals=bool(record.get("options", {}).get("counterfactuals")))
        body = decision_body(again)
        if canonical(body) != canonical(d):
            diff = sorted(k for k in set(body) | set(d) if body.get(k) != d.get(k))
            raise ReplayMismatchError(
                f"record {record.get('seq')} (user {d['user_id']!r}) replays differently in "
                f"{diff}; the record or the engine has changed"
            )
        return again


def _check_record(raw: bytes, line_no: int, seq: int, prev: str) -> str | AuditIntegrityError:
    """The record's hash if it is sound, else the error naming it."""
    if not raw.endswith(b"\n"):
        return AuditIntegrityError(line_no, seq, "incomplete line (a write was cut short)")
    try:
        rec = json.loads(raw)
    except ValueError:
        return AuditIntegrityError(line_no, seq, "not valid JSON")
    if not isinstance(rec, dict):
        return AuditIntegrityError(line_no, seq, "not a JSON object")
    missing = [k for k in (*RECORD_KEYS, "hash") if k not in rec]
    if missing:
        return AuditIntegrityError(line_no, seq, f"missing fields {missing}")
    if rec["seq"] != seq:
        return AuditIntegrityError(line_no, seq, f"seq is {rec['seq']!r}, expected {seq} "
                                   "(a record was removed, inserted or moved)")
    if rec["prev_hash"] != prev:
        return AuditIntegrityError(line_no, seq, "prev_hash does not match the previous record")
    if record_hash(rec) != rec["hash"]:
        return AuditIntegrityError(line_no, seq, "content does not match its hash (edited)")
    if raw != canonical(rec).encode("utf-8") + b"\n":
        return AuditIntegrityError(line_no, seq, "bytes differ from the canonical form of the "
                                   "record (the line was edited)")
    return str(rec["hash"])
