"""Every Cypher statement RiskGraph sends, as constants.

Values only ever travel as parameters (``$rows``, ``$ids``, ``$after``, ...). Labels and
relationship types cannot be parameters, so the statements that need them are built
here at import time from the allow-list in ``graph.model``, in dicts keyed by label or
type: nothing a caller passes at run time reaches the text of a statement.

Portable Neo4j 5 Cypher (5.23 or later), also served by ArcadeDB over Bolt; lookups by
key are ``WHERE n.id = x``, never an inline map. Upserts come in two forms, ``merge``
(Neo4j) and ``split`` (ArcadeDB), picked by ``graph.neo4j_store.write_form``.
docs/scale.md ("The stores, as built") gives the reasons and the costs measured.
"""

from __future__ import annotations

from collections.abc import Iterable

from graph.model import NODE_TYPES, REL_TYPES, RelType

# Placeholders in the templates below; replaced only with names from graph.model.
_LABEL = "__LABEL__"
_TYPE = "__TYPE__"
_SRC = "__SRC__"
_DST = "__DST__"
_NAME = "__NAME__"


def _fill_label(template: str, label: str) -> str:
    return template.replace(_LABEL, label).replace(_NAME, label.lower() + "_id")


def _per_label(template: str) -> dict[str, str]:
    return {label: _fill_label(template, label) for label in NODE_TYPES}


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


def _inline(leading: list[str], names: Iterable[str], first: int) -> str:
    """An inline map ``{<leading>, `p`: r[first], `q`: r[first + 1], ...}`` over a row
    sent as a list, which the driver packs in about half the time of a map. A null entry
    stores no property: CREATE skips nulls."""
    entries = leading + [f"`{p}`: r[{j}]" for j, p in enumerate(names, first)]
    return "{" + ", ".join(entries) + "}"


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

# -- writes, merge form (Neo4j, and single rows on any server) ---------------------------
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
# -- writes, split form (ArcadeDB; see the module docstring) ------------------------------
# New nodes. $rows: [[id, <the label's properties in graph.model order>], ...], null where
# no value was given; a row may stop after its last value (past the end reads as null).
# The ids are new as far as the lookup (EXISTING_IDS) saw; a concurrent writer that got
# there first makes this fail on the unique constraint, and the store retries the batch.
# The inline map names the label's properties from graph.model; every value is r[i].
CREATE_NODES: dict[str, str] = {
    label: _fill_label(
        "UNWIND $rows AS r "
        "CREATE (n:__LABEL__ " + _inline(["id: r[0]"], nt.properties, 1) + ") "
        "RETURN count(n) AS n",
        label,
    )
    for label, nt in NODE_TYPES.items()
}
# Existing nodes. $rows: [{id, props}] where props holds only the values given.
UPDATE_NODES: dict[str, str] = _per_label(
    "UNWIND $rows AS r "
    "MATCH (n:__LABEL__) WHERE n.id = r.id "
    "SET n += r.props "
    "RETURN count(n) AS n"
)
# Which of a batch's relationships exist; returns, for each source node that has any,
# (src, rels: [[dst, key], ...]). Types that are not keyed: $ids, the source ids; all of
# the type's relationships at those sources come back (at most one per pair: few).
# Keyed types: $rows, [[src, [id, ...]], ...], and only the ids asked for come back: a
# user's payments grow with its history, and the filter runs on the server.
EXISTING_RELATIONSHIPS: dict[str, str] = _per_type(
    "UNWIND $ids AS i "
    "MATCH (a:__SRC__) WHERE a.id = i "
    "MATCH (a)-[x:__TYPE__]->(b:__DST__) "
    "RETURN i AS src, collect([b.id, '']) AS rels",
    keyed_template=(
        "UNWIND $rows AS r "
        "MATCH (a:__SRC__) WHERE a.id = r[0] "
        "MATCH (a)-[x:__TYPE__]->(b:__DST__) WHERE x.id IN r[1] "
        "RETURN r[0] AS src, collect([b.id, x.id]) AS rels"
    ),
)
# New relationships. $rows: [[src, dst, <id, for keyed types>, <the type's properties in
# graph.model order>], ...], null where no value was given, as for CREATE_NODES; rows
# whose endpoints do not exist match nothing. Returns how many were written.
def _create_relationships(rt: RelType) -> str:
    first = 3 if rt.keyed else 2
    props = _inline(["id: r[2]"] if rt.keyed else [], rt.properties, first)
    return _fill_rel(
        "UNWIND $rows AS r "
        "MATCH (a:__SRC__) WHERE a.id = r[0] "
        "MATCH (b:__DST__) WHERE b.id = r[1] "
        "CREATE (a)-[x:__TYPE__ " + props + "]->(b) "
        "RETURN count(x) AS n",
        rt,
    )


