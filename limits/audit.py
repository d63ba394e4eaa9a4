"""The audit trail: every decision, append-only, chained by hashes.

Layout of the audit directory:

* ``decisions.jsonl``: one JSON object a line. Each record holds ``seq`` (0, 1, ...),
  ``prev_hash`` (the previous record's ``hash``, 64 zeros for the first), the decision
  with its inputs, policy and model versions, and ``hash``: the SHA-256 of the record's
  canonical JSON without ``hash``. Changing, removing or reordering any record breaks
  the chain from that record on, which ``verify`` reports.
* ``policies/<content_hash>.toml``: the text of every policy a record names, so a
  record can be re-run under the exact policy that made it (``replay``).
* ``decisions.idx.sqlite``: user -> record offsets and the last applied raise per line
  (limits.audit_index); derived from the log, rebuilt from it when missing or stale.

A record keeps what a replay needs and what it decided, not what a replay recomputes:
format 2 (``"format": 2``) holds the inputs (profile fields at their default left out),
the policy and model versions, the action, per line the action, new and temporary
limits and the reason codes, and for a single decision the counterfactuals' levers and
values; texts, ceilings, targets and the assessment come back from ``replay``. Records
without ``format`` are the earlier full form, still verified and replayed.

A record is written, flushed and fsynced before its decision is applied to the store;
``append_many`` syncs once per batch, still before any of the batch is applied.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any, NamedTuple

from limits import scorecard
from limits.audit_index import INDEX_NAME, AuditIndex, RaiseRow, RecRow
from limits.counterfactuals import decide_with_counterfactuals
from limits.decision import Decision
from limits.errors import AuditError, AuditIntegrityError, ReplayMismatchError
from limits.features import LineState, Profile
from limits.policy import Policy, parse_policy

GENESIS = "0" * 64
LOG_NAME = "decisions.jsonl"
FORMAT = 2
RECORD_KEYS = ("seq", "prev_hash", "kind", "recorded_at_ms", "applied", "options", "decision")
_KNOWN_KEYS = frozenset((*RECORD_KEYS, "hash", "format", "mac"))
_HASH_KEY = b',"hash":"'
_MAC_KEY = b',"mac":"'

_encode = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                           allow_nan=False).encode


def canonical(obj: Any) -> str:
    """Sorted keys, no spaces, UTF-8 text, no NaN: one byte string per value."""
    return _encode(obj)


def record_hash(record: dict[str, Any]) -> str:
    body = {k: v for k, v in record.items() if k not in ("hash", "mac")}
    return hashlib.sha256(canonical(body).encode("utf-8")).hexdigest()


def _raw_body(d: Decision) -> dict[str, Any]:
    """The earlier full record form of a decision (records without ``format``):
    everything, reasons as codes and numbers."""
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
    """The full record form of a decision, as read back from JSON."""
    body: dict[str, Any] = json.loads(canonical(_raw_body(d)))
    return body


def _reason_body(r: Any) -> dict[str, Any]:
    return {"code": r.code, "line": r.line, "params": r.params}


def _defaults(cls: type) -> dict[str, Any]:
    return {f.name: f.default for f in fields(cls) if f.default is not MISSING}


_PROFILE_DEFAULTS = _defaults(Profile)
_PROFILE_NAMES = tuple(f.name for f in fields(Profile) if f.name != "lines")
_LINE_DEFAULTS = _defaults(LineState)
_LINE_NAMES = tuple(f.name for f in fields(LineState))


def _without_defaults(obj: Any, names: tuple[str, ...], defaults: dict[str, Any]
                      ) -> dict[str, Any]:
    out = {}
    for name in names:
        v = getattr(obj, name)
        if name in defaults:
            dv = defaults[name]
            # Same type too: 0 for 0.0 would come back as an int.
            if v is dv or (v == dv and type(v) is type(dv)):
                continue
        out[name] = v
    return out


def compact_inputs(p: Profile) -> dict[str, Any]:
    """The profile with fields at their default left out; Profile.from_dict restores it."""
    d = _without_defaults(p, _PROFILE_NAMES, _PROFILE_DEFAULTS)
    if p.lines:
        d["lines"] = {k: _without_defaults(v, _LINE_NAMES, _LINE_DEFAULTS)
                      for k, v in sorted(p.lines.items())}
    return d


def compact_body(d: Decision) -> dict[str, Any]:
    """The format-2 record of a decision: inputs, versions and outcome; no texts."""
    body: dict[str, Any] = {
        "user_id": d.user_id, "action": d.action, "refer": d.refer,
        "lines": [{"line": ld.line, "action": ld.action, "new_limit": ld.new_limit,
                   "temp_limit": ld.temp_limit, "temp_until_ms": ld.temp_until_ms,
                   "reasons": [r.code for r in ld.reasons]} for ld in d.lines],
        "reasons": [r.code for r in d.reasons],
        "inputs": compact_inputs(d.inputs), "policy_version": d.policy_version,
        "policy_hash": d.policy_hash, "model_version": d.model_version,
        "decided_at_ms": d.decided_at_ms,
    }
    if d.counterfactuals:
        body["counterfactuals"] = [{"lever": c.lever, "needed": c.needed, "action": c.action}
                                   for c in d.counterfactuals]
    return body


class Entry(NamedTuple):
    """A decision ready to be recorded: its record text and what the index needs."""

    user_id: str
    decided_at_ms: int
    raised_lines: tuple[str, ...]  # lines whose action is a raise
    text: str  # canonical JSON of compact_body
    counterfactuals: bool  # whether they were searched (replay searches them again)


def entry_of(d: Decision) -> Entry:
    return Entry(d.user_id, d.decided_at_ms,
                 tuple(ld.line for ld in d.lines if ld.action == "raise"),
                 canonical(compact_body(d)), bool(d.counterfactuals))


def record_mac(key: bytes, record_hash_hex: str) -> str:
    """The HMAC-SHA256 of a record's hash under the audit key: only a holder of the key
    can make it, and the hash covers the record and the chain before it."""
    return hmac.new(key, record_hash_hex.encode("ascii"), hashlib.sha256).hexdigest()


def record_line(seq: int, prev_hash: str, decision_json: str, *, applied: bool,
                recorded_at_ms: int, counterfactuals: bool, key: bytes | None = None
                ) -> tuple[str, str]:
    """(hash, line) of a format-2 record whose decision serialises to ``decision_json``.

    The canonical JSON is assembled around the decision text, which is serialised once:
    keys in sorted order are applied, decision, format, hash, kind, mac (with a key),
    options, prev_hash, recorded_at_ms, seq; the hash covers the same text without its
    own field and without ``mac``, and ``mac`` is the keyed MAC of the hash."""
    head = (f'{{"applied":{"true" if applied else "false"},"decision":{decision_json}'
            f',"format":{FORMAT}')
    kind = ',"kind":"decision"'
    tail = (f',"options":{{"counterfactuals":'
            f'{"true" if counterfactuals else "false"}}},"prev_hash":"{prev_hash}"'
            f',"recorded_at_ms":{int(recorded_at_ms)},"seq":{int(seq)}}}')
    h = hashlib.sha256((head + kind + tail).encode("utf-8")).hexdigest()
    mac = f',"mac":"{record_mac(key, h)}"' if key else ""
    return h, f'{head},"hash":"{h}"{kind}{mac}{tail}\n'


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    records: int
    error: AuditIntegrityError | None = None
    index_rebuilt: bool = False
    missing: int = 0  # records known to have been in the log and now gone
    keyed: int = 0  # records carrying a MAC
    warnings: tuple[str, ...] = ()


def parse_head(text: str) -> tuple[int, str]:
    """``SEQ:HASH`` as printed by ``riskgraph audit head``."""
    seq, _, h = text.partition(":")
    if not seq.isdigit() or len(h) != 64 or any(c not in "0123456789abcdef" for c in h):
        raise AuditError(f"head {text!r} is not SEQ:HASH (a record number and its 64-digit "
                         "hash, as `riskgraph audit head` prints)")
    return int(seq), h


class AuditLog:
    """The audit trail in ``directory``. Nothing touches the disk until a method is called."""

    def __init__(self, directory: str | Path, key: bytes | None = None) -> None:
        self.directory = Path(directory)
        self.key = key  # RISKGRAPH_AUDIT_KEY: new records carry a MAC under it
        self._index: AuditIndex | None = None

    def __repr__(self) -> str:
        return f"AuditLog({str(self.directory)!r}, keyed={self.key is not None})"

    def __getstate__(self) -> dict[str, Any]:
        # Sent to a worker process: its index (an open connection) stays behind and
        # the worker opens its own.
        return {"directory": self.directory, "key": self.key}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["directory"], state.get("key"))  # type: ignore[misc]

    @property
    def path(self) -> Path:
        return self.directory / LOG_NAME

    @property
    def policies_dir(self) -> Path:
        return self.directory / "policies"

    @property
    def index(self) -> AuditIndex:
        """The lookup index; one object per log object, so that its connection and what
        it knows of the log last a process's life (limits.audit_index)."""
        if self._index is None:
            self._index = AuditIndex(self.directory / INDEX_NAME, self.path, self._locked)
        return self._index

    def _ensure_dir(self) -> None:
        try:
            self.policies_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise AuditError(
                f"cannot create the audit directory {self.directory}: {exc.strerror}; "
                "check RISKGRAPH_HOME points to a writable directory"
            ) from exc

    @contextmanager
    def _locked(self) -> Iterator[Any]:
        """The log opened for appending, under its exclusive lock."""
        self._ensure_dir()
        with open(self.path, "a+b") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield f
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    # -- policies -----------------------------------------------------------------
    def keep_policy(self, policy: Policy, text: str) -> Path:
        """Store the policy text under its content hash (once)."""
        self._ensure_dir()
        if parse_policy(text).content_hash != policy.content_hash:
            raise AuditError("the policy text given does not match the policy in use")
        target = self.policies_dir / f"{policy.content_hash}.toml"
        if not target.exists():
            # A temporary name of this writer's own: several threads or server processes
            # may archive the same policy at once, and each must replace its own file.
            tmp = target.with_name(f"{target.stem}.{os.getpid()}.{threading.get_ident()}.tmp")
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
        """Record ``decisions`` in order, synced once; returns the records as read back."""
        entries = [entry_of(d) for d in decisions]
        written = self.append_entries(entries, applied=applied, recorded_at_ms=recorded_at_ms)
        out: list[dict[str, Any]] = []
        for e, (seq, prev, h) in zip(entries, written):
            out.append({
                "seq": seq, "prev_hash": prev, "kind": "decision", "format": FORMAT,
                "recorded_at_ms": int(recorded_at_ms), "applied": bool(applied),
                "options": {"counterfactuals": e.counterfactuals},
                "decision": json.loads(e.text), "hash": h,
            })
        return out

    def append_entries(self, entries: Iterable[Entry], *, applied: bool, recorded_at_ms: int
                       ) -> list[tuple[int, str, str]]:
        """Record entries in order, synced once, then indexed; (seq, prev_hash, hash) each.

        The one writer of the chain: the lock is held from reading the tail to the sync."""
        out: list[tuple[int, str, str]] = []
        with self._locked() as f:
            seq, prev = self._tail(f)
            self._check_not_shorter(seq, prev)
            start = f.seek(0, os.SEEK_END)
            offset = start
            chunks: list[bytes] = []
            recs: list[RecRow] = []
            raises: list[RaiseRow] = []
            for e in entries:
                h, line = record_line(seq, prev, e.text, applied=applied,
                                      recorded_at_ms=recorded_at_ms,
                                      counterfactuals=e.counterfactuals, key=self.key)
                data = line.encode("utf-8")
                chunks.append(data)
                recs.append((seq, e.user_id, offset, len(data)))
                if applied and e.raised_lines:
                    raises.extend((e.user_id, ln, seq, e.decided_at_ms) for ln in e.raised_lines)
                out.append((seq, prev, h))
                offset += len(data)
                seq, prev = seq + 1, h
            f.write(b"".join(chunks))
            f.flush()
            os.fsync(f.fileno())
            if recs:
                self.index.add(start, offset, recs, raises, seq, prev)
        return out

    def _check_not_shorter(self, seq: int, last_hash: str) -> None:
        """Refuse to record on a log shorter than one seen before, or whose last record
        was replaced: recording on would hide the loss (log lock held)."""
        high, high_hash = self.index.high_water()
        if seq < high or (seq == high and high and high_hash != last_hash):
            raise AuditError(
                f"{self.path} holds {seq:,} records but {high:,} were recorded before (or its "
                "last record was replaced); nothing more is recorded until the log is "
                "restored: run `riskgraph audit verify`")

    def head(self) -> tuple[int, str] | None:
        """(seq, hash) of the last record, to keep elsewhere (``verify(head=...)``)."""
        if not self.path.exists():
            return None
        with open(self.path, "rb") as f:
            try:
                seq, h = self._tail(f)
            except AuditError:
                return None
        return (seq - 1, h) if seq else None

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
        """The records of one user, oldest first, found through the index."""
        if not self.path.exists():
            return []
        for attempt in range(2):
            offsets = self.index.offsets(user_id)  # catches up under the log's lock
            out = self._read_at(user_id, offsets)
            if out is not None:
                return out
            if attempt == 0:
                # The log no longer matches the index (it was replaced or edited).
                self.index.remove()
        raise AuditError(f"the index of {self.path} does not match the log; run "
                         "`riskgraph audit verify`")

    def _read_at(self, user_id: str, offsets: list[tuple[int, int, int]]
                 ) -> list[dict[str, Any]] | None:
        out: list[dict[str, Any]] = []
        with open(self.path, "rb") as f:
            for seq, offset, length in offsets:
                f.seek(offset)
                raw = f.read(length)
                try:
                    rec = json.loads(raw)
                    ok = rec["seq"] == seq and rec["decision"]["user_id"] == user_id
                except (ValueError, KeyError, TypeError):
                    ok = False
                if not ok:
                    return None
                out.append(rec)
        return out

    def last_raises(self, user_id: str | None = None) -> dict[tuple[str, str], int]:
        """(user, line) -> time of the last applied raise, for every user or one."""
        if not self.path.exists():
            return {}
        # Under the log's lock only when the log changed since the index last covered it.
        return self.index.last_raises(user_id)

    def verify(self, head: tuple[int, str] | None = None) -> VerifyResult:
        """Check every record against the chain and, with a key, its MAC; stop at the
        first bad one. A log shorter than the longest one the index has seen fails with
        the number of records missing, and so does one that does not reach ``head``
        (seq, hash as ``head()`` gave it) or holds another record there. An index that
        is missing or does not match the log is rebuilt, keeping what it had seen."""
        prev, n = GENESIS, 0
        high, high_hash = self.index.high_water()
        if not self.path.exists():
            error = self._shorter(0, high, head)
            return VerifyResult(error is None, 0, error[0] if error else None,
                                missing=error[1] if error else 0)
        keyed = 0
        wanted = {s for s in (high - 1, head[0] if head else -1) if s >= 0}
        hashes: dict[int, str] = {}
        with self._locked():
            rebuild = not self.index.is_current()
            entries: list[tuple[dict[str, Any], int, int]] = []
            offset = 0
            result: VerifyResult | None = None
            with open(self.path, "rb") as f:
                for line_no, raw in enumerate(f, 1):
                    checked = _check_record(raw, line_no, n, prev)
                    if not isinstance(checked, AuditIntegrityError):
                        checked = self._check_mac(checked, line_no, n, keyed)
                    if isinstance(checked, AuditIntegrityError):
                        result = VerifyResult(False, n, checked)
                        break
                    if "mac" in checked:
                        keyed += 1
                    if n in wanted:
                        hashes[n] = checked["hash"]
                    rec, prev, n = checked, checked["hash"], n + 1
                    if rebuild:
                        entries.append((rec, offset, len(raw)))
                    offset += len(raw)
            if rebuild:
                self.index.rebuild(entries, offset, n, prev if n else None)
        if result is not None:
            return VerifyResult(False, result.records, result.error, rebuild, keyed=keyed)
        short = self._shorter(n, high, head)
        if short is not None:
            return VerifyResult(False, n, short[0], rebuild, missing=short[1], keyed=keyed)
        rewritten = self._rewritten(hashes, high, high_hash, head)
        if rewritten is not None:
            return VerifyResult(False, n, rewritten, rebuild, keyed=keyed)
        return VerifyResult(True, n, None, rebuild, keyed=keyed,
                            warnings=self._warnings(n, keyed))

    @staticmethod
    def _rewritten(hashes: dict[int, str], high: int, high_hash: str | None,
                   head: tuple[int, str] | None) -> AuditIntegrityError | None:
        """The error when the record the index last saw, or the head given, is not the
        one the log holds at its place."""
        for seq, expected, what in ((high - 1, high_hash, "the last record seen before"),
                                    (head[0] if head else -1, head[1] if head else None,
                                     "the head given")):
            if seq >= 0 and expected is not None and hashes.get(seq) != expected:
                return AuditIntegrityError(
                    seq + 1, seq, f"record {seq} is not {what} (its hash differs): the log "
                    "was rewritten from there on")
        return None

    def _check_mac(self, rec: dict[str, Any], line_no: int, seq: int, keyed_before: int
                   ) -> dict[str, Any] | AuditIntegrityError:
        mac = rec.get("mac")
        if mac is None:
            if keyed_before:
                return AuditIntegrityError(line_no, seq, "no MAC after keyed records (a "
                                           "record inserted or rewritten without the key)")
            return rec
        if self.key is not None and not hmac.compare_digest(
                str(mac), record_mac(self.key, rec["hash"])):
            return AuditIntegrityError(line_no, seq, "MAC does not match (a record forged or "
                                       "rewritten without the key, or RISKGRAPH_AUDIT_KEY "
                                       "is not the key the log was written with)")
        return rec

    @staticmethod
    def _shorter(n: int, high: int, head: tuple[int, str] | None
                 ) -> tuple[AuditIntegrityError, int] | None:
        """The error for a log of ``n`` records shorter than it was known to be."""
        known = max(high, head[0] + 1 if head else 0)
        if n >= known:
            return None
        missing = known - n
        return AuditIntegrityError(
            n + 1, n, f"{missing:,} record{'s' if missing > 1 else ''} missing: the log ends "
            f"after {n:,} records but {known:,} were recorded (records deleted from the end, "
            "or the log emptied, removed or replaced)"), missing

    def _warnings(self, n: int, keyed: int) -> tuple[str, ...]:
        out = []
        if self.key is None and keyed:
            out.append(f"RISKGRAPH_AUDIT_KEY is not set: the MACs of {keyed:,} records were not "
                       "checked")
        if n > keyed:
            out.append(
                f"{n - keyed:,} record{'s' if n - keyed > 1 else ''} carry no MAC (written "
                "without RISKGRAPH_AUDIT_KEY): the chain shows a record edited, but not a log "
                "rewritten whole by someone who can write the file; keep `riskgraph audit "
                "head` elsewhere and verify with --head")
        return tuple(out)

    def replay(self, record: dict[str, Any]) -> Decision:
        """Re-run a record under its own policy; ReplayMismatchError if the result differs."""
        d = record["decision"]
        if d["model_version"] != scorecard.MODEL_VERSION:
            raise ReplayMismatchError(
                f"record {record.get('seq')} was made by {d['model_version']}, this engine "
                f"runs {scorecard.MODEL_VERSION}; replay it with that engine version"
            )
        policy = self.policy(d["policy_hash"])
        again = decide_with_counterfactuals(
            Profile.from_dict(d["inputs"]), policy,
            bool(record.get("options", {}).get("counterfactuals")))
        if record.get("format") == FORMAT:
            body = json.loads(canonical(compact_body(again)))
        else:
            body = decision_body(again)
        if canonical(body) != canonical(d):
            diff = sorted(k for k in set(body) | set(d) if body.get(k) != d.get(k))
            raise ReplayMismatchError(
                f"record {record.get('seq')} (user {d['user_id']!r}) replays differently in "
                f"{diff}; the record or the engine has changed"
            )
        return again


