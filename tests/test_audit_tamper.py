"""Regressions of issue 15 on the audit trail, through `riskgraph audit` as operators run
it: a shorter log fails verification with the number of records missing (D16); keyed
records (RISKGRAPH_AUDIT_KEY) and a published head find forged, deleted and re-chained
records (D17); unkeyed logs still verify, with a warning."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from limits.audit import GENESIS, AuditLog, canonical, record_hash
from limits.engine import decide
from limits.errors import AuditError
from limits.policy import parse_policy, read_policy_text
from tests.faults import riskgraph
from tests.test_limits_audit import NOW, profile

KEY = "k" * 8 + "0123456789abcdef"


def make_log(home: Path, key: str | None, n: int = 6) -> AuditLog:
    text = read_policy_text()[0]
    policy = parse_policy(text)
    audit = AuditLog(home / "audit", key=key.encode()) if key else AuditLog(home / "audit")
    audit.keep_policy(policy, text)
    for i in range(n):
        audit.append(decide(profile(i), policy), applied=True, recorded_at_ms=NOW + i)
    return audit


def verify(home: Path, *extra: str, key: str | None = None) -> tuple[int, dict[str, Any], str]:
    env = {"RISKGRAPH_HOME": str(home)}
    if key:
        env["RISKGRAPH_AUDIT_KEY"] = key
    done = riskgraph("audit", "verify", "--json", *extra, env=env)
    return done.returncode, json.loads(done.stdout), done.stderr


def lines(audit: AuditLog) -> list[str]:
    return audit.path.read_text("utf-8").splitlines(keepends=True)


def rechain(records: list[dict[str, Any]]) -> str:
    """What a writer without the key can do: renumber, drop MACs and chain by SHA-256."""
    out, prev = [], GENESIS
    for seq, rec in enumerate(records):
        rec = {k: v for k, v in rec.items() if k not in ("hash", "mac")}
        rec["seq"], rec["prev_hash"] = seq, prev
        rec["hash"] = prev = record_hash(rec)
        out.append(canonical(rec) + "\n")
    return "".join(out)


@pytest.mark.parametrize("damage", ["drop_newest", "empty", "delete"])
@pytest.mark.parametrize("key", [None, KEY])
def test_d16_a_shorter_log_fails_with_the_number_missing(tmp_path: Path, damage: str,
                                                         key: str | None) -> None:
    audit = make_log(tmp_path, key)
    assert verify(tmp_path, key=key)[0] == 0
    if damage == "drop_newest":
        audit.path.write_text("".join(lines(audit)[:4]), "utf-8")
        missing = 2
    elif damage == "empty":
        audit.path.write_text("", "utf-8")
        missing = 6
    else:
        audit.path.unlink()
        missing = 6
    for _ in range(2):  # the index rebuilt by the first run still remembers
        code, out, _ = verify(tmp_path, key=key)
        assert code == 1 and out["ok"] is False, out
        assert out["missing"] == missing and f"{missing} record" in out["error"], out


def test_d16_nothing_is_recorded_on_a_shortened_log(tmp_path: Path) -> None:
    audit = make_log(tmp_path, None)
    audit.path.write_text("".join(lines(audit)[:5]), "utf-8")
    policy = parse_policy(read_policy_text()[0])
    again = AuditLog(tmp_path / "audit")  # another process, after the deletion
    with pytest.raises(AuditError, match="records"):
        again.append(decide(profile(9), policy), applied=True, recorded_at_ms=NOW + 9)
    assert len(lines(audit)) == 5


def test_d16_a_deleted_record_replaced_by_a_new_one_is_found(tmp_path: Path) -> None:
    audit = make_log(tmp_path, None)
    kept = lines(audit)[:5]
    records = [json.loads(x) for x in kept]
    forged = json.loads(lines(audit)[5])
    forged["decision"]["user_id"] = "u99"
    audit.path.write_text(rechain([*records, forged]), "utf-8")
    code, out, _ = verify(tmp_path)
    assert code == 1 and "record 5" in out["error"], out


@pytest.mark.parametrize("attack", ["append_forged", "delete_and_rechain", "edit_and_rechain"])
def test_d17_keyed_log_finds_what_a_writer_without_the_key_does(tmp_path: Path, attack: str
                                                                ) -> None:
    audit = make_log(tmp_path, KEY)
    records = [json.loads(x) for x in lines(audit)]
    assert all("mac" in r for r in records)
    if attack == "append_forged":
        forged = dict(records[-1])
        forged["decision"] = {**forged["decision"], "user_id": "u9", "action": "raise"}
        text = rechain([*records, forged])
        kept = "".join(lines(audit))  # the genuine records keep their MACs
        audit.path.write_text(kept + text.splitlines(keepends=True)[-1], "utf-8")
    elif attack == "delete_and_rechain":
        audit.path.write_text(rechain(records[:2] + records[3:]), "utf-8")
    else:
        records[1]["decision"]["user_id"] = "u99"
        audit.path.write_text(rechain(records), "utf-8")
    code, out, _ = verify(tmp_path, key=KEY)
    assert code == 1 and out["ok"] is False, out
    head = f"5:{records[5]['hash']}"
    assert verify(tmp_path, "--head", head, key=KEY)[0] == 1
    # The index deleted too: a forged record among keyed ones is still refused; a log
    # rewritten whole without MACs reads as an unkeyed log (a warning), and only the
    # head kept elsewhere tells.
    (tmp_path / "audit" / "decisions.idx.sqlite").unlink()
    code, out, _ = verify(tmp_path, key=KEY)
    if attack == "append_forged":
        assert code == 1 and "no MAC" in out["error"], out
    else:
        assert code == 0 and out["keyed"] == 0, out
        assert any("carry no MAC" in w for w in out["warnings"]), out
    code, out, _ = verify(tmp_path, "--head", head, key=KEY)
    assert code == 1, out


def test_d17_a_wrong_key_is_refused_and_no_key_warns(tmp_path: Path) -> None:
    make_log(tmp_path, KEY)
    code, out, _ = verify(tmp_path, key="another-key-0123456789")
    assert code == 1 and "MAC" in out["error"], out
    code, out, err = verify(tmp_path)
    assert code == 0 and out["keyed"] == 6, out
    assert any("not set" in w for w in out["warnings"])


def test_d17_unkeyed_log_still_verifies_with_a_warning_and_keyed_records_follow(
        tmp_path: Path) -> None:
    make_log(tmp_path, None, n=3)
    code, out, _ = verify(tmp_path, key=KEY)
    assert code == 0 and out["records"] == 3 and out["keyed"] == 0, out
    assert any("carry no MAC" in w for w in out["warnings"])
    make_log(tmp_path, KEY, n=2)  # the key is set from now on
    code, out, _ = verify(tmp_path, key=KEY)
    assert code == 0 and out["records"] == 5 and out["keyed"] == 2, out
    env = {"RISKGRAPH_HOME": str(tmp_path), "RISKGRAPH_AUDIT_KEY": KEY}
    head = riskgraph("audit", "head", env=env).stdout.strip()
    assert head.startswith("4:") and len(head) == 2 + 64
    assert verify(tmp_path, "--head", head, key=KEY)[0] == 0


def test_d17_a_rewrite_without_the_key_is_found_by_the_published_head(tmp_path: Path
                                                                      ) -> None:
    audit = make_log(tmp_path, None)
    env = {"RISKGRAPH_HOME": str(tmp_path)}
    head = riskgraph("audit", "head", env=env).stdout.strip()
    records = [json.loads(x) for x in lines(audit)]
    records[2]["decision"]["user_id"] = "u99"
    audit.path.write_text(rechain(records), "utf-8")
    shutil.rmtree(tmp_path / "audit" / "decisions.idx.sqlite", ignore_errors=True)
    (tmp_path / "audit" / "decisions.idx.sqlite").unlink(missing_ok=True)
    code, out, _ = verify(tmp_path)
    assert code == 0 and out["warnings"], out  # the chain alone cannot tell
    code, out, _ = verify(tmp_path, "--head", head)
    assert code == 1 and "head" in out["error"], out
    code, out, _ = verify(tmp_path, "--head", "9:" + "0" * 64)
    assert code == 1 and out["missing"] == 4, out
