"""Security: keys hashed and compared in constant time, no secrets or personal data in
logs, the role matrix over every field and mutation, loopback binding by default."""

from __future__ import annotations

import asyncio
import hmac
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from graphql import GraphQLObjectType, get_named_type, is_leaf_type

from api import auth
from api.auth import ACCESS, Authenticator, Principal
from api.bootstrap import bootstrap
from api.cli import build_parser
from api.context import Context, Runtime
from api.schema import schema
from api.settings import ROLES, Settings, hash_api_key, new_api_key, parse_api_keys
from graph.embedded import EmbeddedStore
from graph.neo4j_store import Neo4jStore
from tests.api_graph import NAMES, load_small_graph
from tests.conftest import BoltSettings
from tests.faults import DECIDE, ApiProcess, api_keys, get, graphql


# -- keys -----------------------------------------------------------------------------------
def test_keys_are_kept_only_as_digests() -> None:
    key, entry = new_api_key("admin")
    settings = Settings.from_env({"RISKGRAPH_API_KEYS": entry})
    authn = Authenticator(settings.api_keys)
    for text in (repr(settings), repr(authn), repr(settings.api_keys), str(vars(authn))):
        assert key not in text
    assert settings.api_keys[0].sha256 == hash_api_key(key)
    assert len(key) >= 40  # 32 random bytes, url-safe


def test_every_key_is_compared_whatever_matches(monkeypatch: pytest.MonkeyPatch) -> None:
    """No early exit: a match at the first key costs as many constant-time comparisons
    as a match at the last key or no match at all."""
    made = [new_api_key(r) for r in ROLES * 3]
    authn = Authenticator(parse_api_keys(",".join(e for _, e in made)))
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def counting(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", counting)
    for header in [f"Bearer {made[0][0]}", f"Bearer {made[-1][0]}", "Bearer rg_nobody"]:
        calls.clear()
        authn.authenticate(header)
        assert len(calls) == len(made)
        # what is compared is the digest of the presented key, never the key itself
        assert all(len(a) == 64 for a, _ in calls)


# -- logs -----------------------------------------------------------------------------------
@pytest.fixture
def logged_api(neo4j_store: Neo4jStore, bolt_settings: BoltSettings, tmp_path: Path
               ) -> Iterator[tuple[ApiProcess, dict[str, str], str, Path]]:
    load_small_graph(neo4j_store)
    keys, entries = api_keys()
    log = tmp_path / "api.log"
    api = ApiProcess({**bolt_settings.env(), "RISKGRAPH_HOME": str(tmp_path / "home"),
                      "RISKGRAPH_API_KEYS": entries}, log_path=log).start()
    yield api, keys, entries, log
    api.stop()


@pytest.mark.neo4j
def test_logs_hold_no_secrets_or_personal_data(
    logged_api: tuple[ApiProcess, dict[str, str], str, Path], bolt_settings: BoltSettings
) -> None:
    api, keys, entries, log = logged_api
    pii = 'query($id: ID!) { user(id: $id) { profile { name city } devices { id } } }'
    for role, key in keys.items():
        for uid in NAMES:
            graphql(api.url, key, pii, {"id": uid})
        graphql(api.url, key, DECIDE, {"id": "u02", "dry": role == "investigator"})
        graphql(api.url, key, 'mutation { flagUser(userId: "u03", reason: '
                              '"phone 13800138000 shared with Nameu04") { id } }')
        graphql(api.url, key, '{ user(id: "nobody-13900139000") { id } }')
        graphql(api.url, key, "{ broken")
    wrong = "rg_" + "S3cretLooking" * 3
    graphql(api.url, wrong, "{ me { role } }")
    get(api.url + "/readyz")
    api.stop()
    text = log.read_text(errors="replace")
    assert '"msg": "request"' in text  # the log is there and has the requests
    secrets = [*keys.values(), wrong, bolt_settings.password,
               *(e.split(":")[1] for e in entries.split(","))]
    personal = [*NAMES.values(), "13800138000", "13900139000", "Hangzhou", "Shanghai"]
    for needle in [*secrets, *personal, "Bearer", "authorization"]:
        assert needle not in text, f"{needle!r} is in the API log"


# -- the role matrix, every field -------------------------------------------------------------
# Fields open to every role on purpose (not listed in api.auth.ACCESS).
OPEN = {"Query.me", "User.id", "User.ownRisk", "User.modelVersion", "User.scoredAt"}
GUARDED_TYPES = ("Query", "Mutation", "User")


def _fields(type_name: str) -> dict[str, Any]:
    t = schema._schema.type_map[type_name]
    assert isinstance(t, GraphQLObjectType)
    return dict(t.fields)


def test_every_field_of_the_guarded_types_is_in_the_matrix_or_open() -> None:
    seen = {f"{t}.{f}" for t in GUARDED_TYPES for f in _fields(t)}
    unaccounted = seen - set(ACCESS) - OPEN
    assert unaccounted == set(), f"decide who may use {sorted(unaccounted)} in api.auth.ACCESS"
    assert seen >= OPEN and OPEN.isdisjoint(ACCESS)


def _leaf_selection(field: Any, depth: int = 0) -> str:
    """The smallest valid selection under a field: the first leaf, however deep."""
    t = get_named_type(field.type)
    if is_leaf_type(t):
        return ""
    assert depth < 4
    for name, sub in t.fields.items():
        if not any(a.type.to_string().endswith("!") and a.default_value is None
                   for a in sub.args.values()):
            return f" {{ {name}{_leaf_selection(sub, depth + 1)} }}"
    raise AssertionError(f"no selectable field under {t}")


REQUIRED_ARGS = {"Query.user": '(id: "u01")', "Query.ring": '(id: "ring:u01")',
                 "Query.merchant": '(id: "m1")', "Query.device": '(id: "d1")',
                 "Query.product": '(id: "bnpl")',
                 "Mutation.decideLimit": '(userId: "u01")',
                 "Mutation.rescoreUser": '(userId: "u01")',
                 "Mutation.flagUser": '(userId: "u01", reason: "probe")',
                 "Mutation.reviewLimits": '(userIds: ["u01"])'}


def _probe(type_name: str, name: str) -> str:
    f = _fields(type_name)[name]
    args = REQUIRED_ARGS.get(f"{type_name}.{name}", "")
    inner = f"{name}{args}{_leaf_selection(f)}"
    if type_name == "User":
        return f'{{ user(id: "u01") {{ {inner} }} }}'
    return f"{'mutation ' if type_name == 'Mutation' else ''}{{ {inner} }}"


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory, gnn_world: tuple[Any, ...]
            ) -> Iterator[Runtime]:
    home = tmp_path_factory.mktemp("security")
    shutil.copytree(Path(gnn_world[2]) / "models", home / "models")  # rescore, explain
    store = EmbeddedStore(home / "graph")
    store.init()
    load_small_graph(store)
    rt = bootstrap(Settings(home=home), store)
    yield rt
    rt.close()
    store.close()


