"""A Python client for the RiskGraph API, on ``gql``: ``RiskGraphClient`` (sync, requests)
and ``AsyncRiskGraphClient`` (asyncio, aiohttp), with helpers for the limit engine
(``decide``, ``risk``) and for investigators (``linked``, ``ring``).

    with RiskGraphClient("http://127.0.0.1:8000/graphql", api_key) as rg:
        rg.decide("u42", dry_run=True)["action"]

Errors come back as ``ApiClientError`` with the server's codes (``codes``), and a
rejected key as ``AuthenticationError``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gql import Client, GraphQLRequest
from gql.transport.exceptions import TransportQueryError, TransportServerError

from graph.errors import RiskGraphError

DECISION_FIELDS = """
  userId action dryRun fallback policyVersion modelVersion decidedAt refer
  lines { line action current limit change tempLimit tempUntil reasons { code line en zh } }
  reasons { code line en zh }
  counterfactuals { lever current needed action en zh }
"""

DECIDE = GraphQLRequest(f"""
mutation Decide($userId: ID!, $dryRun: Boolean!) {{
  decideLimit(userId: $userId, dryRun: $dryRun) {{ {DECISION_FIELDS} }}
}}""")

RISK = GraphQLRequest("""
query Risk($id: ID!) {
  user(id: $id) {
    id fraudRisk relationalRisk ownRisk modelVersion scoredAt
    creditFeatures { creditScore income monthsOnBook overdueCount worstDpd utilisation }
    limits { totalLimit totalBalance lines { line limit balance available tempLimit } }
  }
}""")

LINKED = GraphQLRequest("""
query Linked($id: ID!, $depth: Int!, $via: [LinkType!], $first: Int!, $after: String) {
  user(id: $id) {
    linkedAccounts(depth: $depth, via: $via, first: $first, after: $after) {
      totalCount
      pageInfo { hasNextPage endCursor }
      edges {
        cursor depth strength
        links { relType itemLabel itemId fromUser count }
        node { id fraudRisk relationalRisk }
      }
    }
  }
}""")

RING = GraphQLRequest("""
query Ring($id: ID!) {
  user(id: $id) {
    ring {
      id size kind suspicion why
      risk { scoredMembers meanFraudRisk maxFraudRisk meanRelationalRisk }
      members { id fraudRisk relationalRisk }
      sharedItems { relType label id members }
      directLinks { relType src dst count }
    }
  }
}""")


class ApiClientError(RiskGraphError):
    """The API answered with errors; ``codes`` holds their extensions.code values."""

    def __init__(self, message: str, errors: list[dict[str, Any]] | None = None,
                 data: Any = None) -> None:
        super().__init__(message)
        self.errors = errors or []
        self.data = data

    @property
    def codes(self) -> list[str]:
        return [str((e.get("extensions") or {}).get("code")) for e in self.errors]


class AuthenticationError(ApiClientError):
    """The server refused the API key (HTTP 401)."""


def _convert(exc: Exception) -> ApiClientError:
    if isinstance(exc, TransportQueryError):
        errors = list(exc.errors or [])
        msg = "; ".join(str(e.get("message")) for e in errors) or str(exc)
        cls = ApiClientError
        if any((e.get("extensions") or {}).get("code") == "UNAUTHENTICATED" for e in errors):
            cls = AuthenticationError
        return cls(msg, errors, exc.data)
    if isinstance(exc, TransportServerError) and exc.code == 401:
        return AuthenticationError("the server refused the API key (401); check the key",
                                   [{"extensions": {"code": "UNAUTHENTICATED"}}])
    return ApiClientError(f"request failed: {exc}")


def _object(data: Any, *path: str) -> dict[str, Any]:
    """The JSON object at ``path`` in a response's data; ApiClientError when the answer
    holds something else there (a server that does not match this client)."""
    found = _object_or_none(data, *path)
    if found is None:
        raise ApiClientError(f"the API answered null for {'.'.join(path) or 'data'}", data=data)
    return found


def _object_or_none(data: Any, *path: str) -> dict[str, Any] | None:
    """The JSON object at ``path`` in a response's data, or None when the API answered
    null there."""
    for name in path:
        if data is None:
            return None
        data = data[name]
    if data is None or isinstance(data, dict):
        return data
    raise ApiClientError(f"the API answered {type(data).__name__} for {'.'.join(path) or 'data'}",
                         data=data)


def _request(req: GraphQLRequest, **variables: Any) -> GraphQLRequest:
    return GraphQLRequest(req.document, variable_values=variables)


def _linked_vars(user_id: str, depth: int, via: Sequence[str] | None, first: int,
                 after: str | None) -> dict[str, Any]:
    return {"id": user_id, "depth": depth, "via": list(via) if via else None,
            "first": first, "after": after}


class RiskGraphClient:
    """Synchronous client; one HTTP session, reused. Use as a context manager or close()."""

    def __init__(self, url: str, api_key: str, timeout: float = 30.0) -> None:
        from gql.transport.requests import RequestsHTTPTransport

        self.url = url
        transport = RequestsHTTPTransport(
            url=url, headers={"Authorization": f"Bearer {api_key}"}, timeout=int(timeout),
            retries=0,
        )
        self._client = Client(transport=transport, fetch_schema_from_transport=False)
        self._session: Any = None

    def __repr__(self) -> str:
        return f"RiskGraphClient({self.url!r})"

    def __enter__(self) -> RiskGraphClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        if self._session is not None:
            self._client.close_sync()
            self._session = None

    def execute(self, query: str | GraphQLRequest, variables: dict[str, Any] | None = None
                ) -> dict[str, Any]:
        """Run any query; returns ``data`` or raises ApiClientError."""
        req = query if isinstance(query, GraphQLRequest) else GraphQLRequest(query)
        if variables is not None:
            req = GraphQLRequest(req.document, variable_values=variables)
        if self._session is None:
            self._session = self._client.connect_sync()
        try:
            return _object(self._session.execute(req))
        except (TransportQueryError, TransportServerError) as exc:
            raise _convert(exc) from None

    def decide(self, user_id: str, dry_run: bool = True) -> dict[str, Any]:
        return _object(self.execute(_request(DECIDE, userId=user_id, dryRun=dry_run)),
                       "decideLimit")

    def risk(self, user_id: str) -> dict[str, Any]:
        return _object(self.execute(_request(RISK, id=user_id)), "user")

    def linked(self, user_id: str, depth: int = 1, via: Sequence[str] | None = None,
               first: int = 20, after: str | None = None) -> dict[str, Any]:
        got = self.execute(_request(LINKED, **_linked_vars(user_id, depth, via, first, after)))
        return _object(got, "user", "linkedAccounts")

    def ring(self, user_id: str) -> dict[str, Any] | None:
        return _object_or_none(self.execute(_request(RING, id=user_id)), "user", "ring")


class AsyncRiskGraphClient:
    """Asynchronous client on aiohttp. ``async with AsyncRiskGraphClient(...) as rg:``."""

    def __init__(self, url: str, api_key: str, timeout: float = 30.0) -> None:
        from gql.transport.aiohttp import AIOHTTPTransport

        self.url = url
        transport = AIOHTTPTransport(url=url, headers={"Authorization": f"Bearer {api_key}"},
                                     timeout=int(timeout), ssl=False)
        self._client = Client(transport=transport, fetch_schema_from_transport=False,
                              execute_timeout=timeout)
        self._session: Any = None

    def __repr__(self) -> str:
        return f"AsyncRiskGraphClient({self.url!r})"

    async def __aenter__(self) -> AsyncRiskGraphClient:
        self._session = await self._client.connect_async()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._client.close_async()
            self._session = None

    async def execute(self, query: str | GraphQLRequest,
                      variables: dict[str, Any] | None = None) -> dict[str, Any]:
        req = query if isinstance(query, GraphQLRequest) else GraphQLRequest(query)
        if variables is not None:
            req = GraphQLRequest(req.document, variable_values=variables)
        if self._session is None:
            self._session = await self._client.connect_async()
        try:
            return _object(await self._session.execute(req))
        except (TransportQueryError, TransportServerError) as exc:
            raise _convert(exc) from None

    async def decide(self, user_id: str, dry_run: bool = True) -> dict[str, Any]:
        got = await self.execute(_request(DECIDE, userId=user_id, dryRun=dry_run))
        return _object(got, "decideLimit")

    async def risk(self, user_id: str) -> dict[str, Any]:
        return _object(await self.execute(_request(RISK, id=user_id)), "user")

    async def linked(self, user_id: str, depth: int = 1, via: Sequence[str] | None = None,
                     first: int = 20, after: str | None = None) -> dict[str, Any]:
        got = await self.execute(_request(LINKED, **_linked_vars(user_id, depth, via, first,
                                                                 after)))
        return _object(got, "user", "linkedAccounts")

    async def ring(self, user_id: str) -> dict[str, Any] | None:
        got = await self.execute(_request(RING, id=user_id))
        return _object_or_none(got, "user", "ring")
