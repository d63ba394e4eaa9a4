"""Importing S-FFSD (data/s-ffsd/S-FFSD.csv) as users paying merchants.

Each row becomes one PAID relationship from User ``Source`` to Merchant ``Target``
with id ``sffsd-<row>`` (the 0-based data row, so line number minus 2), ``ts`` = Time
as given (an event order 0..N, not a clock time), ``amount`` = Amount,
``location`` = Location, ``txn_type`` = Type and ``is_fraud`` = Labels for labels 0 and
1; the unlabelled rows (Labels 2) get no ``is_fraud``. Users and merchants are created
from the distinct Source and Target values first. Rejected rows keep S-FFSD's own
columns in the quarantine file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from graph.store import GraphStore
from loaders.errors import FatalFileError
from loaders.formats import SPEC_BY_STEM
from loaders.load import FileReport, LoadOptions, PlannedFile, load_file
from loaders.reader import check_encoding, inspect

COLUMNS = ("Time", "Source", "Target", "Amount", "Location", "Type", "Labels")
ROWS = 77_881  # rows in the published file
ID_PREFIX = "sffsd-"


def _to_paid(table: pa.Table, lines: np.ndarray) -> pa.Table:
    labels = pc.utf8_trim_whitespace(table.column("Labels"))
    known = pc.is_in(labels, pa.array(["0", "1"]))
    unlabelled = pc.equal(labels, "2")
    is_fraud = pc.if_else(pc.or_(known, unlabelled), pc.if_else(known, labels, ""), labels)
    row = pc.cast(pa.array(lines - 2), pa.string())
    return pa.table({
        "src": table.column("Source"),
        "dst": table.column("Target"),
        "id": pc.binary_join_element_wise(ID_PREFIX, row, ""),
        "ts": table.column("Time"),
        "amount": table.column("Amount"),
        "location": table.column("Location"),
        "txn_type": table.column("Type"),
        "is_fraud": is_fraud,
    })


def _write_endpoints(store: GraphStore, path: Path, batch_size: int) -> None:
    """User and Merchant nodes for every non-empty Source and Target."""
    convert = pacsv.ConvertOptions(
        include_columns=["Source", "Target"],
        column_types={"Source": pa.string(), "Target": pa.string()},
    )
    parse = pacsv.ParseOptions(invalid_row_handler=lambda row: "skip",
                               newlines_in_values=True)
    table = pacsv.read_csv(path, parse_options=parse, convert_options=convert)
    for label, column in (("User", "Source"), ("Merchant", "Target")):
        ids = pc.unique(pc.utf8_trim_whitespace(table.column(column).combine_chunks()))
        ids = ids.filter(pc.and_(pc.is_valid(ids), pc.greater(pc.utf8_length(ids), 0)))
        ids = ids.filter(pc.less_equal(pc.utf8_length(ids), 256))
        values = ids.to_numpy(zero_copy_only=False)
        for start in range(0, len(values), batch_size):
            store.upsert_nodes(label, {"id": values[start:start + batch_size]})


def load_sffsd(store: GraphStore, path: Path, options: LoadOptions) -> FileReport:
    if path.is_dir():
        path = path / "S-FFSD.csv"
    if not path.is_file():
        raise FatalFileError(path, "file not found; give the path of S-FFSD.csv")
    check_encoding(path)
    info = inspect(path)
    missing = [c for c in COLUMNS if c not in info.columns]
    if missing:
        raise FatalFileError(path, f"missing S-FFSD columns {', '.join(missing)}")
    _write_endpoints(store, path, options.batch_size)
    planned = PlannedFile(SPEC_BY_STEM["paid"], info, ())
    return load_file(store, planned, options, transform=_to_paid)