def _check_record(raw: bytes, line_no: int, seq: int, prev: str
                  ) -> dict[str, Any] | AuditIntegrityError:
    """The record if it is sound, else the error naming it."""
    if not raw.endswith(b"\n"):
        return AuditIntegrityError(line_no, seq, "incomplete line (a write was cut short)")
    try:
        rec = json.loads(raw)
    except ValueError:
        return AuditIntegrityError(line_no, seq, "not valid JSON")
    if not isinstance(rec, dict):
        return AuditIntegrityError(line_no, seq, "not a JSON object")
    problem = _fields_problem(rec, seq, prev) or _content_problem(raw, rec)
    if problem is not None:
        return AuditIntegrityError(line_no, seq, problem)
    return rec


def _fields_problem(rec: dict[str, Any], seq: int, prev: str) -> str | None:
    """What is wrong with a record's fields (names, place in the chain, types), if anything."""
    missing = [k for k in (*RECORD_KEYS, "hash") if k not in rec]
    if missing:
        return f"missing fields {missing}"
    unknown = sorted(set(rec) - _KNOWN_KEYS)
    if unknown:
        return f"unknown fields {unknown}"
    if rec["seq"] != seq:
        return f"seq is {rec['seq']!r}, expected {seq} (a record was removed, inserted or moved)"
    if rec["prev_hash"] != prev:
        return "prev_hash does not match the previous record"
    opts = rec["options"]
    if not (isinstance(rec["hash"], str) and isinstance(rec["kind"], str)
            and type(rec["recorded_at_ms"]) is int and isinstance(opts, dict)
            and set(opts) == {"counterfactuals"} and isinstance(opts["counterfactuals"], bool)):
        return "content does not match its hash (edited)"
    return None


