"""The GraphQL schema through schema.execute, no HTTP: reads, pagination, DataLoader
batching, safety limits, error codes, flags and the service seams."""

from __future__ import annotations

import asyncio
import json
import random
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from api import services
from api.auth import Principal
from api.bootstrap import bootstrap
from api.context import Context, Runtime
from api.dataloaders import linked_accounts_many, rings_of_many
from api.schema import schema
from api.settings import Settings
from graph import linkindex, queries
from graph.embedded import EmbeddedStore
from graph.errors import NotFoundError
from graph.store import GraphStore
from tests.api_graph import USERS, load_small_graph


@pytest.fixture
def runtime(embedded_store: GraphStore, tmp_path: Path) -> Runtime:
    load_small_graph(embedded_store)
    rt = bootstrap(Settings(home=tmp_path / "home"), embedded_store)
    yield rt
    rt.close()


def run(rt: Runtime, query: str, variables: dict[str, Any] | None = None,
        role: str = "investigator") -> tuple[Any, list[dict[str, Any]]]:
    ctx = Context(rt, Principal(role, f"{role}:test"), "req-1")
    result = asyncio.run(schema.execute(query, variable_values=variables, context_value=ctx))
    return result.data, [e.formatted for e in result.errors or []]


def codes(errors: list[dict[str, Any]]) -> list[str]:
    return [e["extensions"]["code"] for e in errors]


def test_user_reads_scores_features_products_and_limits(runtime: Runtime) -> None:
    data, errors = run(runtime, """{ user(id: "u01") {
        id fraudRisk relationalRisk modelVersion creditFeatures { creditScore income }
        products { productId limit balance product { kind } }
        limits { totalLimit totalBalance lines { line limit available } } } }""")
    assert errors == []
    u = data["user"]
    assert (u["id"], u["fraudRisk"], u["modelVersion"]) == ("u01", 0.9, "test-1")
    assert u["creditFeatures"] == {"creditScore": 600, "income": 120000.0}
    assert [p["product"]["kind"] for p in u["products"]] == ["bnpl", "cash_loan"]
    assert u["limits"]["lines"] == [
        {"line": "bnpl", "limit": 5000.0, "available": 3800.0},
        {"line": "cash_loan", "limit": 20000.0, "available": 20000.0},
    ]
    assert u["limits"]["totalLimit"] == 25000.0


def test_pii_is_masked_for_the_limit_engine_only(runtime: Runtime) -> None:
    q = '{ user(id: "u02") { profile { name city masked } } }'
    for role, name in [("investigator", "Nameu02"), ("admin", "Nameu02"),
                       ("limit_engine", "N***")]:
        data, errors = run(runtime, q, role=role)
        assert errors == []
        assert data["user"]["profile"]["name"] == name
        assert data["user"]["profile"]["masked"] is (role == "limit_engine")


LINKED_PAGE = """query($id: ID!, $depth: Int!, $first: Int!, $after: String, $via: [LinkType!]) {
  user(id: $id) { linkedAccounts(depth: $depth, first: $first, after: $after, via: $via) {
    totalCount pageInfo { hasNextPage hasPreviousPage endCursor }
    edges { cursor depth strength node { id } links { relType itemId fromUser } } } } }"""


def test_linked_accounts_pages_walk_the_ranked_order(runtime: Runtime) -> None:
    expected = [a.user_id for a in queries.linked_accounts(runtime.store, "u01", depth=3)]
    assert expected == ["u02", "u03", "u04"]
    seen, after = [], None
    for _ in range(10):
        data, errors = run(runtime, LINKED_PAGE,
                           {"id": "u01", "depth": 3, "first": 1, "after": after})
        assert errors == []
        conn = data["user"]["linkedAccounts"]
        assert conn["totalCount"] == 3
        seen += [e["node"]["id"] for e in conn["edges"]]
        assert conn["pageInfo"]["hasPreviousPage"] is (after is not None)
        if not conn["pageInfo"]["hasNextPage"]:
            break
        after = conn["pageInfo"]["endCursor"]
    assert seen == expected
    # u04 comes at depth 2, through the phone u03 shares
    data, _ = run(runtime, LINKED_PAGE, {"id": "u01", "depth": 2, "first": 5})
    last = data["user"]["linkedAccounts"]["edges"][-1]
    assert last["depth"] == 2 and last["links"] == [
        {"relType": "HAS_PHONE", "itemId": "p1", "fromUser": "u03"}]


