"""API keys from settings, constant-time lookup, and the role matrix field by field."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest

from api.auth import ACCESS, Authenticator, Principal
from api.bootstrap import bootstrap
from api.context import Context, Runtime
from api.schema import schema
from api.settings import ROLES, Settings, SettingsError, hash_api_key, new_api_key, parse_api_keys
from graph.store import GraphStore
from tests.api_graph import load_small_graph


def test_keys_are_configured_as_hashes_with_roles() -> None:
    key, entry = new_api_key("limit_engine")
    role, digest = entry.split(":")
    assert role == "limit_engine" and digest == hash_api_key(key) and key not in entry
    settings = Settings.from_env({"RISKGRAPH_API_KEYS": f" {entry} ,, admin:{'a' * 64}"})
    assert [k.role for k in settings.api_keys] == ["limit_engine", "admin"]
    for bad in ["root:" + "a" * 64, "admin:" + "a" * 63, "admin:" + "g" * 64, f"admin:{key}"]:
        with pytest.raises(SettingsError):
            parse_api_keys(bad)
    with pytest.raises(SettingsError):
        new_api_key("superuser")
    with pytest.raises(SettingsError):
        Settings.from_env({"RISKGRAPH_API_MAX_DEPTH": "0"})


def test_authenticator_accepts_only_configured_bearer_keys() -> None:
    keys = {role: new_api_key(role) for role in ROLES}
    auth = Authenticator(parse_api_keys(",".join(e for _, e in keys.values())))
    for role, (key, _) in keys.items():
        p = auth.authenticate(f"Bearer {key}")
        assert p is not None and p.role == role and p.key_id.startswith(role + ":")
        assert key not in p.key_id
        assert auth.authenticate(f"bearer   {key}  ") == p
    key = keys["admin"][0]
    for header in [None, "", key, f"Basic {key}", f"Bearer {key}x", "Bearer ",
                   f"Bearer {hash_api_key(key)}"]:
        assert auth.authenticate(header) is None
    assert Authenticator([]).authenticate(f"Bearer {key}") is None


# What each role may do, written out here rather than read from api.auth.ACCESS, so a
# change to the matrix must be made twice to pass.
EXPECTED = {
    # right: (investigator, limit_engine, admin)
    "Query.users": (True, False, True),
    "Query.rings": (True, False, True),
    "Query.ring": (True, False, True),
    "Query.device": (True, False, True),
    "Query.merchant": (True, False, True),
    "Query.user": (True, True, True),
    "User.profile": (True, True, True),
    "User.creditFeatures": (True, True, True),
    "User.fraudRisk": (True, True, True),
    "User.relationalRisk": (True, True, True),
    "User.products": (True, True, True),
    "User.limits": (True, True, True),
    "User.decisionHistory": (True, True, True),
    "User.explanation": (True, False, True),
    "User.linkedAccounts": (True, False, True),
    "User.ring": (True, False, True),
    "User.flags": (True, False, True),
    "User.devices": (True, False, True),
    "Mutation.decideLimit": (True, True, True),
    "Mutation.decideLimit(dryRun: false)": (False, True, True),
    "Mutation.rescoreUser": (False, True, True),
    "Mutation.flagUser": (True, False, True),
    "Mutation.reviewLimits": (False, False, True),
}

PROBES = {
    "Query.users": "{ users(first: 1) { edges { cursor } } }",
    "Query.rings": "{ rings(first: 1) { totalCount } }",
    "Query.ring": '{ ring(id: "ring:u01") { size } }',
    "Query.device": '{ device(id: "d1") { kind } }',
    "Query.merchant": '{ merchant(id: "m1") { name } }',
    "Query.user": '{ user(id: "u01") { id } }',
    "User.profile": '{ user(id: "u01") { profile { city } } }',
    "User.creditFeatures": '{ user(id: "u01") { creditFeatures { creditScore } } }',
    "User.fraudRisk": '{ user(id: "u01") { fraudRisk } }',
    "User.relationalRisk": '{ user(id: "u01") { relationalRisk } }',
    "User.products": '{ user(id: "u01") { products { limit } } }',
    "User.limits": '{ user(id: "u01") { limits { totalLimit } } }',
    "User.decisionHistory": '{ user(id: "u01") { decisionHistory { action } } }',
    "User.explanation": '{ user(id: "u01") { explanation { modelVersion } } }',
    "User.linkedAccounts": '{ user(id: "u01") { linkedAccounts { totalCount } } }',
    "User.ring": '{ user(id: "u01") { ring { id } } }',
    "User.flags": '{ user(id: "u01") { flags { id } } }',
    "User.devices": '{ user(id: "u01") { devices { id } } }',
    "Mutation.decideLimit": 'mutation { decideLimit(userId: "u01") { action } }',
    "Mutation.decideLimit(dryRun: false)":
        'mutation { decideLimit(userId: "u01", dryRun: false) { action } }',
    "Mutation.rescoreUser": 'mutation { rescoreUser(userId: "u01") { fraudRisk } }',
    "Mutation.flagUser": 'mutation { flagUser(userId: "u01", reason: "probe") { id } }',
    "Mutation.reviewLimits": 'mutation { reviewLimits(userIds: ["u01"]) { reviewed } }',
}


@pytest.fixture
def runtime(embedded_store: GraphStore, tmp_path: Path, trained_models: Path) -> Any:
    shutil.copytree(trained_models, tmp_path / "models")  # rescore and explain need a model
    load_small_graph(embedded_store)
    rt = bootstrap(Settings(home=tmp_path), embedded_store)
    yield rt
    rt.close()


def test_every_right_is_probed_and_matches_the_matrix() -> None:
    assert set(EXPECTED) == set(PROBES)
    assert set(EXPECTED) <= set(ACCESS)
    for right, allowed in EXPECTED.items():
        assert tuple(r in ACCESS[right] for r in ROLES) == allowed, right


@pytest.mark.parametrize("right", sorted(EXPECTED))
def test_role_matrix_is_enforced(runtime: Runtime, right: str) -> None:
    for role, allowed in zip(ROLES, EXPECTED[right]):
        ctx = Context(runtime, Principal(role, f"{role}:t"), "r")
        result = asyncio.run(schema.execute(PROBES[right], context_value=ctx))
        codes = [e.extensions.get("code") for e in result.errors or []]
        if allowed:
            assert codes == [], (right, role, result.errors)
        else:
            assert codes == ["FORBIDDEN"], (right, role, result.errors)
            assert role in ROLES and "needs" in result.errors[0].message  # type: ignore[index]
