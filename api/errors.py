"""Errors the API raises, each with the code clients see in ``extensions.code``."""

from __future__ import annotations

from graph.errors import RiskGraphError


class ApiError(RiskGraphError):
    """An error the API reports to its caller under a stable code."""

    code = "BAD_REQUEST"


class BadInputError(ApiError, ValueError):
    """An argument is out of range or malformed (page size, cursor, reason text)."""

    code = "BAD_USER_INPUT"


class ForbiddenError(ApiError):
    """The caller's role may not read this field or run this mutation."""

    code = "FORBIDDEN"


class ServiceUnavailableError(ApiError):
    """A service the field needs (limit engine, GNN scorer) is not installed or not ready."""

    code = "UNAVAILABLE"


# Codes every client can rely on; documented in deploy/README.md.
CODES = (
    "UNAUTHENTICATED",
    "FORBIDDEN",
    "NOT_FOUND",
    "BAD_USER_INPUT",
    "BAD_REQUEST",
    "GRAPHQL_PARSE_FAILED",
    "GRAPHQL_VALIDATION_FAILED",
    "QUERY_TOO_DEEP",
    "QUERY_TOO_COSTLY",
    "TIMEOUT",
    "UNAVAILABLE",
    "INTERNAL",
)