def _content_problem(raw: bytes, rec: dict[str, Any]) -> str | None:
    """What is wrong with a record's bytes (not canonical, not the content hashed), if
    anything."""
    if raw != canonical(rec).encode("utf-8") + b"\n":
        return "bytes differ from the canonical form of the record (the line was edited)"
    # The line is canonical, so the record without ``hash`` is the line without its
    # top-level hash field: the last one, as only fixed fields (kind, options, prev_hash,
    # recorded_at_ms, seq) follow it and none of them can hold that text.
    field = _HASH_KEY + rec["hash"].encode("utf-8") + b'"'
    at = raw.rfind(_HASH_KEY)
    if raw[at:at + len(field)] != field:
        return "content does not match its hash (edited)"
    body = raw[:at] + raw[at + len(field):-1]
    if "mac" in rec:
        # Only fixed fields follow ``mac`` too: the last occurrence is the record's own.
        if not isinstance(rec["mac"], str):
            return "mac is not text (edited)"
        mac_field = _MAC_KEY + rec["mac"].encode("utf-8") + b'"'
        m = body.rfind(_MAC_KEY)
        if m < 0 or body[m:m + len(mac_field)] != mac_field:
            return "content does not match its hash (edited)"
        body = body[:m] + body[m + len(mac_field):]
    if hashlib.sha256(body).hexdigest() != rec["hash"]:
        return "content does not match its hash (edited)"
    return None
