"""Every Cypher statement RiskGraph sends, as constants.

Values only ever travel as parameters (``$rows``, ``$ids``, ``$after``, ...). Labels and
relationship types cannot be parameters in Cypher, so the statements that need them are
built here, once at import time, from the fixed allow-list in ``graph.model`` and kept
in dicts keyed by label or type. Nothing a caller passes at run time reaches the text of
a statement.

Lookups by key are written ``MATCH (n:Label) WHERE n.id = x`` rather than with an inline
map ``(n:Label {id: x})``: both use the unique index, but ArcadeDB (the Bolt server the
tests run against) reads a string value such as ``"$ids"`` in an inline map as a
reference to the parameter of that name, and the lookup then misses.

The dialect is portable Neo4j 5 Cypher (5.23 or later, for ``CALL (n) { ... }``), also
served by ArcadeDB over Bolt: no APOC, no ``elementId()``, timestamps as epoch ms.
"""

from __future__ import annotations

from graph.model import NODE_TYPES, REL_TYPES, RelType

# Placeholders in the templates below; replaced only with names from graph.model.
_LABEL = "__LABEL__"
_TYPE = "__TYPE__"
_SRC = "__SRC__"
_DST = "__DST__"
_NAME = "__NAME__"


def _per_label(template: str) -> dict[str, str]:
    return {
        label: template.replace(_LABEL, label).replace(_NAME, label.lower() + "_id")
        for label in NODE_TYPES
    }


def _fill_rel(template: str, rt: RelType) -> str:
    return (
        template.replace(_TYPE, rt.type)
        .replace(_SRC, rt.src)
        .replace(_DST, rt.dst)
        .replace(_NAME, rt.type.lower())
    )


def _per_type(template: str, keyed_template: str | None = None) -> dict[str, str]:
    return {
        t: _fill_rel(keyed_template if (rt.keyed and keyed_template) else template, rt)
        for t, rt in REL_TYPES.items()
    }


# -- health ------------------------------------------------------------------------
PING = "RETURN 1 AS one"

# -- schema (Neo4j 5 DDL) -------------------------------------------------------------
CREATE_NODE_ID_CONSTRAINT: dict[str, str] = _per_label(
    "CREATE CONSTRAINT __NAME__ IF NOT EXISTS FOR (n:__LABEL__) REQUIRE n.id IS UNIQUE"
)
# Keyed relationships (payments, transfers) are merged on their own id and split by
# time for training, so both get an index.
CREATE_REL_INDEXES: dict[str, list[str]] = {
    t: [
        _fill_rel(
            "CREATE INDEX __NAME___id IF NOT EXISTS FOR ()-[r:__TYPE__]-() ON (r.id)", rt
        ),
        _fill_rel(
            "CREATE INDEX __NAME___ts IF NOT EXISTS FOR ()-[r:__TYPE__]-() ON (r.ts)", rt
        ),
    ]
    for t, rt in REL_TYPES.items()
    if rt.keyed
}

# -- writes ----------------------------------------------------------------------------
# $rows: [{id, props}] where props holds only the values given (never null).
UPSERT_NODES: dict[str, str] = _per_label(
    "UNWIND $rows AS r "
    "MERGE (n:__LABEL__ {id: r.id}) "
    "SET n += r.props "
    "RETURN count(n) AS n"
)
# $rows: [{i, src, dst, id, props}]; rows whose endpoints do not exist match nothing.
# Returns the positions ``i`` of the rows written, so one pass both writes and finds
# the rows with a missing endpoint.
UPSERT_RELATIONSHIPS: dict[str, str] = _per_type(
    "UNWIND $rows AS r "
    "MATCH (a:__SRC__) WHERE a.id = r.src "
    "MATCH (b:__DST__) WHERE b.id = r.dst "
    "MERGE (a)-[x:__TYPE__]->(b) "
    "SET x += r.props "
    "RETURN collect(r.i) AS written",
    keyed_template=(
        "UNWIND $rows AS r "
        "MATCH (a:__SRC__) WHERE a.id = r.src "
        "MATCH (b:__DST__) WHERE b.id = r.dst "
        "MERGE (a)-[x:__TYPE__ {id: r.id}]->(b) "
        "SET x += r.props "
        "RETURN collect(r.i) AS written"
    ),
)
# $rows: [{id, props}]; only existing users are touched.
WRITE_SCORES = (
    "UNWIND $rows AS r "
    "MATCH (n:User) WHERE n.id = r.id "
    "SET n += r.props "
    "RETURN count(n) AS n"
)
# $limit: how many to delete in one transaction.
DELETE_RELATIONSHIPS: dict[str, str] = _per_type(
    "MATCH ()-[r:__TYPE__]->() WITH r LIMIT $limit DELETE r RETURN count(*) AS n"
)
DELETE_NODES: dict[str, str] = _per_label(
    "MATCH (n:__LABEL__) WITH n LIMIT $limit DETACH DELETE n RETURN count(*) AS n"
)

