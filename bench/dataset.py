"""Generated data into a store, for the benchmarks: a plain batched upsert of the
generator's Parquet files, node files first, then relationships."""

from __future__ import annotations

from pathlib import Path

from graph.store import GraphStore


def load_generated(store: GraphStore, directory: Path, batch_size: int = 200_000) -> None:
    import pyarrow.parquet as pq

    from loaders.formats import SPECS

    for spec in SPECS:
        path = directory / f"{spec.stem}.parquet"
        if not path.is_file():
            continue
        for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_size):
            cols = {c: batch.column(c).to_numpy(zero_copy_only=False)
                    for c in batch.schema.names if c in spec.columns}
            if spec.kind == "relationships":
                store.upsert_relationships(spec.target, cols)
            else:
                store.upsert_nodes(spec.target, cols)
