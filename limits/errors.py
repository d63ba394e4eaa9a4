"""Errors raised by the limit engine. All derive from graph.errors.RiskGraphError."""

from __future__ import annotations

from graph.errors import RiskGraphError


class LimitsError(RiskGraphError):
    """A problem in the limit engine: policy, profile or audit trail."""


class PolicyError(LimitsError, ValueError):
    """A policy file is missing, unreadable or invalid. Names the field and the reason."""

    def __init__(self, field: str, reason: str, source: str = "") -> None:
        self.field = field
        self.reason = reason
        self.source = source
        where = f" in {source}" if source else ""
        super().__init__(f"policy field {field!r}{where}: {reason}")


class ProfileError(LimitsError, ValueError):
    """A profile handed to the engine has a value it cannot use."""

    def __init__(self, user_id: str, field: str, reason: str) -> None:
        self.user_id = user_id
        self.field = field
        self.reason = reason
        super().__init__(f"user {user_id!r}, field {field!r}: {reason}")


class AuditError(LimitsError):
    """The audit log cannot be read or written."""


class AuditIntegrityError(AuditError):
    """A record of the audit log does not match the hash chain."""

    def __init__(self, line: int, seq: int | None, reason: str) -> None:
        self.line = line
        self.seq = seq
        self.reason = reason
        at = f"record {seq} (line {line})" if seq is not None else f"line {line}"
        super().__init__(
            f"audit log broken at {at}: {reason}; records from here on cannot be trusted, "
            "restore the log from a backup or investigate who changed it"
        )


class ReplayMismatchError(AuditError):
    """A recorded decision, re-run with its own policy and inputs, gives another result."""


class AsOfError(LimitsError, ValueError):
    """A date to decide as of that is not a date."""