def test_linked_accounts_edges_of_paging(runtime: Runtime) -> None:
    data, errors = run(runtime, LINKED_PAGE, {"id": "u01", "depth": 1, "first": 0})
    assert errors == [] and data["user"]["linkedAccounts"]["edges"] == []
    assert data["user"]["linkedAccounts"]["pageInfo"]["hasNextPage"] is True
    data, _ = run(runtime, LINKED_PAGE, {"id": "u08", "depth": 2, "first": 5})
    assert data["user"]["linkedAccounts"]["totalCount"] == 0  # only a device to itself
    data, _ = run(runtime, LINKED_PAGE, {"id": "u05", "depth": 1, "first": 5,
                                         "via": ["TRANSFERRED"]})
    edges = data["user"]["linkedAccounts"]["edges"]
    assert edges == []  # u05 only referred; the transfers are u06's
    data, _ = run(runtime, LINKED_PAGE, {"id": "u06", "depth": 1, "first": 5,
                                         "via": ["TRANSFERRED"]})
    assert [e["node"]["id"] for e in data["user"]["linkedAccounts"]["edges"]] == ["u07"]
    for variables, code in [
        ({"first": 101}, "BAD_USER_INPUT"),
        ({"first": -1}, "BAD_USER_INPUT"),
        ({"depth": 5}, "BAD_USER_INPUT"),
        ({"after": "not-a-cursor"}, "BAD_USER_INPUT"),
        ({"after": "WyJyaW5ncyIsWy00LCJyaW5nOnUwMSJdXQ=="}, "BAD_USER_INPUT"),  # a rings cursor
        ({"via": ["NOT_A_LINK"]}, "BAD_USER_INPUT"),
        ({"id": "nobody"}, "NOT_FOUND"),
        ({"id": "x" * 300}, "BAD_USER_INPUT"),
    ]:
        v = {"id": "u01", "depth": 1, "first": 5, **variables}
        _, errors = run(runtime, LINKED_PAGE, v)
        assert codes(errors) == [code], (variables, errors)
        assert "Traceback" not in json.dumps(errors)


