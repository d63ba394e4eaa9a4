"""S-FFSD loads completely: 77,881 payments, none lost."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from gnn.sffsd import default_data_path
from graph.store import GraphStore
from loaders.errors import FatalFileError
from loaders.load import LoadOptions
from loaders.sffsd import ROWS, load_sffsd

SFFSD = default_data_path()
SHA256 = "a2d78b983dfacaae394e4d69ece46ae880fd6bd4761bc5ee759977ba12b185c6"


@pytest.fixture(scope="module")
def sffsd() -> Path:
    if not SFFSD.exists():
        pytest.fail(f"S-FFSD is missing at {SFFSD}")
    assert hashlib.sha256(SFFSD.read_bytes()).hexdigest() == SHA256
    return SFFSD


def test_every_payment_loads(embedded_store: GraphStore, sffsd: Path, tmp_path: Path) -> None:
    report = load_sffsd(embedded_store, sffsd, LoadOptions(tmp_path / "q"))
    assert (report.rows, report.loaded, report.rejected) == (ROWS, ROWS, 0)
    counts = embedded_store.counts()
    assert counts["relationships"]["PAID"] == 77_881
    assert counts["nodes"]["User"] == 30_346
    assert counts["nodes"]["Merchant"] == 886
    labels = {0: 0, 1: 0, None: 0}
    for batch in embedded_store.export_relationships("PAID", ["is_fraud"]):
        for v in batch["is_fraud"].tolist():
            labels[None if v != v else int(v)] += 1
    assert labels == {1: 5_256, 0: 24_387, None: 48_238}
    # Loading again changes nothing.
    again = load_sffsd(embedded_store, sffsd, LoadOptions(tmp_path / "q"))
    assert again.loaded == ROWS
    assert embedded_store.counts() == counts


def test_first_row_keeps_its_columns(embedded_store: GraphStore, sffsd: Path,
                                     tmp_path: Path) -> None:
    load_sffsd(embedded_store, sffsd, LoadOptions(tmp_path / "q"))
    first = sffsd.read_text().splitlines()[1].split(",")
    header = sffsd.read_text().splitlines()[0].split(",")
    row = dict(zip(header, first))
    rels = [r for r in embedded_store.relationships("PAID", [row["Source"]])
            if r.key == "sffsd-0"]
    assert len(rels) == 1
    props = rels[0].properties
    assert rels[0].dst == row["Target"]
    assert props["ts"] == int(row["Time"])
    assert props["amount"] == pytest.approx(float(row["Amount"]))
    assert props["location"] == row["Location"] and props["txn_type"] == row["Type"]


def test_broken_copy_accounts_for_every_row(embedded_store: GraphStore, tmp_path: Path,
                                            sffsd: Path) -> None:
    lines = sffsd.read_text().splitlines()[:101]
    lines[5] = lines[5].rsplit(",", 2)[0]  # truncated
    lines[7] = lines[7].replace(lines[7].split(",")[3], "abc", 1)  # bad amount
    lines[9] = ",".join(["", *lines[9].split(",")[1:]])  # missing time is allowed
    copy = tmp_path / "S-FFSD.csv"
    copy.write_text("\n".join(lines) + "\n")
    report = load_sffsd(embedded_store, copy, LoadOptions(tmp_path / "q"))
    assert report.rows == 100 == report.loaded + report.rejected
    assert report.rejected == 2


def test_missing_file_is_fatal(embedded_store: GraphStore, tmp_path: Path) -> None:
    with pytest.raises(FatalFileError, match="S-FFSD.csv"):
        load_sffsd(embedded_store, tmp_path / "S-FFSD.csv", LoadOptions(tmp_path / "q"))
