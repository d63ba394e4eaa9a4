"""Bearer API keys and the role matrix: who may read which field and run which mutation.

Keys are configured as SHA-256 digests (Settings.api_keys); a presented key is hashed
and compared with every configured digest in constant time, so neither the key nor the
position of a match leaks through timing.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from strawberry.permission import BasePermission
from strawberry.types import Info

from api.settings import ROLES, ApiKeySpec, hash_api_key

INVESTIGATOR, LIMIT_ENGINE, ADMIN = ROLES
EVERYONE = frozenset(ROLES)
STAFF = frozenset({INVESTIGATOR, ADMIN})
ENGINE = frozenset({LIMIT_ENGINE, ADMIN})

# The one table of access rights, by GraphQL "Type.field". A field not listed is open to
# every authenticated role. Applying a decision (dryRun: false) is its own right.
ACCESS: Mapping[str, frozenset[str]] = {
    "Query.user": EVERYONE,
    "Query.users": STAFF,
    "Query.rings": STAFF,
    "Query.ring": STAFF,
    "Query.merchant": STAFF,
    "Merchant.risk": STAFF,
    "Query.device": STAFF,
    "Query.product": EVERYONE,
    "User.profile": EVERYONE,  # PII masked for the limit engine
    "User.creditFeatures": EVERYONE,
    "User.fraudRisk": EVERYONE,
    "User.relationalRisk": EVERYONE,
    "User.products": EVERYONE,
    "User.limits": EVERYONE,
    "User.decisionHistory": EVERYONE,
    "User.explanation": STAFF,
    "User.linkedAccounts": STAFF,
    "User.ring": STAFF,
    "User.flags": STAFF,
    "User.devices": STAFF,
    "Mutation.decideLimit": EVERYONE,
    "Mutation.decideLimit(dryRun: false)": ENGINE,
    "Mutation.decideLimit(asOf)": ENGINE,  # deciding as of another date
    "Mutation.reviewLimits(asOf)": ENGINE,
    "Mutation.rescoreUser": ENGINE,
    "Mutation.flagUser": STAFF,
    "Mutation.reviewLimits": frozenset({ADMIN}),
}

# Roles that see personal data unmasked.
PII_ROLES = STAFF


@dataclass(frozen=True)
class Principal:
    """Who is calling: a role and the public id of the key used."""

    role: str
    key_id: str

    def may(self, right: str) -> bool:
        return self.role in ACCESS.get(right, EVERYONE)

    @property
    def sees_pii(self) -> bool:
        return self.role in PII_ROLES


class Authenticator:
    """Resolves an ``Authorization: Bearer <key>`` header to a Principal, or None."""

    def __init__(self, keys: Iterable[ApiKeySpec]) -> None:
        self._keys = tuple(keys)

    def __repr__(self) -> str:
        return f"Authenticator({len(self._keys)} keys)"

    @property
    def configured(self) -> int:
        return len(self._keys)

    def authenticate(self, authorization: str | None) -> Principal | None:
        if not authorization:
            return None
        scheme, _, key = authorization.strip().partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key or len(key) > 512:
            return None
        digest = hash_api_key(key).encode()
        found: ApiKeySpec | None = None
        for spec in self._keys:  # no early exit: every key costs the same time
            if hmac.compare_digest(digest, spec.sha256.encode()) and found is None:
                found = spec
        return Principal(found.role, found.key_id) if found else None


def allowed(right: str) -> list[type[BasePermission]]:
    """Strawberry permission classes enforcing ``ACCESS[right]`` on one field."""
    roles = ACCESS[right]
    if roles == EVERYONE:
        return []  # nothing to check on a hot path (a score on each of 50 users)
    needs = ", ".join(r for r in ROLES if r in roles)

    class RoleAllowed(BasePermission):
        message = f"{right} is not available to this key's role; it needs one of: {needs}"
        error_extensions = {"code": "FORBIDDEN"}

        def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
            return info.context.principal.role in roles

    RoleAllowed.__name__ = "Allowed_" + right.replace(".", "_").replace(" ", "")
    return [RoleAllowed]