def test_rings_ring_and_users_pagination(runtime: Runtime) -> None:
    data, errors = run(runtime, """{ rings(first: 1, kind: "all") { totalCount
        pageInfo { hasNextPage endCursor }
        edges { node { id size kind suspicion why risk { maxFraudRisk } members { id } } } } }""")
    assert errors == []
    assert data["rings"]["totalCount"] == 2
    first = data["rings"]["edges"][0]["node"]
    assert {k: first[k] for k in ("id", "size", "risk", "members")} == {
        "id": "ring:u01", "size": 4, "risk": {"maxFraudRisk": 0.9},
        "members": [{"id": u} for u in ["u01", "u02", "u03", "u04"]]}
    assert first["kind"] in ("ring", "community") and 0 <= first["suspicion"] <= 1
    assert first["why"]
    after = data["rings"]["pageInfo"]["endCursor"]
    data, _ = run(runtime, 'query($a: String) { rings(first: 5, after: $a, kind: "all") '
                           '{ edges { node { id suspicion } } pageInfo { hasNextPage } } }',
                  {"a": after})
    assert [e["node"]["id"] for e in data["rings"]["edges"]] == ["ring:u05"]
    assert data["rings"]["edges"][0]["node"]["suspicion"] <= first["suspicion"]
    assert data["rings"]["pageInfo"]["hasNextPage"] is False
    data, errors = run(runtime, '{ rings(kind: "gang") { totalCount } }')
    assert codes(errors) == ["BAD_USER_INPUT"]
    data, errors = run(runtime, '{ ring(id: "ring:u02") { id } }')  # u02 is not the smallest
    assert codes(errors) == ["NOT_FOUND"]
    data, errors = run(runtime, '{ ring(id: "ring:u05") { size directLinks { relType count } } }')
    assert data["ring"]["directLinks"] == [{"relType": "REFERRED", "count": 1},
                                           {"relType": "TRANSFERRED", "count": 2}]
    ids, after = [], None
    while True:
        data, errors = run(runtime, 'query($a: String) { users(first: 2, after: $a, '
                           'filter: {city: "Shanghai"}) { edges { node { id } } '
                           'pageInfo { hasNextPage endCursor } } }', {"a": after})
        assert errors == []
        ids += [e["node"]["id"] for e in data["users"]["edges"]]
        if not data["users"]["pageInfo"]["hasNextPage"]:
            break
        after = data["users"]["pageInfo"]["endCursor"]
    assert ids == USERS[6:]
    data, _ = run(runtime, '{ users(first: 3, filter: {minFraudRisk: 0.45}) '
                           '{ edges { node { id } } } }')
    assert [e["node"]["id"] for e in data["users"]["edges"]] == ["u01", "u02", "u03"]


def test_link_type_enum_names_every_link_type() -> None:
    from api.types import LinkType

    assert [t.value for t in LinkType] == list(queries.LINK_TYPES)


def test_device_merchant_product_and_unknown_ids(runtime: Runtime) -> None:
    data, errors = run(runtime, '{ device(id: "d1") { kind users { id } } '
                                'merchant(id: "m1") { name } product(id: "cash") { kind } }')
    assert errors == []
    assert data["device"]["users"] == [{"id": "u01"}, {"id": "u02"}, {"id": "u03"}]
    assert (data["merchant"]["name"], data["product"]["kind"]) == ("Tea House", "cash_loan")
    data, errors = run(runtime, '{ user(id: "zz") { id } device(id: "zz") { id } }')
    assert data == {"user": None, "device": None}
    assert codes(errors) == ["NOT_FOUND", "NOT_FOUND"]


@pytest.mark.parametrize("query, code", [
    ("{ user(id: 1 { id } }", "GRAPHQL_PARSE_FAILED"),
    ("{ user(id: \"u01\") { nosuchfield } }", "GRAPHQL_VALIDATION_FAILED"),
    ("{ user { id } }", "GRAPHQL_VALIDATION_FAILED"),
    ("{ " + " ".join(f"a{i}: me {{ role }}" for i in range(40)) + " }",
     "GRAPHQL_VALIDATION_FAILED"),  # alias bomb
    ("{ users { edges { node { linkedAccounts { edges { node { linkedAccounts { edges { node {"
     " linkedAccounts { edges { node { id } } } } } } } } } } } } }", "QUERY_TOO_DEEP"),
    ("{ users(first: 100) { edges { node { linkedAccounts(depth: 4, first: 100) "
     "{ edges { node { id } } } } } } }", "QUERY_TOO_COSTLY"),
    ("{ a: rings { totalCount } b: rings(minSize: 4) { totalCount } "
     "c: rings(minSize: 5) { edges { node { members(first: 100) { ring { id } } } } } }",
     "QUERY_TOO_COSTLY"),
])
def test_bombs_and_malformed_queries_get_codes(runtime: Runtime, query: str, code: str) -> None:
    data, errors = run(runtime, query, role="admin")
    assert code in codes(errors), errors
    assert data is None


