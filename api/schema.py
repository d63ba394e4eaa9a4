"""The GraphQL schema: queries over users, rings, merchants, devices and products, and the
mutations that decide limits, rescore users, flag them and review limits in bulk."""

from __future__ import annotations

from typing import Annotated, Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import (
    AddValidationRules,
    MaxTokensLimiter,
    ParserCache,
    ValidationCache,
)
from strawberry.types import ExecutionContext, Info

from api import services
from api.auth import allowed
from api.dataloaders import scan_users
from api.errors import BadInputError, ForbiddenError
from api.guards import ErrorCodes, QueryGuard, coded_error, max_aliases_rule
from api.pagination import check_first, decode_cursor, encode_cursor, paginate
from api.types import (
    Decision,
    Device,
    Flag,
    Merchant,
    PageInfo,
    Product,
    Review,
    Ring,
    User,
    check_id,
    ctx_of,
    decision_from,
    flag_from,
    load_user,
    page_info,
    review_from,
)
from graph import queries
from graph.errors import NotFoundError, StoreUnavailableError
from graph.model import Node

MAX_TOKENS = 2000
MAX_ALIASES = 30
MAX_REVIEW_IDS = 10_000
# One rule class for the process: the validation cache is keyed by the rules in force.
MAX_ALIASES_RULE = max_aliases_rule(MAX_ALIASES)


@strawberry.type
class Caller:
    role: str
    key_id: str


@strawberry.input(description="Conditions on users; every one given must hold.")
class UserFilter:
    lifecycle: str | None = None
    city: str | None = None
    min_fraud_risk: float | None = None
    max_fraud_risk: float | None = None
    min_relational_risk: float | None = None
    scored: bool | None = None

    def matches(self, n: Node) -> bool:
        p = n.properties
        fr, rr = p.get("fraud_risk"), p.get("relational_risk")
        if self.lifecycle is not None and p.get("lifecycle") != self.lifecycle:
            return False
        if self.city is not None and p.get("city") != self.city:
            return False
        if self.scored is not None and (fr is not None) != self.scored:
            return False
        if self.min_fraud_risk is not None and (fr is None or fr < self.min_fraud_risk):  # type: ignore[operator]
            return False
        if self.max_fraud_risk is not None and (fr is None or fr > self.max_fraud_risk):  # type: ignore[operator]
            return False
        return self.min_relational_risk is None or (
            rr is not None and not rr < self.min_relational_risk  # type: ignore[operator]
        )


@strawberry.type
class UserEdge:
    cursor: str
    node: User


@strawberry.type
class UserConnection:
    edges: list[UserEdge]
    page_info: PageInfo


@strawberry.type
class RingEdge:
    cursor: str
    node: Ring


@strawberry.type
class RingConnection:
    edges: list[RingEdge]
    page_info: PageInfo
    total_count: int


def forget(loader: Any, key: str) -> None:
    """Drop a cached answer so the next load reads the store again."""
    if loader.cache_map.get(key) is not None:
        loader.clear(key)


async def _node(info: Info, label: str, id_: str) -> Node:
    check_id(id_)
    loader = getattr(ctx_of(info).loaders, {"Merchant": "merchants", "Device": "devices",
                                            "Product": "products"}[label])
    n: Node | None = await loader.load(id_)
    if n is None:
        raise NotFoundError(f"no {label.lower()} with id {id_!r}")
    return n


async def _all_rings(info: Info, kind: str, min_size: int) -> list[queries.RingHeader]:
    """The stored groups of a kind with at least ``min_size`` members, most suspicious
    first, read at most once a minute."""
    ctx = ctx_of(info)
    hit = ctx.runtime.rings.get(kind, min_size)
    if hit is not None:
        return hit
    found = await ctx.run(queries.ring_headers, ctx.store, kind, min_size)
    ctx.runtime.rings.put(kind, min_size, found)
    return found


