"""The store commands (stats, linked, rings) run as a user runs them: the installed
`riskgraph` command in a subprocess, against the embedded store and the live server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from graph.store import GraphStore

RISKGRAPH = [sys.executable, "-m", "api.cli"]


def populate(store: GraphStore) -> None:
    """A ring of four sharing two devices, a family of three sharing a tablet, a
    referral chain, a hub IP used by everyone, and a loner."""
    users = ["u1", "u2", "u3", "u4", "f1", "f2", "f3", "r1", "r2", "lone", "o'brien \"x\""]
    users += [f"crowd{i:02d}" for i in range(50)]  # 61 on the café IP: above the hub cap
    store.upsert_nodes("User", {"id": users, "name": [f"name {u}" for u in users],
                                "fraud_risk": [0.9 if u[0] == "u" else 0.02 for u in users]})
    store.upsert_nodes("Device", {"id": ["d-ring-a", "d-ring-b", "tablet"]})
    store.upsert_nodes("IP", {"id": ["ip-cafe"]})
    store.upsert_relationships("USES", {
        "src": ["u1", "u2", "u3", "u3", "u4", "f1", "f2", "f3", "o'brien \"x\""],
        "dst": ["d-ring-a", "d-ring-a", "d-ring-a", "d-ring-b", "d-ring-b",
                "tablet", "tablet", "tablet", "tablet"],
    })
    store.upsert_relationships("REFERRED", {"src": ["u4", "r1"], "dst": ["r1", "r2"]})
    store.upsert_relationships("TRANSFERRED", {
        "src": ["u1", "u1", "u2"], "dst": ["u2", "u2", "u1"], "id": ["t1", "t2", "t3"],
        "amount": [10.0, 20.0, 5.0],
    })
    store.upsert_relationships("LOGGED_FROM", {
        "src": users, "dst": ["ip-cafe"] * len(users),
    })


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*RISKGRAPH, *args], env={**os.environ, **env}, capture_output=True, text=True,
        timeout=120,
    )


@pytest.fixture
def cli_env(store: GraphStore, tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, str]:
    """Environment pointing the CLI at the same data as ``store``."""
    populate(store)
    if store.name == "embedded":
        # The fixture's store lives in <tmp>/graph, which is where RISKGRAPH_HOME=<tmp>
        # puts the embedded graph: the CLI opens the same files in another process.
        return {"RISKGRAPH_HOME": str(Path(store.path).parent), "RISKGRAPH_STORE": "embedded"}
    bolt = request.getfixturevalue("bolt_settings")
    return {"RISKGRAPH_HOME": str(tmp_path / "home"), **bolt.env()}


def test_stats_counts_every_type(cli_env: dict[str, str]) -> None:
    out = run(["stats", "--json"], cli_env)
    assert out.returncode == 0, out.stderr
    counts = json.loads(out.stdout)
    assert counts["nodes"]["User"] == 61
    assert counts["nodes"]["Device"] == 3
    assert counts["nodes"]["Merchant"] == 0
    assert counts["relationships"]["USES"] == 9
    assert counts["relationships"]["TRANSFERRED"] == 3
    assert counts["relationships"]["LOGGED_FROM"] == 61
    assert counts["relationships"]["PAID"] == 0


def test_linked_ranks_shared_devices_and_transfers(cli_env: dict[str, str]) -> None:
    out = run(["linked", "u1", "--depth", "2", "--json"], cli_env)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    depth1 = [a["user_id"] for a in got["linked"] if a["depth"] == 1]
    depth2 = [a["user_id"] for a in got["linked"] if a["depth"] == 2]
    # u2 shares the device and two-way transfers (2 links); u3 only the device.
    assert depth1 == ["u2", "u3"]
    assert depth2 == ["u4"]  # through d-ring-b from u3
    u2 = got["linked"][0]
    kinds = sorted(link["rel_type"] for link in u2["links"])
    assert kinds == ["TRANSFERRED", "USES"]
    assert [lk["count"] for lk in u2["links"] if lk["rel_type"] == "TRANSFERRED"] == [3]
    # The café IP is used by everyone: a hub, so it links nobody.
    assert all(lk["rel_type"] != "LOGGED_FROM" for a in got["linked"] for lk in a["links"])


def test_rings_finds_ring_and_family(cli_env: dict[str, str]) -> None:
    out = run(["rings", "--min-size", "3", "--json"], cli_env)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    # The scored accounts sharing devices and money are a ring; the referral chain with
    # one scored member and the family on its tablet are communities; the café IP
    # links nobody.
    assert [(r["id"], r["kind"], r["members"]) for r in got["rings"]] == [
        ("ring:u1", "ring", ["u1", "u2", "u3"]),
    ]
    assert got["total"] == 1
    first = got["rings"][0]
    assert list(first) == ["id", "size", "members", "kind", "suspicion", "why",
                           "shared_items", "direct_links"]
    assert first["size"] == 3 and 0.5 <= first["suspicion"] <= 1
    assert any("fraud score" in w for w in first["why"])
    assert first["direct_links"] == [["TRANSFERRED", "u1", "u2", 3]]
    out = run(["rings", "--kind", "community", "--limit", "1", "--stored", "--json"], cli_env)
    got = json.loads(out.stdout)
    assert got["total"] == 2 and got["rings"][0]["kind"] == "community"
    assert got["rings"][0]["members"] == ["r1", "r2", "u4"]  # more suspicious first
    assert 0 < got["rings"][0]["suspicion"] < first["suspicion"]
    out = run(["rings", "--kind", "all", "--min-size", "4", "--json"], cli_env)
    family = json.loads(out.stdout)["rings"]
    assert [r["members"] for r in family] == [["f1", "f2", "f3", "o'brien \"x\""]]
    assert family[0]["shared_items"][0]["id"] == "tablet"
    out = run(["ring", "ring:u1", "--json"], cli_env)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == first


def test_quotes_in_ids_survive_the_command_line(cli_env: dict[str, str]) -> None:
    out = run(["linked", "o'brien \"x\"", "--json"], cli_env)
    assert out.returncode == 0, out.stderr
    assert [a["user_id"] for a in json.loads(out.stdout)["linked"]] == ["f1", "f2", "f3"]


def test_unknown_user_exits_1_with_a_message(cli_env: dict[str, str]) -> None:
    out = run(["linked", "nobody"], cli_env)
    assert out.returncode == 1
    assert "nobody" in out.stderr
    assert "Traceback" not in out.stderr


def test_bad_depth_exits_2_without_traceback(cli_env: dict[str, str]) -> None:
    out = run(["linked", "u1", "--depth", "9"], cli_env)
    assert out.returncode == 2
    assert "depth" in out.stderr
    assert "Traceback" not in out.stderr


def test_same_answers_from_both_stores(tmp_path: Path, embedded_store: GraphStore,
                                        neo4j_store: GraphStore,
                                        bolt_settings: object) -> None:
    populate(embedded_store)
    populate(neo4j_store)
    home = Path(embedded_store.path).parent  # type: ignore[attr-defined]
    embedded_env = {"RISKGRAPH_HOME": str(home), "RISKGRAPH_STORE": "embedded"}
    neo_env = {"RISKGRAPH_HOME": str(tmp_path / "n"), **bolt_settings.env()}  # type: ignore[attr-defined]
    for args in (["stats", "--json"], ["rings", "--json"], ["linked", "u3", "--depth", "3",
                                                              "--json"]):
        a = run(args, embedded_env)
        b = run(args, neo_env)
        assert a.returncode == b.returncode == 0, (a.stderr, b.stderr)
        assert json.loads(a.stdout) == json.loads(b.stdout)
