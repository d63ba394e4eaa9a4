"""`riskgraph query` as a user runs it (a subprocess) against the real server over HTTP:
an unknown id exits 1, a server that cannot be reached is one line and exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.bolt_server import free_port
from tests.test_api_e2e import Running, server  # noqa: F401  (the live server fixture)

ROOT = Path(__file__).resolve().parents[1]


def query(url: str, key: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RISKGRAPH_API")}
    return subprocess.run([sys.executable, "-m", "api.cli", "query", "--url", url,
                           "--key", key, *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def test_query_answers_and_an_unknown_id_exits_1(server: Running) -> None:  # noqa: F811
    key = server.keys["limit_engine"]
    r = query(server.graphql, key, "risk", "u01")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["id"] == "u01"
    for what in ("risk", "decide", "ring"):
        r = query(server.graphql, server.keys["admin"], what, "nobody")
        assert r.returncode == 1, (what, r.returncode, r.stderr)
        assert "nobody" in r.stderr and "Traceback" not in r.stderr


def test_query_a_server_that_is_down_is_one_line_and_exit_2() -> None:
    url = f"http://127.0.0.1:{free_port()}/graphql"
    r = query(url, "some-key", "risk", "u0000042")
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "cannot reach the API" in r.stderr and "riskgraph serve" in r.stderr
