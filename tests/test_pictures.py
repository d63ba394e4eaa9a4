"""Pictures of rings and linked accounts: what they hold, the PNG they make, and the
`ring` and `linked --png` commands run as a user runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib import colormaps
from matplotlib.image import imread

from api import pictures
from graph import queries
from graph.store import GraphStore
from tests.api_graph import load_small_graph

RISKGRAPH = [sys.executable, "-m", "api.cli"]


def run(args: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RISKGRAPH_HOME": str(home), "RISKGRAPH_STORE": "embedded"}
    return subprocess.run([*RISKGRAPH, *args], env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.fixture
def home(embedded_store: GraphStore) -> Path:
    """RISKGRAPH_HOME for the CLI: the embedded store of the fixture lives in <home>/graph."""
    load_small_graph(embedded_store)
    return Path(embedded_store.path).parent  # type: ignore[attr-defined]


def png_pixels(path: Path) -> np.ndarray:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = imread(path)
    assert img.ndim == 3 and img.shape[2] in (3, 4)
    return img[:, :, :3]


def has_colour(img: np.ndarray, rgb: tuple[float, ...], tol: float = 0.02) -> bool:
    return bool((np.abs(img - np.array(rgb[:3])) < tol).all(axis=2).any())


def test_ring_network_holds_members_items_and_links(embedded_store: GraphStore) -> None:
    load_small_graph(embedded_store)
    ring = queries.ring_of(embedded_store, "u02")
    assert ring is not None
    net = pictures.ring_network(embedded_store, ring)
    assert net.users == ["u01", "u02", "u03", "u04"]
    assert net.risks == {"u01": 0.9, "u02": 0.7, "u03": 0.5, "u04": 0.4}
    assert sorted(net.items) == [("Device", "d1"), ("Phone", "p1")]
    assert sorted((a[1], b[1], kind) for a, b, kind, _ in net.edges) == [
        ("u01", "d1", "USES"), ("u02", "d1", "USES"), ("u03", "d1", "USES"),
        ("u03", "p1", "HAS_PHONE"), ("u04", "p1", "HAS_PHONE"),
    ]
    assert net.focus == ("User", "u01") and "ring:u01" in net.title


def test_a_big_ring_is_cut_and_says_so(embedded_store: GraphStore) -> None:
    load_small_graph(embedded_store)
    ring = queries.ring_of(embedded_store, "u01")
    assert ring is not None
    net = pictures.ring_network(embedded_store, ring, max_users=2)
    assert net.users == ["u01", "u02"] and net.hidden_users == 2
    # p1 ties u03 and u04, neither drawn: it is left out with its edges.
    assert net.items == [("Device", "d1")]
    assert {b[1] for _, b, _, _ in net.edges} == {"d1"}
    # The cut follows the links, so what is drawn stays connected: u04 comes with u03,
    # through p1, and never alone.
    assert pictures.ring_sample(ring, 3, start="u04") == ["u04", "u03", "u01"]
    assert pictures.ring_sample(ring, 3) == ["u01", "u02", "u03"]


def test_linked_network_draws_direct_links_with_their_counts(
    embedded_store: GraphStore,
) -> None:
    load_small_graph(embedded_store)
    found = queries.linked_accounts(embedded_store, "u05", depth=2)
    net = pictures.linked_network(embedded_store, "u05", found)
    assert net.users == ["u05", "u06", "u07"]
    assert net.items == []
    assert sorted((a[1], b[1], kind, n) for a, b, kind, n in net.edges) == [
        ("u05", "u06", "REFERRED", 1), ("u06", "u07", "TRANSFERRED", 2),
    ]


def test_picture_is_a_sensible_png_coloured_by_risk(
    embedded_store: GraphStore, tmp_path: Path
) -> None:
    load_small_graph(embedded_store)
    found = queries.linked_accounts(embedded_store, "u09")  # u10, unscored, via card c1
    out = pictures.draw(pictures.linked_network(embedded_store, "u09", found),
                        tmp_path / "deep" / "u09.png")
    img = png_pixels(out)
    h, w = img.shape[:2]
    assert 800 <= w <= 4000 and 600 <= h <= 4000
    assert has_colour(img, (0xb0 / 255, 0xb0 / 255, 0xb0 / 255))  # unscored users: grey
    assert has_colour(img, tuple(int(c, 16) / 255 for c in ("c4", "4e", "52")))  # bank card

    ring = queries.ring_of(embedded_store, "u01")
    assert ring is not None
    img = png_pixels(pictures.draw(pictures.ring_network(embedded_store, ring),
                                   tmp_path / "ring.png"))
    red = colormaps[pictures.RISK_CMAP](0.9)  # u01's fraud risk
    assert has_colour(img, red)


def test_ring_command_prints_and_draws(home: Path, tmp_path: Path) -> None:
    png = tmp_path / "ring.png"
    out = run(["ring", "ring:u01", "--png", str(png)], home)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ring:u01: ")
    assert "4 members" in out.stdout.splitlines()[0] and "suspicion" in out.stdout
    assert "u01, u02, u03, u04" in out.stdout
    assert "Device:d1" in out.stdout and "Phone:p1" in out.stdout
    png_pixels(png)


def test_ring_command_json_lists_direct_links(home: Path) -> None:
    import json

    out = run(["ring", "ring:u05", "--json"], home)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["members"] == ["u05", "u06", "u07"] and got["size"] == 3
    assert got["direct_links"] == [["REFERRED", "u05", "u06", 1],
                                   ["TRANSFERRED", "u06", "u07", 2]]


def test_linked_command_draws(home: Path, tmp_path: Path) -> None:
    png = tmp_path / "linked.png"
    out = run(["linked", "u01", "--depth", "2", "--png", str(png)], home)
    assert out.returncode == 0, out.stderr
    assert f"picture: {png}" in out.stdout
    assert png_pixels(png).shape[1] >= 800


@pytest.mark.parametrize(("ring_id", "says"), [
    ("ring:nobody", "no user 'nobody'"),
    ("ring:u02", "u02 belongs to ring:u01"),  # a member, but not the ring's id
    ("ring:u09", "u09 is in no group"),  # a pair is not a group
])
def test_unknown_ring_exits_1_with_a_message(home: Path, tmp_path: Path, ring_id: str,
                                             says: str) -> None:
    png = tmp_path / "never.png"
    out = run(["ring", ring_id, "--png", str(png)], home)
    assert out.returncode == 1
    assert says in out.stderr and "Traceback" not in out.stderr
    assert not png.exists()


def test_malformed_ring_id_is_a_usage_error(home: Path) -> None:
    out = run(["ring", "u01"], home)
    assert out.returncode == 2
    assert "ring:<user id>" in out.stderr and "Traceback" not in out.stderr


def test_linked_png_of_unknown_user_exits_1(home: Path, tmp_path: Path) -> None:
    png = tmp_path / "never.png"
    out = run(["linked", "nobody", "--png", str(png)], home)
    assert out.returncode == 1 and "nobody" in out.stderr
    assert not png.exists()


def test_unwritable_picture_path_exits_2(home: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    out = run(["ring", "ring:u01", "--png", str(blocker / "ring.png")], home)
    assert out.returncode == 2
    assert "cannot write the picture" in out.stderr and "Traceback" not in out.stderr
