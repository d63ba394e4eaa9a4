"""The Neo4j store's graph work in the database gives the reference answers.

``linked_accounts`` on the Neo4j store is one Cypher statement (graph.cypher
.LINKED_ACCOUNTS); ``linked_accounts_from_primitives``, the walk over ``adjacent``, is the
reference. Both run here on the live Bolt server, on the same data.
"""

from __future__ import annotations

import pytest

from graph import cypher, queries
from graph.errors import NotFoundError
from graph.neo4j_store import Neo4jStore
from graph.store import LinkedInDatabase
from tests.test_linkindex import build_graph

pytestmark = pytest.mark.neo4j


@pytest.mark.parametrize("seed", [2])
def test_linked_accounts_in_one_statement_equal_the_walk(
    neo4j_store: Neo4jStore, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert isinstance(neo4j_store, LinkedInDatabase)
    users = build_graph(neo4j_store, seed)
    nonempty = 0
    for caps in ((200, 1000), (2, 1)):  # the project's caps, then tiny ones
        monkeypatch.setattr(queries, "MAX_ITEMS_PER_USER", caps[0])
        monkeypatch.setattr(queries, "MAX_DIRECT_LINKS_PER_USER", caps[1])
        for user in users:
            for kw in ({"depth": 1}, {"depth": 2}, {"depth": 3, "max_item_users": 4},
                       {"depth": 2, "via": ["USES", "TRANSFERRED"], "limit": 5}):
                reference = queries.linked_accounts_from_primitives(
                    neo4j_store, user, **kw)  # type: ignore[arg-type]
                found = queries.linked_accounts(neo4j_store, user, **kw)  # type: ignore[arg-type]
                assert found == reference, (user, kw, caps)
                nonempty += bool(found)
    assert nonempty > len(users)  # the graph links many users: the test compares something


def test_linked_accounts_statements_are_filled_from_the_model() -> None:
    assert len(cypher.LINKED_ACCOUNTS) == 4
    for statement in cypher.LINKED_ACCOUNTS:
        assert "__" not in statement  # every placeholder replaced
        assert statement.count("'USES' IN $via") == cypher.LINKED_ACCOUNTS.index(statement) + 1


def test_linked_accounts_of_an_unknown_user(neo4j_store: Neo4jStore) -> None:
    build_graph(neo4j_store, 1)
    with pytest.raises(NotFoundError):
        queries.linked_accounts(neo4j_store, "nobody", depth=2)


def test_schema_set_up_creates_only_what_is_missing(neo4j_store: Neo4jStore) -> None:
    with neo4j_store._session() as session:
        session.run("DROP INDEX paid_ts IF EXISTS").consume()
    neo4j_store.init()
    with neo4j_store._session() as session:
        names = set(session.run(cypher.SCHEMA_NAMES_INDEXES).single()["names"])
        names |= set(session.run(cypher.SCHEMA_NAMES_CONSTRAINTS).single()["names"])
    assert set(cypher.schema_statements()) <= names
