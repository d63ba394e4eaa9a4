"""The synthetic ecosystem: deterministic, complete, consistent, with every fraud pattern."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from graph.errors import RiskGraphError
from graph.model import CREDIT_PROPERTIES, NODE_TYPES, REL_TYPES
from loaders.formats import NODE_FILES, REL_FILES
from loaders.synthetic import END_MS, FRAUD_KINDS, GeneratorConfig, generate

USERS = 1500


def _read(path: Path) -> pa.Table:
    if path.suffix == ".parquet":
        return pq.read_table(path)
    return pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(strings_can_be_null=True))


def _digest(directory: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.iterdir())
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world")
    generate(GeneratorConfig(users=USERS, seed=7), out)
    return out


def _tables(world: Path) -> dict[str, pa.Table]:
    return {p.stem: _read(p) for p in world.glob("*.csv")}


def test_same_seed_gives_identical_files(world: Path, tmp_path: Path) -> None:
    generate(GeneratorConfig(users=USERS, seed=7), tmp_path)
    assert _digest(tmp_path) == _digest(world)


def test_another_seed_gives_other_data(world: Path, tmp_path: Path) -> None:
    generate(GeneratorConfig(users=USERS, seed=8), tmp_path)
    assert _digest(tmp_path)["paid.csv"] != _digest(world)["paid.csv"]


def test_every_file_has_the_model_columns(world: Path) -> None:
    t = _tables(world)
    for label, name in NODE_FILES.items():
        cols = set(t[name].column_names)
        assert "id" in cols
        assert cols - {"id"} <= set(NODE_TYPES[label].properties), name
    for type_, name in REL_FILES.items():
        cols = set(t[name].column_names)
        assert {"src", "dst"} <= cols
        assert ("id" in cols) == REL_TYPES[type_].keyed, name
        assert cols - {"src", "dst", "id"} <= set(REL_TYPES[type_].properties), name
    assert t["credit_features"].column_names == ["id", *CREDIT_PROPERTIES]


def test_every_relationship_joins_known_nodes(world: Path) -> None:
    t = _tables(world)
    ids = {label: set(t[name].column("id").to_pylist()) for label, name in NODE_FILES.items()}
    for type_, name in REL_FILES.items():
        rt = REL_TYPES[type_]
        rel = t[name]
        assert set(rel.column("src").to_pylist()) <= ids[rt.src], name
        assert set(rel.column("dst").to_pylist()) <= ids[rt.dst], name
        keys = list(zip(rel.column("src").to_pylist(), rel.column("dst").to_pylist(),
                        rel.column("id").to_pylist() if rt.keyed else [""] * rel.num_rows))
        assert len(set(keys)) == len(keys), f"{name} repeats a key"


def test_every_fraud_pattern_is_there_with_kind_and_time(world: Path) -> None:
    users = _tables(world)["users"].to_pandas()
    assert users["id"].is_unique and len(users) == USERS
    fraud = users[users["fraud_kind"].notna()]
    assert set(fraud["fraud_kind"]) == set(FRAUD_KINDS)
    assert fraud["fraud_ts"].notna().all()
    assert users.loc[users["fraud_kind"].isna(), "fraud_ts"].isna().all()
    assert set(users["lifecycle"]) == {"new", "active", "dormant"}
    assert (users["signup_ts"] < END_MS).all()


def test_labels_carry_noise_both_ways(tmp_path: Path) -> None:
    summary = generate(GeneratorConfig(users=5000, seed=3, missed_fraud=0.2,
                                       false_alarm=0.01), tmp_path)
    assert summary.labels["missed"] > 0
    assert summary.labels["false_alarms"] > 0
    users = _read(tmp_path / "users.csv").to_pandas()
    truth = users["fraud_kind"].notna()
    assert ((users["is_fraud"] == 1) & ~truth).sum() == summary.labels["false_alarms"]
    assert ((users["is_fraud"] == 0) & truth).sum() == summary.labels["missed"]


def test_products_and_holdings(world: Path) -> None:
    t = _tables(world)
    kinds = dict(zip(t["products"].column("id").to_pylist(),
                     t["products"].column("kind").to_pylist()))
    assert {"bnpl", "cash_loan", "wealth", "insurance"} <= set(kinds.values())
    holds = t["holds"].to_pandas()
    lines = holds[holds["dst"].map(kinds).isin(["bnpl", "cash_loan"])]
    assert lines["limit"].notna().all() and (lines["limit"] > 0).all()
    assert lines["balance"].notna().all() and lines["since"].notna().all()
    assert {"active", "defaulted"} <= set(holds["status"])


def test_bust_outs_ramp_up_then_default(world: Path) -> None:
    t = _tables(world)
    users = t["users"].to_pandas().set_index("id")
    holds = t["holds"].to_pandas()
    bust = users.index[users["fraud_kind"] == "bust_out"]
    bnpl = holds[holds["dst"] == "bnpl"].set_index("src")
    clean = users.index[users["fraud_kind"].isna()]
    bust_lines = bnpl.loc[bnpl.index.intersection(bust)]
    assert (bust_lines["status"] == "defaulted").all()
    assert bust_lines["limit"].median() > bnpl.loc[bnpl.index.intersection(clean), "limit"].median()
    assert (bust_lines["balance"] / bust_lines["limit"]).min() > 0.9
    feats = t["credit_features"].to_pandas().set_index("id")
    assert (feats.loc[bust, "overdue_count"] > 0).mean() > 0.5


def test_sharing_is_common_among_clean_users(world: Path) -> None:
    t = _tables(world)
    users = t["users"].to_pandas().set_index("id")
    uses = t["uses"].to_pandas()
    uses["fraud"] = users.loc[uses["src"], "fraud_kind"].notna().to_numpy()
    by_device = uses.groupby("dst").agg(n=("src", "size"), fraud=("fraud", "sum"))
    shared = by_device[by_device["n"] >= 2]
    clean_shared = shared[shared["fraud"] == 0]
    # Most shared devices belong to families and offices, not rings.
    assert len(clean_shared) > 2 * len(shared[shared["fraud"] > 0])


def test_device_rings_share_devices(world: Path) -> None:
    t = _tables(world)
    users = t["users"].to_pandas().set_index("id")
    uses = t["uses"].to_pandas()
    ring_users = set(users.index[users["fraud_kind"] == "device_ring"])
    ring_uses = uses[uses["src"].isin(ring_users)]
    per_device = ring_uses.groupby("dst")["src"].nunique()
    assert per_device.max() >= 4


def test_relational_risk_cases_are_clean_users_on_a_ring_device(world: Path) -> None:
    t = _tables(world)
    manifest = json.loads((world / "manifest.json").read_text())
    users = t["users"].to_pandas().set_index("id")
    uses = t["uses"].to_pandas()
    cases = manifest["relational_risk_cases"]
    assert cases
    for case in cases:
        assert pd_isna(users.loc[case["user"], "fraud_kind"])
        on_device = set(uses.loc[uses["dst"] == case["ring_device"], "src"])
        assert case["user"] in on_device
        assert any(users.loc[x, "fraud_kind"] == "device_ring" for x in on_device)
    assert manifest["new_users_short_history"]


def pd_isna(value: object) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def test_features_follow_behaviour(world: Path) -> None:
    t = _tables(world)
    feats = t["credit_features"].to_pandas().set_index("id")
    paid = t["paid"].to_pandas()
    recent = paid[paid["ts"] >= END_MS - 182 * 86_400_000]
    spend = recent.groupby("src")["amount"].sum() / 6
    joined = feats["monthly_spend"].reindex(spend.index)
    assert np.allclose(joined.to_numpy(), spend.to_numpy(), atol=0.01)
    hist = feats["repayment_history"].dropna()
    assert hist.str.fullmatch(r"[0-6\-]{1,36}").all()
    overdue = hist.str.count(r"[1-6]")
    assert (overdue == feats.loc[hist.index, "overdue_count"]).all()
    assert feats["credit_score"].between(350, 950).all()
    new = feats[feats["months_on_book"] < 3]
    assert len(new) > 0 and new["repayment_history"].fillna("").str.len().max() <= 3


def test_seasonality_in_payments(world: Path) -> None:
    paid = _tables(world)["paid"].to_pandas()
    day = (paid["ts"] - 1_704_067_200_000) // 86_400_000
    double_11 = ((day >= 305) & (day < 316)).sum() / 11
    ordinary = ((day >= 200) & (day < 250)).sum() / 50
    assert double_11 > 1.5 * ordinary
    weekday = (day % 7)
    assert (weekday == 5).sum() > (weekday == 0).sum()
    assert paid["is_fraud"].sum() > 0


def test_parquet_holds_the_same_rows(world: Path, tmp_path: Path) -> None:
    generate(GeneratorConfig(users=USERS, seed=7), tmp_path, "parquet")
    for name in ("users", "paid", "credit_features"):
        a = _read(world / f"{name}.csv").to_pandas()
        b = pq.read_table(tmp_path / f"{name}.parquet").to_pandas()
        assert len(a) == len(b)
        assert list(a["id"]) == list(b["id"])


def test_too_few_users_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RiskGraphError, match="at least"):
        generate(GeneratorConfig(users=10, seed=1), tmp_path)


def test_merchant_cashout_groups_buy_from_their_colluding_merchants(tmp_path: Path) -> None:
    generate(GeneratorConfig(users=3000, seed=4), tmp_path, "parquet")
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    groups = [g for g in manifest["planted_groups"] if g["kind"] == "merchant_cashout"]
    assert groups
    users = pq.read_table(tmp_path / "users.parquet").to_pandas().set_index("id")
    paid = pq.read_table(tmp_path / "paid.parquet").to_pandas()
    for g in groups:
        assert (users.loc[g["members"], "fraud_kind"] == "merchant_cashout").all()
        at = paid[paid["dst"].isin(g["merchants"])]
        assert set(g["members"]) <= set(at["src"])
        # noise: the colluding merchants also serve customers who are not in the group
        assert set(at["src"]) - set(g["members"])
    # noise: legitimate users who come back to one small shop again and again
    visits = paid.groupby(["src", "dst"]).size()
    loyal = visits[visits >= 3].reset_index()
    clean = users.index[users["fraud_kind"].isna()]
    assert loyal["src"].isin(clean).sum() > 50


def test_manifest_lists_planted_and_legitimate_groups_with_members(world: Path) -> None:
    t = _tables(world)
    manifest = json.loads((world / "manifest.json").read_text())
    users = t["users"].to_pandas().set_index("id")
    planted = manifest["planted_groups"]
    assert {g["kind"] for g in planted} == {"device_ring", "referral_farm", "mule_chain",
                                            "merchant_cashout"}
    for g in planted:
        assert len(g["members"]) >= 2 and g["members"] == sorted(set(g["members"]))
        kinds = set(users.loc[g["members"], "fraud_kind"])
        assert kinds == {g["kind"]}, g  # every member is planted fraud of that kind
    in_planted = [m for g in planted for m in g["members"]]
    assert len(in_planted) == len(set(in_planted))  # a user is in one planted group
    legit = manifest["legit_groups"]
    assert {"household", "office", "dorm"} <= {g["kind"] for g in legit}
    # Legitimate groups are clean users (a bust-out or a mule may live in a household).
    members = [m for g in legit for m in g["members"]]
    kinds = users.loc[members, "fraud_kind"]
    assert kinds.isna().mean() > 0.98
    assert not set(kinds.dropna()) & {"device_ring", "referral_farm"}
    # Dorm mates log in from their dorm's IP (an intake: consecutive sign-ups, days apart
    # at 100,000 users and more).
    logged = t["logged_from"].to_pandas()
    dorm = next(g for g in legit if g["kind"] == "dorm" and len(g["members"]) >= 4)
    ips = logged[logged["src"].isin(dorm["members"])].groupby("dst")["src"].nunique()
    assert ips.max() >= 3
