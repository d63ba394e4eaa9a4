"""End to end: a real uvicorn on a free port, the gql clients, every store backend."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from api import services
from api.client import ApiClientError, AsyncRiskGraphClient, AuthenticationError, RiskGraphClient
from api.server import RiskGraphApp, create_app
from api.settings import ROLES, Settings, new_api_key, parse_api_keys
from graph.store import GraphStore
from tests.api_graph import load_small_graph
from tests.bolt_server import free_port


@dataclass
class Running:
    url: str
    keys: dict[str, str]
    app: RiskGraphApp

    @property
    def graphql(self) -> str:
        return self.url + "/graphql"

    def client(self, role: str) -> RiskGraphClient:
        return RiskGraphClient(self.graphql, self.keys[role], timeout=10)


def http(url: str, body: bytes | None = None, headers: dict[str, str] | None = None
         ) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, data=body, headers=headers or {},
                                 method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


@pytest.fixture
def server(store: GraphStore, tmp_path: Path, trained_models: Path) -> Iterator[Running]:
    shutil.copytree(trained_models, tmp_path / "home" / "models")
    load_small_graph(store)
    made = {role: new_api_key(role) for role in ROLES}
    settings = Settings(home=tmp_path / "home", api_timeout_s=1.0,
                        api_keys=parse_api_keys(",".join(e for _, e in made.values())))
    app = create_app(store, settings)
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None,
                                        access_log=False, lifespan="on"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not srv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield Running(f"http://127.0.0.1:{port}", {r: k for r, (k, _) in made.items()}, app)
    srv.should_exit = True
    thread.join(10)


def test_operations_endpoints(server: Running) -> None:
    status, _, body = http(server.url + "/healthz")
    assert (status, json.loads(body)["status"]) == (200, "ok")
    status, _, body = http(server.url + "/readyz")
    assert status == 200 and json.loads(body)["status"] == "ready"
    with server.client("limit_engine") as rg:
        rg.risk("u01")
    status, headers, body = http(server.url + "/metrics")
    text = body.decode()
    assert status == 200 and headers["content-type"].startswith("text/plain")
    assert ('riskgraph_request_duration_seconds_bucket{route="/graphql",operation="user",'
            'le="+Inf"} 1') in text
    assert "# TYPE riskgraph_limit_decisions_total counter" in text
    status, headers, body = http(server.graphql, headers={"Accept": "text/html"})
    assert status == 200 and b"graphiql" in body.lower()
    assert len(headers["x-request-id"]) == 32
    # Whole bodies, with their length: not chunked.
    assert int(headers["content-length"]) == len(body)
    assert "transfer-encoding" not in headers


def test_no_key_or_a_wrong_key_gets_401(server: Running) -> None:
    body = json.dumps({"query": "{ me { role } }"}).encode()
    for headers in [{}, {"Authorization": "Bearer nope"},
                    {"Authorization": f"Basic {server.keys['admin']}"}]:
        status, h, got = http(server.graphql, body, {"Content-Type": "application/json",
                                                     **headers})
        assert status == 401 and h["www-authenticate"].startswith("Bearer")
        assert json.loads(got)["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    with RiskGraphClient(server.graphql, "rg_wrong") as rg, pytest.raises(AuthenticationError):
        rg.risk("u01")


def test_malformed_http_requests(server: Running) -> None:
    auth = {"Authorization": f"Bearer {server.keys['admin']}",
            "Content-Type": "application/json", "X-Request-ID": "trace-42"}
    for body in [b"{not json", b"[]", b'{"query": 3}', b'{"query": "{ me { role } }", '
                 b'"variables": [1]}']:
        status, headers, got = http(server.graphql, body, auth)
        assert status == 400, body
        assert json.loads(got)["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
        assert headers["x-request-id"] == "trace-42"
    status, _, got = http(server.graphql, b"x" * 300_000, auth)
    assert status == 413
    status, _, got = http(server.graphql, json.dumps(
        {"query": "query A { me { role } } query B { me { keyId } }",
         "operationName": "C"}).encode(), auth)
    assert status == 200 and json.loads(got)["errors"][0]["extensions"]["code"]
    status, _, got = http(server.url + "/nowhere")
    assert status == 404


def test_investigator_client_linked_and_ring(server: Running) -> None:
    with server.client("investigator") as rg:
        page = rg.linked("u01", depth=2, first=2)
        assert page["totalCount"] == 3 and page["pageInfo"]["hasNextPage"]
        rest = rg.linked("u01", depth=2, first=2, after=page["pageInfo"]["endCursor"])
        ids = [e["node"]["id"] for e in page["edges"] + rest["edges"]]
        assert ids == ["u02", "u03", "u04"] and not rest["pageInfo"]["hasNextPage"]
        ring = rg.ring("u06")
        assert ring is not None and ring["id"] == "ring:u05" and ring["size"] == 3
        assert rg.ring("u08") is None
        with pytest.raises(ApiClientError) as err:
            rg.linked("nobody")
        assert err.value.codes == ["NOT_FOUND"]
        with pytest.raises(ApiClientError) as err:
            rg.execute("{ users { edges { node { linkedAccounts { edges { node { linkedAccounts"
                       " { edges { node { linkedAccounts { edges { node { id } } } } } } } } } }"
                       " } } }")
        assert err.value.codes == ["QUERY_TOO_DEEP"]
        with pytest.raises(ApiClientError) as err:
            rg.decide("u01", dry_run=False)
        assert err.value.codes == ["FORBIDDEN"]
        flag = rg.execute('mutation { flagUser(userId: "u02", reason: "same device as u01") '
                          '{ by } }')
        assert flag["flagUser"]["by"].startswith("investigator:")


def test_limit_engine_client_decide_and_risk_async(server: Running) -> None:
    async def go() -> tuple[Any, ...]:
        async with AsyncRiskGraphClient(server.graphql, server.keys["limit_engine"]) as rg:
            decisions = await asyncio.gather(*(rg.decide(u) for u in ["u01", "u07", "u01"]))
            risk = await rg.risk("u02")
            applied = await rg.decide("u01", dry_run=False)
            try:
                await rg.linked("u01")
            except ApiClientError as exc:
                forbidden = exc.codes
            return decisions, risk, applied, forbidden

    decisions, risk, applied, forbidden = asyncio.run(go())
    # u01's fraud risk (0.9) is above the policy's hard stop: frozen, twice the same.
    assert [d["action"] for d in decisions] == ["freeze", "keep", "freeze"]
    assert decisions[0]["reasons"][0]["code"] == "FRAUD_HOLD"
    assert decisions[0]["reasons"][0]["zh"] and decisions[0]["reasons"][0]["en"]
    assert risk["fraudRisk"] == 0.7 and risk["limits"]["totalLimit"] == 3000.0
    assert applied["dryRun"] is False
    assert forbidden == ["FORBIDDEN"]
    _, _, body = http(server.url + "/metrics")
    assert 'riskgraph_limit_decisions_total{action="freeze",dry_run="true"} 2' in body.decode()


def test_request_time_limit(server: Running, monkeypatch: pytest.MonkeyPatch) -> None:
    real = services.explain_user

    def slow(*args: Any, **kwargs: Any) -> Any:  # a stalled model, injected
        time.sleep(3)
        return real(*args, **kwargs)

    monkeypatch.setattr(services, "explain_user", slow)
    with server.client("admin") as rg:
        started = time.monotonic()
        with pytest.raises(ApiClientError) as err:
            rg.execute('{ user(id: "u01") { explanation(topK: 5) { modelVersion } } }')
        assert err.value.codes == ["TIMEOUT"]
        assert time.monotonic() - started < 1.4
        assert rg.risk("u01")["id"] == "u01"  # the server still answers
