"""Loading a directory in the documented format: the contract, on every store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.csv as pacsv
import pytest

from api.cli import main
from graph.model import NODE_TYPES, REL_TYPES
from graph.store import GraphStore, WriteResult
from loaders.formats import NODE_FILES, REL_FILES
from loaders.load import LoadOptions, load_directory
from loaders.synthetic import GeneratorConfig, generate

USERS = 150


@pytest.fixture(scope="module")
def csv_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("csv")
    generate(GeneratorConfig(users=USERS, seed=11), out)
    return out


@pytest.fixture(scope="module")
def parquet_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("parquet")
    generate(GeneratorConfig(users=USERS, seed=11), out, "parquet")
    return out


def _options(tmp_path: Path, batch_size: int = 100_000) -> LoadOptions:
    return LoadOptions(quarantine_dir=tmp_path / "quarantine", batch_size=batch_size)


def snapshot(store: GraphStore) -> dict[str, Any]:
    """Every node and relationship with its properties, in a comparable form."""
    out: dict[str, Any] = {"counts": store.counts()}
    for label, nt in NODE_TYPES.items():
        rows = []
        for batch in store.export_nodes(label, list(nt.properties)):
            keys = list(batch)
            rows.extend(zip(*(map(_plain, batch[k]) for k in keys)))
        out[label] = sorted(rows, key=repr)
    for t, rt in REL_TYPES.items():
        rows = []
        for batch in store.export_relationships(t, list(rt.properties)):
            keys = list(batch)
            rows.extend(zip(*(map(_plain, batch[k]) for k in keys)))
        out[t] = sorted(rows, key=repr)
    return out


def _plain(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, float) and v != v:
        return None
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def _file_rows(directory: Path) -> dict[str, int]:
    return {p.name: pacsv.read_csv(p).num_rows for p in directory.glob("*.csv")}


def test_generated_directory_loads_completely(store: GraphStore, csv_dir: Path,
                                              tmp_path: Path) -> None:
    reports = load_directory(store, csv_dir, _options(tmp_path))
    rows = _file_rows(csv_dir)
    assert {r.file for r in reports} == set(rows)
    for r in reports:
        assert r.rows == rows[r.file] == r.loaded + r.rejected
        assert r.rejected == 0, r.file
    counts = store.counts()
    for label, stem in NODE_FILES.items():
        assert counts["nodes"][label] == rows[f"{stem}.csv"]
    for t, stem in REL_FILES.items():
        assert counts["relationships"][t] == rows[f"{stem}.csv"]
    user = store.get_nodes("User", [pacsv.read_csv(csv_dir / "users.csv")["id"][0].as_py()])[0]
    assert user is not None and "credit_score" in user.properties
    assert not (tmp_path / "quarantine").exists() or not list((tmp_path / "quarantine").iterdir())


def test_loading_twice_changes_nothing(store: GraphStore, csv_dir: Path, tmp_path: Path
                                      ) -> None:
    load_directory(store, csv_dir, _options(tmp_path))
    first = snapshot(store)
    again = load_directory(store, csv_dir, _options(tmp_path))
    assert all(r.rows == r.loaded for r in again)
    assert snapshot(store) == first


def test_parquet_and_csv_give_the_same_graph(
    embedded_store: GraphStore, csv_dir: Path, parquet_dir: Path, tmp_path: Path
) -> None:
    from graph.embedded import EmbeddedStore

    load_directory(embedded_store, csv_dir, _options(tmp_path))
    other = EmbeddedStore(tmp_path / "other")
    other.init()
    try:
        reports = load_directory(other, parquet_dir, _options(tmp_path))
        assert all(r.file.endswith(".parquet") and r.rows == r.loaded for r in reports)
        assert snapshot(other) == snapshot(embedded_store)
    finally:
        other.close()


class Interrupted(Exception):
    pass


class StopsAfter:
    """A real store that is killed (raises) after a number of writes."""

    def __init__(self, inner: GraphStore, writes: int) -> None:
        self.inner = inner
        self.left = writes
        self.name = inner.name

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _tick(self) -> None:
        self.left -= 1
        if self.left < 0:
            raise Interrupted

    def upsert_nodes(self, label: str, columns: Any) -> int:
        self._tick()
        return self.inner.upsert_nodes(label, columns)

    def upsert_relationships(self, rel_type: str, columns: Any) -> WriteResult:
        self._tick()
        return self.inner.upsert_relationships(rel_type, columns)


@pytest.mark.parametrize("writes", [3, 30])
def test_killed_load_rerun_converges(store: GraphStore, csv_dir: Path, tmp_path: Path,
                                     writes: int) -> None:
    from graph.embedded import EmbeddedStore

    reference = EmbeddedStore(tmp_path / "reference")
    reference.init()
    try:
        load_directory(reference, csv_dir, _options(tmp_path, batch_size=50))
        expected = snapshot(reference)
    finally:
        reference.close()

    with pytest.raises(Interrupted):
        load_directory(StopsAfter(store, writes), csv_dir,  # type: ignore[arg-type]
                       _options(tmp_path, batch_size=50))
    partial = store.counts()
    assert partial != expected["counts"]
    load_directory(store, csv_dir, _options(tmp_path, batch_size=50))
    assert snapshot(store) == expected


def test_read_ahead_gives_the_same_graph_as_reading_in_turn(
    embedded_store: GraphStore, csv_dir: Path, tmp_path: Path
) -> None:
    from dataclasses import replace

    from graph.embedded import EmbeddedStore

    small = _options(tmp_path, batch_size=37)  # many batches, so the thread runs ahead
    ahead = load_directory(embedded_store, csv_dir, small)
    other = EmbeddedStore(tmp_path / "in-turn")
    other.init()
    try:
        in_turn = load_directory(other, csv_dir, replace(small, read_ahead=0))
        assert [r.as_dict() | {"seconds": 0} for r in ahead] == \
            [r.as_dict() | {"seconds": 0} for r in in_turn]
        assert snapshot(other) == snapshot(embedded_store)
    finally:
        other.close()


def test_read_ahead_raises_a_failure_at_its_batch_and_stops() -> None:
    from loaders.load import _ahead

    produced: list[int] = []

    def items() -> Any:
        for i in range(5):
            if i == 3:
                raise ValueError("bad batch 3")
            produced.append(i)
            yield i

    got = []
    with pytest.raises(ValueError, match="bad batch 3"), _ahead(items(), 2) as it:
        for x in it:
            got.append(x)
    assert got == [0, 1, 2]

    many = iter(range(10_000))
    with _ahead(many, 2) as it:  # the consumer leaves early: the producer stops
        assert next(it) == 0
    left = len(list(many))
    assert left > 9_000


def test_cli_load_json(csv_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RISKGRAPH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RISKGRAPH_STORE", "embedded")
    assert main(["load", str(csv_dir), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["files"]
    for f in out["files"]:
        assert {"file", "rows", "loaded", "rejected"} <= set(f)
        assert f["rows"] == f["loaded"] + f["rejected"]
    assert out["link_index"]["users"] == USERS  # linked accounts answer from arrays
    assert main(["stats", "--json"]) == 0
    counts = json.loads(capsys.readouterr().out)
    assert counts["nodes"]["User"] == USERS
    from graph import linkindex
    from graph.embedded import EmbeddedStore

    store = EmbeddedStore(tmp_path / "home" / "graph")
    store.init()
    try:
        assert linkindex.fresh_index(store) is not None
    finally:
        store.close()


def test_cli_progress_and_quiet(csv_dir: Path, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RISKGRAPH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RISKGRAPH_STORE", "embedded")
    assert main(["load", str(csv_dir)]) == 0
    noisy = capsys.readouterr()
    assert "rows/s" in noisy.err and "users.csv" in noisy.out
    assert main(["load", str(csv_dir), "--quiet"]) == 0
    assert "rows/s" not in capsys.readouterr().err


def test_cli_generate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", "--users", "200", "--seed", "5", "--out", str(tmp_path),
                 "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["files"]["users.csv"] == 200
    assert (tmp_path / "paid.csv").exists()


def test_fatal_problem_leaves_the_store_untouched(
    store: GraphStore, csv_dir: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    for p in csv_dir.glob("*.csv"):
        (broken / p.name).write_bytes(p.read_bytes())
    text = (broken / "paid.csv").read_text().splitlines()
    header = text[0].replace('"src",', "")
    (broken / "paid.csv").write_text("\n".join([header, *text[1:]]) + "\n")
    from loaders.errors import FatalFileError

    with pytest.raises(FatalFileError, match="paid.csv.*missing required column src"):
        load_directory(store, broken, _options(tmp_path))
    counts = store.counts()
    assert sum(counts["nodes"].values()) == 0
    assert sum(counts["relationships"].values()) == 0


def test_cli_fatal_exit_code_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RISKGRAPH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RISKGRAPH_STORE", "embedded")
    assert main(["load", str(tmp_path / "nowhere")]) == 2
    assert "nowhere" in capsys.readouterr().err
    data = tmp_path / "data"
    data.mkdir()
    (data / "users.csv").write_bytes("id,name\nu1,Jos\xe9\n".encode("latin-1"))
    assert main(["load", str(data)]) == 2
    err = capsys.readouterr().err
    assert "users.csv" in err and "UTF-8" in err and "line 2" in err
