"""Exports for warehouses and for comparing runs: every user's scores as Parquet.

The file is written in row groups as the store streams its users (export_nodes), to a
temporary name beside the target, and renamed into place when complete: a failed
export leaves no partial file behind.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from graph.errors import RiskGraphError
from graph.model import NODE_TYPES
from graph.store import GraphStore

SCORE_COLUMNS = ("fraud_risk", "own_risk", "relational_risk")
# The ring a user belongs to, when ring detection writes it to users; a column of nulls
# until then, so the file's schema does not depend on the run.
RING_PROPERTY = "ring_id"
SCHEMA = pa.schema([
    ("user_id", pa.string()),
    *((name, pa.float64()) for name in SCORE_COLUMNS),
    ("ring_id", pa.string()),
    ("model_version", pa.string()),
    ("scored_at", pa.timestamp("ms", tz="UTC")),
])


class ExportError(RiskGraphError):
    """An export could not be written."""


@dataclass(frozen=True)
class ExportResult:
    path: Path
    rows: int
    scored: int  # users with a fraud_risk


def export_scores(store: GraphStore, out: Path, batch_size: int = 100_000) -> ExportResult:
    """Every user's scores, ring id, model version and scoring time, in id order."""
    user_props = NODE_TYPES["User"].properties
    ring = RING_PROPERTY if RING_PROPERTY in user_props else None
    props = [*SCORE_COLUMNS, "model_version", "scored_at", *([ring] if ring else [])]
    out = Path(out)
    if out.suffix.lower() != ".parquet":
        raise ExportError(f"{out} does not end in .parquet; name the output file.parquet")
    if not out.parent.is_dir():
        raise ExportError(f"{out.parent} is not a directory; create it or choose another path")
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    rows = scored = 0
    try:
        with pq.ParquetWriter(tmp, SCHEMA, compression="zstd") as writer:
            for chunk in store.export_nodes("User", props, batch_size):
                n = len(chunk["id"])
                at = chunk["scored_at"]
                table = pa.table({
                    "user_id": pa.array(chunk["id"].tolist(), pa.string()),
                    **{name: pa.array(chunk[name], pa.float64(), from_pandas=True)
                       for name in SCORE_COLUMNS},
                    "ring_id": pa.array(chunk[ring].tolist() if ring else [None] * n,
                                        pa.string()),
                    "model_version": pa.array(chunk["model_version"].tolist(), pa.string()),
                    "scored_at": pa.array(
                        np.where(np.isnan(at), 0, at).astype(np.int64),
                        pa.timestamp("ms", tz="UTC"), mask=np.isnan(at)),
                }, schema=SCHEMA)
                writer.write_table(table)
                rows += n
                scored += int(np.count_nonzero(~np.isnan(chunk["fraud_risk"])))
        tmp.replace(out)
    except OSError as exc:
        raise ExportError(f"cannot write {out}: {exc.strerror or exc}; check the path "
                          "and the free space") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return ExportResult(out, rows, scored)