def test_cost_uses_variables_and_introspection_is_free(runtime: Runtime) -> None:
    q = ("query($n: Int!) { users(first: $n) { edges { node { "
         "linkedAccounts(depth: 3, first: $n) { edges { node { id } } } } } } }")
    _, errors = run(runtime, q, {"n": 100})
    assert codes(errors) == ["QUERY_TOO_COSTLY"]
    _, errors = run(runtime, q, {"n": 2})
    assert errors == []
    data, errors = run(runtime, "{ __schema { queryType { name } types { name fields "
                                "{ name type { name ofType { name ofType { name } } } } } } }")
    assert errors == [] and data["__schema"]["queryType"]["name"] == "Query"
    _, errors = run(runtime, '{ user(id: "u01") { id } }', {"x": {"nested": [1, 2]}})
    assert errors == []
    _, errors = run(runtime, 'query($id: ID!) { user(id: $id) { id } }', {"id": {"a": 1}})
    assert codes(errors) == ["BAD_USER_INPUT"]


class CountingStore:
    """A real store behind a proxy that counts the calls made to it."""

    def __init__(self, inner: GraphStore) -> None:
        self._inner = inner
        self.calls: dict[str, int] = {}
        self.name = inner.name

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] = self.calls.get(name, 0) + 1
            return attr(*args, **kwargs)

        return counted

    @property
    def total(self) -> int:
        return sum(self.calls.values())


