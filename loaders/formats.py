"""The file format (docs/data-format.md): which file holds which type, and its columns.

Everything here is derived from graph.model, so a property added to the model is a
column the loader accepts without further change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from graph.model import CREDIT_PROPERTIES, NODE_TYPES, REL_TYPES, SCORE_PROPERTIES, PropType

# Node files are the lower-case plural of the label, relationship files the lower-case type.
NODE_FILES: dict[str, str] = {
    "User": "users",
    "Merchant": "merchants",
    "Device": "devices",
    "Product": "products",
    "Phone": "phones",
    "IP": "ips",
    "BankCard": "bank_cards",
}
REL_FILES: dict[str, str] = {t: t.lower() for t in REL_TYPES}
CREDIT_FILE = "credit_features"
EXTENSIONS = (".csv", ".parquet")

Kind = Literal["nodes", "credit", "relationships"]


@dataclass(frozen=True)
class FileSpec:
    """What one file of the format holds and the columns it may carry."""

    stem: str
    kind: Kind
    target: str  # node label, or relationship type
    key_columns: tuple[str, ...]  # required, never empty
    properties: Mapping[str, PropType]  # optional columns

    @property
    def columns(self) -> tuple[str, ...]:
        return (*self.key_columns, *self.properties)


# Written by the model only (gnn/): a file cannot set a user's scores.
RESERVED_COLUMNS: frozenset[str] = frozenset(SCORE_PROPERTIES)


def _specs() -> list[FileSpec]:
    specs = [
        FileSpec(stem, "nodes", label, ("id",),
                 {k: v for k, v in NODE_TYPES[label].properties.items()
                  if k not in RESERVED_COLUMNS})
        for label, stem in NODE_FILES.items()
    ]
    specs.append(FileSpec(CREDIT_FILE, "credit", "User", ("id",), dict(CREDIT_PROPERTIES)))
    for t, stem in REL_FILES.items():
        rt = REL_TYPES[t]
        keys = ("src", "dst", "id") if rt.keyed else ("src", "dst")
        specs.append(FileSpec(stem, "relationships", t, keys, dict(rt.properties)))
    return specs


# In load order: nodes, then credit features, then relationships.
SPECS: tuple[FileSpec, ...] = tuple(_specs())
SPEC_BY_STEM: dict[str, FileSpec] = {s.stem: s for s in SPECS}

assert set(NODE_FILES) == set(NODE_TYPES), "every node label needs a file name"


def spec_for(path: Path) -> FileSpec | None:
    """The spec of a file by its name, or None for a file that is not part of the format."""
    if path.suffix.lower() not in EXTENSIONS:
        return None
    return SPEC_BY_STEM.get(path.stem.lower())