CREATE_RELATIONSHIPS: dict[str, str] = {t: _create_relationships(rt) for t, rt in REL_TYPES.items()}
# Existing relationships. $rows: [{i, src, dst, id, props}]; returns the positions written.
UPDATE_RELATIONSHIPS: dict[str, str] = _per_type(
    "UNWIND $rows AS r "
    "MATCH (a:__SRC__) WHERE a.id = r.src "
    "MATCH (a)-[x:__TYPE__]->(b:__DST__) WHERE b.id = r.dst "
    "SET x += r.props "
    "RETURN collect(DISTINCT r.i) AS written",
    keyed_template=(
        "UNWIND $rows AS r "
        "MATCH (a:__SRC__) WHERE a.id = r.src "
        "MATCH (a)-[x:__TYPE__]->(b:__DST__) WHERE b.id = r.dst AND x.id = r.id "
        "SET x += r.props "
        "RETURN collect(DISTINCT r.i) AS written"
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
# $ids: ids to look up; returns those that exist, as one list (one record, not one per id).
EXISTING_IDS: dict[str, str] = _per_label(
    "UNWIND $ids AS i MATCH (n:__LABEL__) WHERE n.id = i RETURN collect(DISTINCT n.id) AS ids"
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
# the types arrive as values and are checked against graph.model by the caller. Each
# (type, direction) that can end at the label is its own typed pattern, guarded by the
# plan entry, so the server expands only the relationships asked for (an untyped
# pattern filtered by type afterwards would walk all of a user's payments too).
def _adjacent(label: str) -> str:
    branches = []
    for rt in REL_TYPES.values():
        for d, end, arrow in (("out", rt.src, "-[r:__TYPE__]->(m:__DST__)"),
                              ("in", rt.dst, "<-[r:__TYPE__]-(m:__SRC__)")):
            if end != label:
                continue
            branches.append(_fill_rel(
                f"WITH n, p WHERE p.type = '__TYPE__' AND p.dir = '{d}' "
                f"MATCH (n){arrow} "
                "RETURN m.id AS other, coalesce(r.id, '') AS key "
                "ORDER BY other, key LIMIT $limit ",
                rt,
            ))
    if not branches:  # a label no relationship ends at: nothing to expand
        branches = ["WITH n, p WHERE false RETURN '' AS other, '' AS key "]
    return _fill_label(
        "UNWIND $ids AS i MATCH (n:__LABEL__) WHERE n.id = i "
        "UNWIND $plan AS p "
        "CALL (n, p) { " + "UNION ALL ".join(branches) + "} "
        "RETURN n.id AS id, p.type AS type, p.dir AS dir, other, key",
        label,
    )


ADJACENT: dict[str, str] = {label: _adjacent(label) for label in NODE_TYPES}
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
# Whole-table exports: one statement each, sorted once by the server and streamed (the
# driver pulls a fetch-size of records at a time) in one read transaction. Keyset pages
# (ORDER BY ... LIMIT from a cursor) re-sorted the rest of the table for every page.
# Nodes with $lo < id (and id <= $hi unless $hi is null): the whole label with
# $lo = "", or one id-range partition. $props: the property names to return.
EXPORT_NODES: dict[str, str] = _per_label(
    "MATCH (n:__LABEL__) WHERE n.id > $lo AND ($hi IS NULL OR n.id <= $hi) "
    "RETURN n.id AS id, [k IN $props | n[k]] AS vals "
    "ORDER BY id"
)
# Every relationship of a type, ordered by (src, dst, key); $props as above.
EXPORT_RELATIONSHIPS: dict[str, str] = _per_type(
    "MATCH (a:__SRC__)-[r:__TYPE__]->(b:__DST__) "
    "RETURN a.id AS src, b.id AS dst, coalesce(r.id, '') AS key, "
    "[k IN $props | r[k]] AS vals "
    "ORDER BY src, dst, key"
)

# -- schema, only what is missing ----------------------------------------------------------
# Names of the constraints and indexes the server has; the store creates the others.
SCHEMA_NAMES_CONSTRAINTS = "SHOW CONSTRAINTS YIELD name RETURN collect(name) AS names"
SCHEMA_NAMES_INDEXES = "SHOW INDEXES YIELD name RETURN collect(name) AS names"


def schema_statements() -> dict[str, str]:
    """Every DDL statement, by the name of the constraint or index it creates."""
    out = {label.lower() + "_id": s for label, s in CREATE_NODE_ID_CONSTRAINT.items()}
    for t, statements in CREATE_REL_INDEXES.items():
        out[t.lower() + "_id"], out[t.lower() + "_ts"] = statements
    return out


# -- graph work in the database ------------------------------------------------------------
# Linked accounts in one statement (graph.queries.linked_accounts_from_primitives is the
# reference it must match). Each level is a CALL {} over the previous level's users (the
# frontier, all at once: a subquery per user cost more than the walk on ArcadeDB), with
# one typed pattern per link type, guarded by ``'TYPE' IN $via``:
#
# * shared items: a user's ``$max_items`` smallest items of the type; an item with more
#   than ``$max_item_users`` holders is a hub, cut by a COUNT {} subquery; every other
#   holder is linked.
# * direct links: ``$max_direct`` relationships per user, type and direction, smallest
#   (other id, key) first; a pair counts its relationships of the type.
#
# A link row is [from user, type, item label, item id, other user, count]. Users
# already reached (``seen``) are dropped; the rest of a level becomes the next level.
# Returns one record, ``levels``: per level, [[user, [link, ...]], ...]; no record
# when $id is not a user.
def _item_links(rt: RelType) -> str:
    return _fill_rel(
        "CALL (frontier) { "
        "UNWIND frontier AS fid "
        "MATCH (u:__SRC__)-[:__TYPE__]->(i:__DST__) WHERE u.id = fid AND '__TYPE__' IN $via "
        "WITH u, i ORDER BY i.id "
        "WITH u, collect(DISTINCT i)[..$max_items] AS items "
        "UNWIND items AS i "
        "WITH u, i WHERE COUNT { (i)<-[:__TYPE__]-(:__SRC__) } <= $max_item_users "
        "MATCH (i)<-[:__TYPE__]-(o:__SRC__) WHERE o.id <> u.id "
        "RETURN collect([u.id, '__TYPE__', '__DST__', i.id, o.id, 1]) AS __NAME__ "
        "} ",
        rt,
    )


def _direct_links(rt: RelType) -> str:
    one_way = (
        "CALL (frontier) { "
        "UNWIND frontier AS fid "
        "MATCH (u:User)__ARROW__(o:User) WHERE u.id = fid AND '__TYPE__' IN $via "
        "WITH u, o.id AS other, coalesce(r.id, '') AS key ORDER BY other, key "
        "WITH u, collect(other)[..$max_direct] AS others "
        "UNWIND others AS other "
        "RETURN collect([u.id, other]) AS __SIDE__ "
        "} "
    )
    return _fill_rel(
        "CALL (frontier) { "
        + one_way.replace("__ARROW__", "-[r:__TYPE__]->").replace("__SIDE__", "outs")
        + one_way.replace("__ARROW__", "<-[r:__TYPE__]-").replace("__SIDE__", "ins")
        + "UNWIND outs + ins AS pair "
        "WITH pair WHERE pair[0] <> pair[1] "
        "WITH pair, count(*) AS n "
        "RETURN collect([pair[0], '__TYPE__', 'User', pair[1], pair[1], n]) AS __NAME__ "
        "} ",
        rt,
    )


def _link_level(link_types: Iterable[str]) -> str:
    types = [REL_TYPES[t] for t in link_types]
    parts = [_direct_links(rt) if rt.dst == "User" else _item_links(rt) for rt in types]
    names = " + ".join(rt.type.lower() for rt in types)
    return (
        "CALL (frontier, seen) { "
        + "".join(parts)
        + f"UNWIND {names} AS l "
        "WITH l WHERE NOT l[4] IN seen "
        "WITH l[4] AS other, collect(l) AS links "
        "RETURN collect([other, links]) AS level "
        "} "
        "WITH levels + [level] AS levels, seen + [x IN level | x[0]] AS seen, "
        "[x IN level | x[0]] AS frontier "
    )


def _linked_accounts(depth: int) -> str:
    from graph.model import SHARED_ITEM_RELS, USER_USER_RELS

    level = _link_level(SHARED_ITEM_RELS + USER_USER_RELS)
    return (
        "MATCH (root:User) WHERE root.id = $id "
        "WITH [root.id] AS seen, [root.id] AS frontier, [] AS levels "
        + level * depth
        + "RETURN levels"
    )


# $id, $via (link types), $max_items, $max_item_users, $max_direct; depth 1 to 4 at
# positions 0 to 3.
LINKED_ACCOUNTS: tuple[str, ...] = tuple(_linked_accounts(d) for d in range(1, 5))