def random_graph(store: GraphStore, n_users: int, seed: int) -> list[str]:
    rnd = random.Random(seed)
    users = [f"r{i:04d}" for i in range(n_users)]
    store.upsert_nodes("User", {"id": users, "fraud_risk": [rnd.random() for _ in users]})
    devices = [f"dev{i}" for i in range(max(1, n_users // 3))]
    phones = [f"ph{i}" for i in range(max(1, n_users // 4))]
    store.upsert_nodes("Device", {"id": devices})
    store.upsert_nodes("Phone", {"id": phones})
    store.upsert_relationships("USES", {"src": users,
                                        "dst": [rnd.choice(devices) for _ in users]})
    some = rnd.sample(users, n_users // 2)
    store.upsert_relationships("HAS_PHONE", {"src": some,
                                             "dst": [rnd.choice(phones) for _ in some]})
    pairs = [(rnd.choice(users), rnd.choice(users)) for _ in range(n_users // 3)]
    store.upsert_relationships("TRANSFERRED", {"src": [a for a, _ in pairs],
                                               "dst": [b for _, b in pairs],
                                               "id": [f"t{i}" for i in range(len(pairs))]})
    return users


PAGE_WITH_LINKS = """query($n: Int!) { users(first: $n) { edges { node { id fraudRisk
  linkedAccounts(depth: 2, first: 10) { totalCount edges { node { id fraudRisk } } } } } } }"""


def test_a_page_of_users_with_linked_accounts_costs_bounded_store_calls(
    embedded_store: GraphStore, tmp_path: Path
) -> None:
    random_graph(embedded_store, 200, seed=7)
    counts = {}
    for n in (5, 50):
        store = CountingStore(embedded_store)
        rt = bootstrap(Settings(home=tmp_path), store)  # type: ignore[arg-type]
        data, errors = run(rt, PAGE_WITH_LINKS, {"n": n})
        rt.close()
        assert errors == [] and len(data["users"]["edges"]) == n
        assert sum(e["node"]["linkedAccounts"]["totalCount"] for e in data["users"]["edges"]) > n
        counts[n] = store.total
    # one scan (node_ids + get_nodes), one missing_nodes, at most 6 adjacent calls per
    # level for two levels, one get_nodes for the linked users: independent of page size
    assert counts[50] <= 16, counts
    assert counts[50] == counts[5]


@hsettings(max_examples=15, deadline=None,
           suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), n=st.integers(3, 25), depth=st.integers(1, 3),
       via=st.sampled_from([None, ("USES",), ("HAS_PHONE", "TRANSFERRED")]))
def test_batched_searches_match_the_per_user_queries(
    tmp_path_factory: pytest.TempPathFactory, seed: int, n: int, depth: int,
    via: tuple[str, ...] | None,
) -> None:
    store = EmbeddedStore(tmp_path_factory.mktemp("g") / "graph")
    store.init()
    try:
        users = random_graph(store, n, seed)
        many = linked_accounts_many(store, users + ["ghost"], depth, via)
        assert isinstance(many["ghost"], Exception)
        rings = rings_of_many(store, users)
        for u in users:
            assert many[u] == queries.linked_accounts(store, u, depth=depth, via=via)
            assert rings[u] == queries.ring_of(store, u)
        # With a link index the batch is answered from it, with the same answers.
        linkindex.refresh(store)
        with_index = linked_accounts_many(store, users + ["ghost"], depth, via)
        assert isinstance(with_index.pop("ghost"), NotFoundError)
        assert with_index == {u: many[u] for u in users}
        assert rings_of_many(store, users) == rings
    finally:
        store.close()


def test_batched_searches_use_the_link_index_without_walking_the_store(
    embedded_store: EmbeddedStore, monkeypatch: pytest.MonkeyPatch,
) -> None:
    users = random_graph(embedded_store, 60, seed=3)
    many = linked_accounts_many(embedded_store, users + ["ghost"], 2)
    rings = rings_of_many(embedded_store, users)
    linkindex.refresh(embedded_store)

    def no_walk(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the link index should have answered")

    monkeypatch.setattr(embedded_store, "adjacent", no_walk)
    with_index = linked_accounts_many(embedded_store, users + ["ghost"], 2)
    assert isinstance(with_index.pop("ghost"), NotFoundError)
    assert with_index == {u: many[u] for u in users}
    assert rings_of_many(embedded_store, users) == rings


def test_model_fields_answer_unavailable_before_any_training(runtime: Runtime) -> None:
    data, errors = run(runtime, '{ user(id: "u01") { id explanation { modelVersion } } }',
                       role="admin")
    assert data["user"]["id"] == "u01"
    assert codes(errors) == ["UNAVAILABLE"]
    assert "riskgraph train" in errors[0]["message"]


def test_rescore_and_explain_with_a_trained_model(runtime: Runtime, trained_models: Path
                                                  ) -> None:
    shutil.copytree(trained_models, runtime.settings.models_dir)
    # u08 is alone on device d2; tie it to the u01 ring's device and rescore on demand.
    before, errors = run(runtime, 'mutation { rescoreUser(userId: "u08") { relationalRisk '
                                  'modelVersion } }', role="limit_engine")
    assert errors == [] and before["rescoreUser"]["modelVersion"].startswith("user-")
    runtime.store.upsert_relationships("USES", {"src": ["u08"], "dst": ["d1"]})
    after, errors = run(runtime, 'mutation { rescoreUser(userId: "u08") { relationalRisk '
                                 'fraudRisk } }', role="limit_engine")
    assert errors == []
    assert after["rescoreUser"]["relationalRisk"] > before["rescoreUser"]["relationalRisk"]
    data, errors = run(runtime, '{ user(id: "u08") { explanation(topK: 3) { modelVersion '
                                'relationalRisk drivers { label id relType weight } } } }',
                       role="admin")
    assert errors == []
    e = data["user"]["explanation"]
    assert abs(e["relationalRisk"] - after["rescoreUser"]["relationalRisk"]) < 1e-6
    assert len(e["drivers"]) == 3
    assert {d["id"] for d in e["drivers"]} & {"d1", "u01", "u02", "u03"}
    assert e["drivers"] == sorted(e["drivers"], key=lambda d: -abs(d["weight"]))


def test_decide_limit_runs_the_real_policy(runtime: Runtime) -> None:
    from limits.policy import parse_policy, read_policy_text

    threshold = parse_policy(*read_policy_text(None)).hard_stop.fraud_threshold
    assert threshold < 0.9  # u01's fraud risk is above the hard stop: frozen
    data, errors = run(runtime, """mutation { decideLimit(userId: "u01", dryRun: false) {
        userId action dryRun policyVersion decidedAt lines { line action current limit change }
        reasons { code en zh } counterfactuals { lever needed en zh } } }""",
                       role="limit_engine")
    assert errors == []
    d = data["decideLimit"]
    assert (d["userId"], d["action"], d["dryRun"]) == ("u01", "freeze", False)
    assert d["policyVersion"]
    assert d["lines"] == [
        {"line": "bnpl", "action": "freeze", "current": 5000.0, "limit": 0.0, "change": -5000.0},
        {"line": "cash_loan", "action": "freeze", "current": 20000.0, "limit": 0.0,
         "change": -20000.0},
    ]
    assert [r["code"] for r in d["reasons"]] == ["FRAUD_HOLD"]
    assert all(r["en"] and r["zh"] and r["en"] != r["zh"] for r in d["reasons"])
    assert d["counterfactuals"] and d["counterfactuals"][0]["lever"] == "fraud_risk"
    assert runtime.metrics.decisions.value("freeze", "false") == 1
    assert [a["action"] for a in runtime.actions.read()] == ["decideLimit"]
    # Applied: the store now holds the frozen limits, and the history has the decision.
    data, errors = run(runtime, '{ user(id: "u01") { limits { lines { line limit } } '
                                'decisionHistory { action dryRun reasons { code } } } }')
    assert errors == []
    assert data["user"]["limits"]["lines"] == [{"line": "bnpl", "limit": 0.0},
                                               {"line": "cash_loan", "limit": 0.0}]
    assert data["user"]["decisionHistory"] == [
        {"action": "freeze", "dryRun": False, "reasons": [{"code": "FRAUD_HOLD"}]}]


def test_dry_run_changes_nothing(runtime: Runtime) -> None:
    data, errors = run(runtime, 'mutation { decideLimit(userId: "u01") { action dryRun } }',
                       role="limit_engine")
    assert errors == [] and data["decideLimit"] == {"action": "freeze", "dryRun": True}
    data, _ = run(runtime, '{ user(id: "u01") { limits { totalLimit } decisionHistory '
                           '{ action } } }')
    assert data["user"] == {"limits": {"totalLimit": 25000.0}, "decisionHistory": []}


def test_review_counts_actions_and_unknown_users_are_not_found(runtime: Runtime) -> None:
    data, errors = run(runtime, 'mutation { reviewLimits(userIds: ["u01", "u02", "u08"]) '
                                '{ reviewed dryRun byAction { action count } } }', role="admin")
    assert errors == []
    assert data["reviewLimits"] == {"reviewed": 3, "dryRun": True, "byAction": [
        {"action": "freeze", "count": 1}, {"action": "keep", "count": 2}]}
    data, errors = run(runtime, 'mutation { decideLimit(userId: "nobody") { action } }',
                       role="admin")
    assert codes(errors) == ["NOT_FOUND"]


def test_unexpected_errors_are_masked(runtime: Runtime, monkeypatch: pytest.MonkeyPatch
                                      ) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(services, "decide_limit", broken)  # a fault, injected
    data, errors = run(runtime, 'mutation { decideLimit(userId: "u12") { action } }',
                       role="admin")
    assert codes(errors) == ["INTERNAL"]
    assert "secret" not in json.dumps(errors) and "req-1" in errors[0]["message"]


def test_flags_are_stored_audited_and_read_back(runtime: Runtime) -> None:
    data, errors = run(runtime, 'mutation { flagUser(userId: "u03", reason: "shares d1 '
                                'with two flagged accounts") { id userId by reason } }')
    assert errors == []
    assert data["flagUser"]["by"] == "investigator:test"
    lines = (runtime.settings.flags_dir / "flags.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["user_id"] == "u03"
    audit = runtime.actions.read()
    assert audit[0]["action"] == "flagUser" and audit[0]["request_id"] == "req-1"
    # a second runtime (another server process) reads the same file
    other = bootstrap(runtime.settings, runtime.store)
    data, _ = run(other, '{ user(id: "u03") { flags { reason by } } }')
    other.close()
    assert data["user"]["flags"] == [{"reason": "shares d1 with two flagged accounts",
                                      "by": "investigator:test"}]
    for reason in ["", "   ", "x" * 2001]:
        _, errors = run(runtime, 'mutation($r: String!) { flagUser(userId: "u03", reason: $r) '
                                 '{ id } }', {"r": reason})
        assert codes(errors) == ["BAD_USER_INPUT"]
    _, errors = run(runtime, 'mutation { flagUser(userId: "nobody", reason: "x") { id } }')
    assert codes(errors) == ["NOT_FOUND"]


def test_logs_are_json_lines_with_the_request_id() -> None:
    import io
    import logging

    from api import logs

    stream = io.StringIO()
    logs.configure("info", stream)
    token = logs.request_id_var.set("rid-7")
    try:
        logging.getLogger("riskgraph.api").info("request", extra={"status": 200})
    finally:
        logs.request_id_var.reset(token)
    line = json.loads(stream.getvalue().splitlines()[-1])
    assert (line["msg"], line["request_id"], line["status"]) == ("request", "rid-7", 200)


def test_cost_measured_once_per_document_still_follows_its_variables(runtime: Runtime) -> None:
    q = ("query($n: Int!, $d: Int!) { users(first: $n) { edges { node { "
         "linkedAccounts(depth: $d, first: $n) { edges { node { id } } } } } } }")
    costs: dict[tuple[int, int], int] = {}
    for n, d, code in [(2, 1, None), (100, 3, "QUERY_TOO_COSTLY"), (2, 1, None),
                       (100, 3, "QUERY_TOO_COSTLY"), (2, 4, None),
                       (100, 1, "QUERY_TOO_COSTLY")]:
        _, errors = run(runtime, q, {"n": n, "d": d})
        assert codes(errors) == ([code] if code else []), (n, d, errors)
        if errors:
            costs[(n, d)] = errors[0]["extensions"]["cost"]
    assert costs[(100, 3)] > costs[(100, 1)]


def test_decide_limit_as_of_a_date_for_the_engine_roles_only(runtime: Runtime) -> None:
    q = """mutation($asOf: String) { decideLimit(userId: "u02", asOf: $asOf) {
        action decidedAt lines { line limit } reasons { code } } }"""
    data, errors = run(runtime, q, {"asOf": "2025-11-11"}, role="limit_engine")
    assert errors == []
    assert data["decideLimit"]["decidedAt"].startswith("2025-11-10T16:00:00")  # +08:00 day
    data, errors = run(runtime, q, {"asOf": "2025-11-11"}, role="investigator")
    assert codes(errors) == ["FORBIDDEN"] and "limit_engine" in errors[0]["message"]
    data, errors = run(runtime, q, {"asOf": "11/11/2025"}, role="admin")
    assert codes(errors) == ["BAD_USER_INPUT"] and "YYYY-MM-DD" in errors[0]["message"]
    data, errors = run(runtime, 'mutation { reviewLimits(userIds: ["u02"], asOf: "2025-11-11")'
                                ' { reviewed } }', role="admin")
    assert errors == [] and data["reviewLimits"] == {"reviewed": 1}


def test_the_app_loads_the_model_before_it_serves(embedded_store: GraphStore, tmp_path: Path,
                                                  trained_models: Path) -> None:
    from api.server import create_app

    settings = Settings(home=tmp_path / "warm")
    shutil.copytree(trained_models, settings.models_dir)
    app = create_app(embedded_store, settings)
    try:
        # Loaded while the app was built, before any request: the first rescoreUser
        # does not pay for it.
        loaded = app.runtime.models.loaded
        assert loaded is not None
        version, model = loaded
        assert version.startswith("user-") and model is not None
    finally:
        app.runtime.close()


def test_the_app_starts_without_a_model(embedded_store: GraphStore, tmp_path: Path) -> None:
    from api.server import create_app

    settings = Settings(home=tmp_path / "cold")
    app = create_app(embedded_store, settings)
    try:
        assert app.runtime.models.loaded is None
    finally:
        app.runtime.close()


def test_each_runtime_owns_its_limits_service_and_model(embedded_store: GraphStore,
                                                       tmp_path: Path) -> None:
    """No cache outlives a runtime: two runtimes over one store build their own limits
    service (once each), and a newer model replaces the loaded one."""
    built: list[Settings] = []

    def build(store: GraphStore, settings: Settings) -> Any:
        built.append(settings)
        return services.build_limits_service(store, settings)

    versions = iter(["user-1", "user-1", "user-2"])
    loads: list[str] = []

    def load(_dir: Path, version: str) -> tuple[str, Any]:
        loads.append(version)
        return version, object()

    from api.gnn_service import ModelLoader

    settings = Settings(home=tmp_path / "rt")
    models = ModelLoader(settings.models_dir, latest=lambda _d: next(versions), load=load)
    one = bootstrap(settings, embedded_store, limits_service=build, model_loader=models)
    two = bootstrap(settings, embedded_store, limits_service=build)
    try:
        assert one.limits.service() is one.limits.service()
        assert two.limits.service() is not one.limits.service()
        assert len(built) == 2
        assert [models.current()[0] for _ in range(3)] == ["user-1", "user-1", "user-2"]
        assert loads == ["user-1", "user-2"]
    finally:
        one.close()
        two.close()


def test_merchant_risk_weighs_payers_scores_by_what_they_paid(runtime: Runtime) -> None:
    runtime.store.upsert_relationships("PAID", {
        "src": ["u02", "u02", "u08", USERS[9]], "dst": ["m1"] * 4,
        "id": ["pay2", "pay3", "pay4", "pay5"], "amount": [100.0, 100.0, 600.0, 50.0],
        "ts": [1_700_000_000_000] * 4})
    query = '{ merchant(id: "m1") { risk(topK: 2) { risk payers scoredPayers topPayers ' \
            '{ userId fraudRisk amount payments } } } }'
    data, errors = run(runtime, query)
    assert errors == []
    r = data["merchant"]["risk"]
    paid = {p.src: 0.0 for p in runtime.store.relationships("PAID", ["m1"], "in")}
    for p in runtime.store.relationships("PAID", ["m1"], "in"):
        paid[p.src] += float(p.properties["amount"])  # type: ignore[arg-type]
    risk = {"u01": 0.9, "u02": 0.7, "u08": 0.01}
    expected = sum(risk[u] * paid[u] for u in risk) / sum(paid[u] for u in risk)
    assert r["risk"] == pytest.approx(expected)
    assert (r["payers"], r["scoredPayers"]) == (4, 3)  # USERS[9] has no score yet
    assert [p["userId"] for p in r["topPayers"]] == ["u01", "u02"]
    assert r["topPayers"][1] == {"userId": "u02", "fraudRisk": 0.7, "amount": 200.0,
                                 "payments": 2}
    _, errors = run(runtime, query, role="limit_engine")
    assert codes(errors) == ["FORBIDDEN"]


def test_counterfactuals_say_which_line_and_what_limit(runtime: Runtime) -> None:
    data, errors = run(runtime, """mutation { decideLimit(userId: "u02") {
        action counterfactuals { lever action line limit en zh } } }""", role="limit_engine")
    assert errors == []
    cfs = data["decideLimit"]["counterfactuals"]
    assert cfs
    for c in cfs:
        assert c["line"] in ("bnpl", "cash_loan") and c["limit"] is not None
        assert f"{c['limit']:,.0f}" in c["en"] and f"{c['limit']:,.0f}" in c["zh"]