@strawberry.type
class Query:
    @strawberry.field(description="Who the API key belongs to.")
    def me(self, info: Info) -> Caller:
        p = ctx_of(info).principal
        return Caller(role=p.role, key_id=p.key_id)

    @strawberry.field(permission_classes=allowed("Query.user"))
    async def user(self, info: Info, id: strawberry.ID) -> User | None:
        return await load_user(info, check_id(str(id)))

    @strawberry.field(permission_classes=allowed("Query.users"),
                      description="Users in id order, optionally filtered.")
    async def users(
        self, info: Info, filter: UserFilter | None = None, first: int = 20,
        after: str | None = None,
    ) -> UserConnection | None:
        ctx = ctx_of(info)
        check_first(first, ctx.settings.api_max_page)
        start = decode_cursor("users", after) if after is not None else None
        if start is not None and not isinstance(start, str):
            raise BadInputError("malformed users cursor")
        keep = filter.matches if filter is not None else (lambda n: True)
        found, last, more = await ctx.run(scan_users, ctx.store, start, first, keep)
        page = found[:first]
        for n in page:
            ctx.loaders.users.prime(n.id, n)
        cursors = [encode_cursor("users", n.id) for n in page]
        has_next = len(found) > first or more
        # A scan that stopped early resumes after the last id it looked at.
        if len(found) > first or not more or last is None:
            end = cursors[-1] if cursors else None  # first: 0 gives an empty page
        else:
            end = encode_cursor("users", last)
        return UserConnection(
            edges=[UserEdge(cursor=c, node=User(node=n)) for c, n in zip(cursors, page)],
            page_info=page_info(cursors, has_next, start is not None, end),
        )

    @strawberry.field(permission_classes=allowed("Query.rings"),
                      description="Groups found by the last ring pass, most suspicious "
                                  "first, then by id. kind: ring (default), community or all.")
    async def rings(
        self, info: Info, min_size: int = 3, first: int = 20, after: str | None = None,
        kind: str = "ring",
    ) -> RingConnection | None:
        ctx = ctx_of(info)
        if not 2 <= min_size <= 10_000:
            raise BadInputError(f"minSize must be between 2 and 10000, got {min_size}")
        if kind not in ("ring", "community", "all"):
            raise BadInputError(f"kind must be ring, community or all, not {kind!r}")
        check_first(first, ctx.settings.api_max_page)
        ranked = await _all_rings(info, kind, min_size)
        page = paginate(ranked, lambda r: [-r.suspicion, r.id], "rings", first, after,
                        ctx.settings.api_max_page)
        described = await ctx.run(lambda: [queries.describe(ctx.store, h) for h in page.items])
        return RingConnection(
            edges=[RingEdge(cursor=c, node=Ring.from_core(r))
                   for r, c in zip(described, page.cursors)],
            page_info=page_info(page.cursors, page.has_next, page.has_previous),
            total_count=page.total,
        )

    @strawberry.field(permission_classes=allowed("Query.ring"),
                      description="A ring by id (ring:<smallest member id>).")
    async def ring(self, info: Info, id: strawberry.ID) -> Ring | None:
        rid = check_id(str(id))
        if not rid.startswith("ring:") or len(rid) == len("ring:"):
            raise BadInputError("a ring id looks like ring:<user id>")
        r = await ctx_of(info).loaders.rings.load(rid[len("ring:"):])
        if r is None or r.id != rid:
            raise NotFoundError(f"no ring with id {rid!r}")
        return Ring.from_core(r)

    @strawberry.field(permission_classes=allowed("Query.merchant"))
    async def merchant(self, info: Info, id: strawberry.ID) -> Merchant | None:
        return Merchant.from_node(await _node(info, "Merchant", str(id)))

    @strawberry.field(permission_classes=allowed("Query.device"))
    async def device(self, info: Info, id: strawberry.ID) -> Device | None:
        return Device.from_node(await _node(info, "Device", str(id)))

    @strawberry.field(permission_classes=allowed("Query.product"))
    async def product(self, info: Info, id: strawberry.ID) -> Product | None:
        return Product.from_node(await _node(info, "Product", str(id)))


def _selects(info: Info, name: str) -> bool:
    """Whether the query asks for field ``name`` directly under this field: the limit
    engine's counterfactual search costs many decisions, spent only when shown."""
    for field in info.selected_fields:
        for sel in getattr(field, "selections", ()):
            if getattr(sel, "name", None) == name:
                return True
            if any(getattr(s, "name", None) == name for s in getattr(sel, "selections", ())):
                return True  # inside a fragment
    return False


AS_OF_DOC = ("Decide as of this day (YYYY-MM-DD, in the policy's UTC offset) or ISO date "
             "and time: its seasons and cool-downs; limit_engine and admin only.")


def _as_of(ctx: Any, as_of: str | None, right: str) -> int | None:
    if as_of is None:
        return None
    if not ctx.principal.may(right):
        raise ForbiddenError("deciding as of a date (asOf) needs the limit_engine or admin role")
    return services.as_of_ms(ctx.runtime.limits, as_of)


