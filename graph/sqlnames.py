"""Names of the embedded store's SQLite tables, from the model: a leaf module, so that the
store and its link index (graph/linkindex.py) name them alike without importing each
other."""

from __future__ import annotations

from graph.model import node_type, rel_type

# The link generation: a counter raised in the same transaction as every write of a
# relationship type that links accounts, and by clear(). A link index built at one
# generation answers only while the counter still has that value.
LINK_GENERATION_TABLE = "riskgraph_link_generation"


def quote(name: str) -> str:
    """A table or column name from the model, quoted (never user input)."""
    return '"' + name.replace('"', '""') + '"'


def node_table(label: str) -> str:
    node_type(label)
    return quote("n_" + label)


def rel_table(type_: str) -> str:
    rel_type(type_)
    return quote("r_" + type_)