@pytest.mark.parametrize("field", sorted(f"{t}.{f}" for t in GUARDED_TYPES for f in _fields(t)))
def test_every_field_and_mutation_answers_each_role_as_the_matrix_says(
    runtime: Runtime, field: str
) -> None:
    type_name, name = field.split(".")
    query = _probe(type_name, name)
    for role in ROLES:
        ctx = Context(runtime, Principal(role, f"{role}:t"), "r")
        result = asyncio.run(schema.execute(query, context_value=ctx))
        codes = [(e.extensions or {}).get("code") for e in result.errors or []]
        if role in ACCESS.get(field, frozenset(ROLES)):
            assert "FORBIDDEN" not in codes, (field, role, query, result.errors)
            assert codes == [], (field, role, query, result.errors)
        else:
            assert codes == ["FORBIDDEN"], (field, role, query, result.errors)
            assert result.data is None or all(v is None for v in _values(result.data))


def _values(data: Any) -> Iterator[Any]:
    if isinstance(data, dict):
        for v in data.values():
            yield from _values(v)
    else:
        yield data


def test_the_limit_engine_sees_personal_data_masked(runtime: Runtime) -> None:
    q = '{ user(id: "u01") { profile { name masked } } }'
    for role, masked in [("limit_engine", True), ("investigator", False), ("admin", False)]:
        ctx = Context(runtime, Principal(role, f"{role}:t"), "r")
        result = asyncio.run(schema.execute(q, context_value=ctx))
        assert not result.errors
        profile = result.data["user"]["profile"]  # type: ignore[index]
        assert profile["masked"] is masked
        assert (profile["name"] == NAMES["u01"]) is not masked


# -- binding ----------------------------------------------------------------------------------
def test_serve_binds_to_loopback_unless_told_otherwise(tmp_path: Path) -> None:
    args = build_parser().parse_args(["serve"])
    assert args.host == "127.0.0.1"
    home = tmp_path / "home"
    store = EmbeddedStore(home / "graph")
    store.init()
    store.close()
    api = ApiProcess({"RISKGRAPH_HOME": str(home), "RISKGRAPH_API_KEYS": ""}).start()
    try:
        assert api.proc is not None
        server = psutil.Process(api.proc.pid)
        # with several workers each listens on a socket of its own
        listening = [c.laddr for p in [server, *server.children(recursive=True)]
                     for c in p.net_connections("inet") if c.status == psutil.CONN_LISTEN]
        assert listening and all(addr.ip == "127.0.0.1" for addr in listening), listening
    finally:
        api.stop()