# -- reads -------------------------------------------------------------------------------
# $ids: ids to look up; returns those that exist.
EXISTING_IDS: dict[str, str] = _per_label(
    "UNWIND $ids AS i MATCH (n:__LABEL__) WHERE n.id = i RETURN DISTINCT n.id AS id"
)
GET_NODES: dict[str, str] = _per_label(
    "UNWIND $ids AS i MATCH (n:__LABEL__) WHERE n.id = i RETURN n.id AS id, properties(n) AS props"
)
# $after: exclusive lower bound ("" for the start); $limit: page size.
NODE_IDS: dict[str, str] = _per_label(
    "MATCH (n:__LABEL__) WHERE n.id > $after RETURN n.id AS id ORDER BY id LIMIT $limit"
)
# Relationships at each node in $ids for each entry of $plan ({type, dir}; "out": the
# node is the source), at most $limit per node and entry, smallest (other id, key) first.
# One statement for every type asked, so a query costs one round trip, not one per type;
# the types arrive as values and are checked against graph.model by the caller.
ADJACENT: dict[str, str] = _per_label(
    "UNWIND $ids AS i MATCH (n:__LABEL__) WHERE n.id = i "
    "UNWIND $plan AS p "
    "CALL (n, p) { "
    "MATCH (n)-[r]-(m) "
    "WHERE type(r) = p.type "
    "AND CASE p.dir WHEN 'out' THEN startNode(r) = n ELSE endNode(r) = n END "
    "RETURN m.id AS other, coalesce(r.id, '') AS key ORDER BY other, key LIMIT $limit "
    "} "
    "RETURN n.id AS id, p.type AS type, p.dir AS dir, other, key"
)
# Relationships of one type at each node in $ids, with their properties, at most $limit
# per node, smallest (other id, key) first. "out": the node is the source.
RELATIONSHIPS_OUT: dict[str, str] = _per_type(
    "UNWIND $ids AS i MATCH (n:__SRC__) WHERE n.id = i "
    "CALL (n) { "
    "MATCH (n)-[r:__TYPE__]->(m:__DST__) "
    "RETURN m.id AS other, coalesce(r.id, '') AS key, properties(r) AS props "
    "ORDER BY other, key LIMIT $limit "
    "} "
    "RETURN n.id AS id, other, key, props"
)
RELATIONSHIPS_IN: dict[str, str] = _per_type(
    "UNWIND $ids AS i MATCH (n:__DST__) WHERE n.id = i "
    "CALL (n) { "
    "MATCH (n)<-[r:__TYPE__]-(m:__SRC__) "
    "RETURN m.id AS other, coalesce(r.id, '') AS key, properties(r) AS props "
    "ORDER BY other, key LIMIT $limit "
    "} "
    "RETURN n.id AS id, other, key, props"
)
COUNT_NODES: dict[str, str] = _per_label("MATCH (n:__LABEL__) RETURN count(n) AS n")
COUNT_RELATIONSHIPS: dict[str, str] = _per_type(
    "MATCH ()-[r:__TYPE__]->() RETURN count(r) AS n"
)
# Keyset pages: $after (exclusive), $limit, $props (property names to return).
EXPORT_NODES: dict[str, str] = _per_label(
    "MATCH (n:__LABEL__) WHERE n.id > $after "
    "RETURN n.id AS id, [k IN $props | n[k]] AS vals "
    "ORDER BY id LIMIT $limit"
)
# Keyset pages over (src, dst, key): $src, $dst, $key (exclusive), $limit, $props.
EXPORT_RELATIONSHIPS: dict[str, str] = _per_type(
    "MATCH (a:__SRC__) WHERE a.id >= $src "
    "MATCH (a)-[r:__TYPE__]->(b:__DST__) "
    "WITH a.id AS src, b.id AS dst, coalesce(r.id, '') AS key, r "
    "WHERE src > $src OR (src = $src AND (dst > $dst OR (dst = $dst AND key > $key))) "
    "RETURN src, dst, key, [k IN $props | r[k]] AS vals "
    "ORDER BY src, dst, key LIMIT $limit"
)