@strawberry.type
class Mutation:
    @strawberry.mutation(permission_classes=allowed("Mutation.decideLimit"),
                         description="Decide a user's limits; dryRun (default) applies nothing.")
    async def decide_limit(
        self, info: Info, user_id: strawberry.ID, dry_run: bool = True,
        as_of: Annotated[str | None, strawberry.argument(description=AS_OF_DOC)] = None,
    ) -> Decision | None:
        ctx = ctx_of(info)
        if not dry_run and not ctx.principal.may("Mutation.decideLimit(dryRun: false)"):
            raise ForbiddenError(
                "applying a decision (dryRun: false) needs the limit_engine or admin role"
            )
        at_ms = _as_of(ctx, as_of, "Mutation.decideLimit(asOf)")
        uid = check_id(str(user_id), "userId")
        try:
            user = await load_user(info, uid)
        except StoreUnavailableError as exc:
            got = await ctx.run(services.fallback_decision, ctx.runtime.limits, uid,
                                dry_run=dry_run, cause=exc)
        else:
            # A dry run reads and decides: bounded work (the ring walk stops past the
            # policy's largest ring), run like a read. Applying waits on the audit's
            # fsync and the store's write, and counterfactuals cost many decisions, so
            # those go to a thread.
            counterfactuals = _selects(info, "counterfactuals")
            runner = ctx.runtime.read if dry_run and not counterfactuals else ctx.runtime.run
            got = await runner(services.decide_limit, ctx.runtime.limits, uid,
                               dry_run=dry_run, counterfactuals=counterfactuals,
                               node=user.node if user is not None else None, at_ms=at_ms)
        decision = decision_from(got, dry_run)
        if decision.fallback:  # counted apart; no decision was made or recorded
            ctx.runtime.metrics.decisions.inc("fallback", str(dry_run).lower())
            return decision
        ctx.runtime.metrics.decisions.inc(decision.action or "unknown", str(dry_run).lower())
        if not dry_run:
            await ctx.run(ctx.runtime.actions.record, "decideLimit", ctx.principal.key_id,
                          ctx.request_id, user_id=str(user_id), outcome=decision.action)
        return decision

    @strawberry.mutation(permission_classes=allowed("Mutation.rescoreUser"),
                         description="Score one user again from its neighbourhood.")
    async def rescore_user(self, info: Info, user_id: strawberry.ID) -> User | None:
        ctx = ctx_of(info)
        uid = check_id(str(user_id), "userId")
        await load_user(info, uid)
        await ctx.run(services.rescore_user, ctx.runtime.models, ctx.store, uid)
        await ctx.run(ctx.runtime.actions.record, "rescoreUser", ctx.principal.key_id,
                      ctx.request_id, user_id=uid)
        forget(ctx.loaders.users, uid)
        return await load_user(info, uid)

    @strawberry.mutation(permission_classes=allowed("Mutation.flagUser"),
                         description="Flag an account for investigation; stored and audited.")
    async def flag_user(self, info: Info, user_id: strawberry.ID, reason: str) -> Flag | None:
        ctx = ctx_of(info)
        uid = check_id(str(user_id), "userId")
        await load_user(info, uid)
        try:
            flag = await ctx.run(ctx.runtime.flags.add, uid, reason, ctx.principal.key_id,
                                 ctx.request_id)
        except ValueError as exc:
            raise BadInputError(str(exc)) from None
        await ctx.run(ctx.runtime.actions.record, "flagUser", ctx.principal.key_id,
                      ctx.request_id, user_id=uid, flag_id=flag.id)
        forget(ctx.loaders.flags, uid)
        return flag_from(flag)

    @strawberry.mutation(permission_classes=allowed("Mutation.reviewLimits"),
                         description="Review the limits of many users (all when userIds "
                                     "is left out).")
    async def review_limits(
        self, info: Info, user_ids: list[strawberry.ID] | None = None, dry_run: bool = True,
        as_of: Annotated[str | None, strawberry.argument(description=AS_OF_DOC)] = None,
    ) -> Review | None:
        ctx = ctx_of(info)
        at_ms = _as_of(ctx, as_of, "Mutation.reviewLimits(asOf)")
        ids = [check_id(str(u), "userIds") for u in user_ids] if user_ids is not None else None
        if ids is not None and len(ids) > MAX_REVIEW_IDS:
            raise BadInputError(f"review at most {MAX_REVIEW_IDS} users per call")
        got = await ctx.run(services.review_limits, ctx.runtime.limits, user_ids=ids,
                            dry_run=dry_run, at_ms=at_ms)
        review = review_from(got, dry_run)
        for ac in review.by_action:
            ctx.runtime.metrics.decisions.inc(ac.action, str(dry_run).lower(), by=ac.count)
        await ctx.run(ctx.runtime.actions.record, "reviewLimits", ctx.principal.key_id,
                      ctx.request_id, dry_run=dry_run, reviewed=review.reviewed)
        return review


class RiskGraphSchema(strawberry.Schema):
    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        result = await super().execute(*args, **kwargs)
        # Errors raised before the operation hooks ran (a document the parser cache
        # rejects) have not been through ErrorCodes yet.
        if result.errors and any("code" not in (e.extensions or {}) for e in result.errors):
            ctx = kwargs.get("context_value")
            rid = getattr(ctx, "request_id", "")
            result.errors = [coded_error(e, rid, executed=False) for e in result.errors]
        return result

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        # ErrorCodes logs what needs logging (internal errors, as JSON); a user's bad
        # query is not a server event.
        return None


def build_schema() -> strawberry.Schema:
    return RiskGraphSchema(
        query=Query,
        mutation=Mutation,
        extensions=[
            ErrorCodes,
            lambda: MaxTokensLimiter(MAX_TOKENS),
            lambda: AddValidationRules([MAX_ALIASES_RULE]),
            lambda: ParserCache(maxsize=256),
            lambda: ValidationCache(maxsize=256),
            QueryGuard,
        ],
    )


schema = build_schema()


def sdl() -> str:
    return schema.as_str()


__all__ = ["schema", "build_schema", "sdl", "Query", "Mutation"]


