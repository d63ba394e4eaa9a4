"""Helpers for fault tests and bench/faults.py: the API as a real child process, a
client that keeps what the server acknowledged, and the audit trail read back."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from api.settings import ROLES, new_api_key
from tests.bolt_server import free_port

ROOT = Path(__file__).resolve().parents[1]
DECIDE = ('mutation($id: ID!, $dry: Boolean!) { decideLimit(userId: $id, dryRun: $dry) '
          '{ userId action dryRun fallback decidedAt lines { line limit } '
          'reasons { code en zh } } }')
USER = 'query($id: ID!) { user(id: $id) { id fraudRisk limits { totalLimit } } }'


def api_keys() -> tuple[dict[str, str], str]:
    """A key per role, and the RISKGRAPH_API_KEYS value for them."""
    made = {role: new_api_key(role) for role in ROLES}
    return {r: k for r, (k, _) in made.items()}, ",".join(e for _, e in made.values())


@dataclass
class ApiProcess:
    """``python -m api.cli serve`` in a child process, configured by RISKGRAPH_* env."""

    env: dict[str, str]
    port: int = 0
    log_path: Path | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 90.0) -> ApiProcess:
        # generous: a start loads torch, the model and the ring library, and the 2 shared
        # cores of a CI machine may be busy; a start that hangs still fails
        self.port = self.port or free_port()
        env = {**os.environ, "PYTHONPATH": str(ROOT), **self.env}
        with contextlib.ExitStack() as stack:
            log: IO[bytes] | int = (
                stack.enter_context(open(self.log_path, "ab")) if self.log_path
                else subprocess.DEVNULL)
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "api.cli", "serve", "--port", str(self.port),
                 "--log-level", "info"],
                cwd=ROOT, env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the API exited with {self.proc.returncode} at start; "
                                   f"log: {self.log_tail()}")
            try:
                if get(self.url + "/healthz")[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"the API did not answer /healthz in {timeout_s} s: "
                           f"{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL, as a crash or the OOM killer would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-20:])


def get(url: str, timeout: float = 10.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def graphql(url: str, key: str, query: str, variables: dict[str, Any] | None = None,
            timeout: float = 15.0) -> tuple[int, dict[str, Any]]:
    """(HTTP status, JSON body) of one GraphQL request; OSError when the server is gone."""
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    req = urllib.request.Request(url + "/graphql", data=body, method="POST", headers={
        "Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def codes(payload: dict[str, Any]) -> list[str]:
    return [str((e.get("extensions") or {}).get("code")) for e in payload.get("errors") or []]


def iso_to_ms(text: str) -> int:
    return round(dt.datetime.fromisoformat(text).timestamp() * 1000)


def audit_decisions(audit_dir: Path) -> list[tuple[str, int, bool]]:
    """(user id, decided_at_ms, applied) of every record in the audit log."""
    path = audit_dir / "decisions.jsonl"
    if not path.exists():
        return []
    out = []
    with open(path, "rb") as f:
        for raw in f:
            rec = json.loads(raw)
            d = rec["decision"]
            out.append((d["user_id"], int(d["decided_at_ms"]), bool(rec["applied"])))
    return out


def riskgraph(*args: str, env: dict[str, str], timeout: float = 120.0
              ) -> subprocess.CompletedProcess[str]:
    """The riskgraph CLI in a child process."""
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args], cwd=ROOT, capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env}, timeout=timeout)
