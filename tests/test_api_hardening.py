"""Regressions of issue 15 on the API, each through the real server over HTTP:
fragment bombs (D12), lone surrogates (D13), deep JSON (D14), several operations
without a name (D15), a damaged embedded store (D18) and the model path (rescoreUser)."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from graph import queries
from graph.embedded import EmbeddedStore
from tests.api_graph import load_small_graph
from tests.faults import DECIDE, ApiProcess, api_keys, codes, get, graphql

USER = 'query($id: ID!) { user(id: $id) { id profile { name } } }'


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ApiProcess, dict[str, str],
                                                                        Path]]:
    home = tmp_path_factory.mktemp("hardening")
    store = EmbeddedStore(home / "graph")
    store.init()
    load_small_graph(store)
    store.close()
    keys, entries = api_keys()
    env = {"RISKGRAPH_HOME": str(home), "RISKGRAPH_STORE": "embedded",
           "RISKGRAPH_API_KEYS": entries}
    api = ApiProcess(env, log_path=home / "api.log").start()
    try:
        yield api, keys, home
    finally:
        api.stop()


def post_raw(url: str, key: str, body: bytes, timeout: float = 15.0
             ) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(url + "/graphql", data=body, method="POST", headers={
        "Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def fragment_bomb(levels: int) -> str:
    """Each fragment spreads the next twice: 2**levels paths in about 45 bytes a level."""
    parts = ["query { me { ...F0 } }"]
    parts += [f"fragment F{i} on Caller {{ ...F{i + 1} ...F{i + 1} }}" for i in range(levels)]
    parts.append(f"fragment F{levels} on Caller {{ role }}")
    return "\n".join(parts)


@pytest.mark.parametrize("levels", [22, 60, 180])
def test_d12_chained_fragments_are_refused_at_once(served: tuple[ApiProcess, dict[str, str],
                                                                 Path], levels: int) -> None:
    api, keys, _ = served
    doc = fragment_bomb(levels)
    started = time.monotonic()
    # Before the fix, 23 levels held a worker for 90 s: the client gives up at 15 s.
    status, body = graphql(api.url, keys["investigator"], doc, timeout=15)
    elapsed = time.monotonic() - started
    assert status == 200 and codes(body) == ["QUERY_TOO_COSTLY"], body
    assert body["data"] is None
    assert get(api.url + "/healthz", timeout=5)[0] == 200
    assert elapsed < 15


def test_d12_fragments_spread_a_few_times_are_measured_and_run(
        served: tuple[ApiProcess, dict[str, str], Path]) -> None:
    api, keys, _ = served
    doc = ('query { user(id: "u01") { ...A ...A } } fragment A on User { ...B ...B } '
           "fragment B on User { id profile { name } }")
    status, body = graphql(api.url, keys["investigator"], doc)
    assert status == 200 and "errors" not in body, body
    assert body["data"]["user"]["id"] == "u01"


@pytest.mark.parametrize("variables", [
    {"id": "\ud800"},
    {"id": "u01", "extra": ["ok", {"k\udfff": 1}]},
])
def test_d13_lone_surrogate_in_variables_is_bad_request(
        served: tuple[ApiProcess, dict[str, str], Path], variables: dict[str, Any]) -> None:
    api, keys, _ = served
    body = json.dumps({"query": USER, "variables": variables}).encode()  # \ud800 escaped
    status, payload = post_raw(api.url, keys["admin"], body)
    assert status == 400 and codes(payload) == ["BAD_REQUEST"], payload
    assert "surrogate" in payload["errors"][0]["message"]


def test_d13_lone_surrogate_as_user_of_an_applied_decision(
        served: tuple[ApiProcess, dict[str, str], Path]) -> None:
    api, keys, home = served
    body = json.dumps({"query": DECIDE, "variables": {"id": "\ud800", "dry": False}}).encode()
    status, payload = post_raw(api.url, keys["limit_engine"], body)
    assert status == 400 and codes(payload) == ["BAD_REQUEST"], payload
    # A surrogate pair is text: a well-formed id that is unknown.
    status, payload = graphql(api.url, keys["limit_engine"], DECIDE,
                              {"id": "\U0001f600", "dry": True})
    assert status == 200 and "INTERNAL" not in codes(payload), payload


def test_d13_lone_surrogate_in_the_query_text(served: tuple[ApiProcess, dict[str, str], Path]
                                              ) -> None:
    api, keys, _ = served
    status, payload = graphql(api.url, keys["admin"], '{ user(id: "\\ud800") { id } }')
    assert status in (200, 400) and codes(payload), payload
    assert "INTERNAL" not in codes(payload), payload


def test_d14_deeply_nested_json_is_bad_request(served: tuple[ApiProcess, dict[str, str], Path]
                                               ) -> None:
    api, keys, _ = served
    depth = 100_000
    body = b'{"query": "{ me { role } }", "variables": {"x": ' + b"[" * depth + b"]" * depth \
        + b"}}"
    assert len(body) < 256 * 1024
    status, payload = post_raw(api.url, keys["admin"], body)
    assert status == 400 and codes(payload) == ["BAD_REQUEST"], payload
    assert graphql(api.url, keys["admin"], "{ me { role } }")[0] == 200


def test_d15_several_operations_need_an_operation_name(
        served: tuple[ApiProcess, dict[str, str], Path]) -> None:
    api, keys, _ = served
    doc = 'query A { me { role } } query B { user(id: "u01") { id } }'
    status, payload = graphql(api.url, keys["admin"], doc)
    assert status == 200 and codes(payload) == ["BAD_REQUEST"], payload
    assert payload["data"] is None and "operationName" in payload["errors"][0]["message"]
    body = json.dumps({"query": doc, "operationName": "B"}).encode()
    status, payload = post_raw(api.url, keys["admin"], body)
    assert status == 200 and payload["data"] == {"user": {"id": "u01"}}, payload
    body = json.dumps({"query": doc, "operationName": "C"}).encode()
    status, payload = post_raw(api.url, keys["admin"], body)
    assert codes(payload) == ["BAD_REQUEST"] and payload.get("data") is None, payload


def test_rescore_without_a_model_names_no_server_path(
        served: tuple[ApiProcess, dict[str, str], Path]) -> None:
    api, keys, home = served
    status, payload = graphql(api.url, keys["admin"],
                              'mutation { rescoreUser(userId: "u01") { id } }')
    assert codes(payload) == ["UNAVAILABLE"], payload
    message = payload["errors"][0]["message"]
    assert "no trained model" in message
    assert str(home) not in message and "/" not in message.replace("(riskgraph train)", "")


def _damage(path: Path, how: str) -> None:
    size = path.stat().st_size
    with open(path, "r+b") as f:
        if how == "header":
            f.write(b"\xff" * 100)
        elif how == "zeros":
            f.write(b"\0" * size)
        else:  # every page, the file's header left intact
            f.seek(100)
            f.write(os.urandom(size - 100))


@pytest.mark.parametrize("how", ["header", "zeros", "pages"])
def test_d18_damaged_store_file_is_unavailable_with_the_fallback(tmp_path: Path, how: str
                                                                 ) -> None:
    home = tmp_path / "home"
    store = EmbeddedStore(home / "graph")
    store.init()
    load_small_graph(store)
    queries.ensure_pass(store)  # as `riskgraph load` leaves a store: nothing to write later
    store.close()
    keys, entries = api_keys()
    # One process: a worker started after the damage would not start at all.
    env = {"RISKGRAPH_HOME": str(home), "RISKGRAPH_STORE": "embedded",
           "RISKGRAPH_API_KEYS": entries, "RISKGRAPH_API_WORKERS": "1"}
    api = ApiProcess(env, log_path=tmp_path / "api.log").start()
    try:
        assert get(api.url + "/readyz")[0] == 200
        assert graphql(api.url, keys["investigator"], USER, {"id": "u01"})[0] == 200
        good = (home / "graph" / "graph.sqlite").read_bytes()
        _damage(home / "graph" / "graph.sqlite", how)

        # Pages SQLite still holds in memory may answer; what it must read from the
        # file answers UNAVAILABLE, never INTERNAL, and decisions fall back.
        scan = "{ users(first: 100) { edges { node { id profile { name } } } } }"
        status, payload = graphql(api.url, keys["investigator"], scan)
        assert "INTERNAL" not in codes(payload), payload
        if how != "header":
            assert codes(payload) == ["UNAVAILABLE"], payload
        status, payload = graphql(api.url, keys["limit_engine"], DECIDE,
                                  {"id": "u03", "dry": False})
        assert status == 200 and "INTERNAL" not in codes(payload), payload
        if how == "zeros":
            assert "errors" not in payload, payload
            d = payload["data"]["decideLimit"]
            assert d["fallback"] is True and d["action"] == "keep" and d["lines"] == []
            assert [r["code"] for r in d["reasons"]] == ["RISK_DATA_UNAVAILABLE"]
        status, ready = get(api.url + "/readyz")
        assert status == 503 and json.loads(ready)["status"] == "unavailable"
        assert get(api.url + "/healthz")[0] == 200

        # The file restored: ready again without a restart.
        (home / "graph" / "graph.sqlite").write_bytes(good)
        deadline = time.monotonic() + 10
        while get(api.url + "/readyz")[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert get(api.url + "/readyz")[0] == 200
    finally:
        api.stop()
