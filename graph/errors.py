"""The project's exceptions. Every error RiskGraph raises derives from RiskGraphError."""

from __future__ import annotations


class RiskGraphError(Exception):
    """Root of every error the project raises. Messages say what was wrong and what to do."""


class GraphError(RiskGraphError):
    """A problem in the graph layer."""


class UnknownTypeError(GraphError, ValueError):
    """A node label, relationship type or property that the graph model does not define."""


class InvalidBatchError(GraphError, ValueError):
    """A batch handed to a store is malformed: missing column, ragged lengths, bad value."""


class NotFoundError(GraphError, LookupError):
    """A node asked for by its business key does not exist."""


class StoreUnavailableError(GraphError):
    """The store cannot be reached (server down, data directory unreadable)."""


class StoreWriteError(GraphError):
    """A write failed after its retries; nothing of the failed batch was applied."""
