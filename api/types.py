"""GraphQL types, built from the core objects (graph nodes, query results, service
answers). Access rights come from api.auth.ACCESS; nothing here decides them."""

from __future__ import annotations

import datetime as dt
from enum import Enum
from typing import Any

import strawberry
from strawberry.types import Info

from api import services
from api.auth import allowed
from api.context import Context
from api.errors import BadInputError
from api.pagination import check_first, paginate
from graph.errors import NotFoundError
from graph.model import MAX_ID_LENGTH, Node, Relationship
from graph.queries import LINK_TYPES, LinkedAccount
from graph.queries import Ring as CoreRing

CREDIT_LINES = ("bnpl", "cash_loan")



@strawberry.enum(description="A way two accounts are tied: a shared item or a direct link.")
class LinkType(Enum):
    # the link types of graph.queries.LINK_TYPES (tests/test_api_schema.py checks)
    USES = "USES"
    HAS_PHONE = "HAS_PHONE"
    HAS_CARD = "HAS_CARD"
    LOGGED_FROM = "LOGGED_FROM"
    REFERRED = "REFERRED"
    TRANSFERRED = "TRANSFERRED"


def ctx_of(info: Info) -> Context:
    ctx: Context = info.context
    return ctx


def check_id(value: str, what: str = "id") -> str:
    if not value or len(value) > MAX_ID_LENGTH:
        raise BadInputError(f"{what} must be 1 to {MAX_ID_LENGTH} characters")
    return value


def iso(ms: Any) -> str | None:
    if ms is None:
        return None
    return dt.datetime.fromtimestamp(int(ms) / 1000, tz=dt.UTC).isoformat()


def _num(v: Any) -> float | None:
    return None if v is None else float(v)


def _int(v: Any) -> int | None:
    return None if v is None else int(v)


def _pick(obj: Any, *names: str, default: Any = None) -> Any:
    """The first of ``names`` present on an object or mapping."""
    for n in names:
        if isinstance(obj, dict):
            if n in obj:
                return obj[n]
        elif hasattr(obj, n):
            return getattr(obj, n)
    return default


def mask(value: str | None) -> str | None:
    if not value:
        return value
    return value[0] + "***"


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


@strawberry.type
class Profile:
    name: str | None = strawberry.field(description="Masked for the limit_engine role.")
    city: str | None
    signup_at: str | None
    lifecycle: str | None
    masked: bool


@strawberry.type
class CreditFeatures:
    credit_score: int | None
    income: float | None
    months_on_book: int | None
    repayment_history: str | None
    overdue_count: int | None
    worst_dpd: int | None
    utilisation: float | None
    monthly_spend: float | None
    monthly_txns: float | None
    merchant_categories: int | None
    active_days_30d: int | None
    other_products: int | None
    obligations: float | None

    @classmethod
    def from_node(cls, p: dict[str, Any]) -> CreditFeatures:
        return cls(
            credit_score=_int(p.get("credit_score")),
            income=_num(p.get("income")),
            months_on_book=_int(p.get("months_on_book")),
            repayment_history=p.get("repayment_history"),
            overdue_count=_int(p.get("overdue_count")),
            worst_dpd=_int(p.get("worst_dpd")),
            utilisation=_num(p.get("utilisation")),
            monthly_spend=_num(p.get("monthly_spend")),
            monthly_txns=_num(p.get("monthly_txns")),
            merchant_categories=_int(p.get("merchant_categories")),
            active_days_30d=_int(p.get("active_days_30d")),
            other_products=_int(p.get("other_products")),
            obligations=_num(p.get("obligations")),
        )


@strawberry.type
class Product:
    id: strawberry.ID
    name: str | None
    kind: str | None

    @classmethod
    def from_node(cls, n: Node) -> Product:
        return cls(id=strawberry.ID(n.id), name=n.properties.get("name"),  # type: ignore[arg-type]
                   kind=n.properties.get("kind"))  # type: ignore[arg-type]


@strawberry.type
class Merchant:
    id: strawberry.ID
    name: str | None
    category: str | None
    city: str | None

    @classmethod
    def from_node(cls, n: Node) -> Merchant:
        p = n.properties
        return cls(id=strawberry.ID(n.id), name=p.get("name"),  # type: ignore[arg-type]
                   category=p.get("category"), city=p.get("city"))  # type: ignore[arg-type]

    @strawberry.field(permission_classes=allowed("Merchant.risk"),
                      description="The payers' fraud risk weighted by what they paid here "
                                  "(gnn.merchants), and the riskiest payers.")
    async def risk(self, info: Info, top_k: int = 5) -> MerchantRisk:
        if not 1 <= top_k <= 50:
            raise BadInputError("topK must be between 1 and 50")
        ctx = ctx_of(info)
        r = await ctx.run(services.merchant_risk, ctx.store, str(self.id), top_k=top_k)
        return MerchantRisk(risk=r.risk, payers=r.payers, scored_payers=r.scored_payers,
                            model_version=r.model_version, top_payers=[
                                MerchantPayer(user_id=strawberry.ID(p.user_id),
                                              fraud_risk=p.fraud_risk, amount=p.amount,
                                              payments=p.payments) for p in r.top_payers])


@strawberry.type
class MerchantPayer:
    user_id: strawberry.ID
    fraud_risk: float
    amount: float
    payments: int


@strawberry.type
class MerchantRisk:
    risk: float | None
    payers: int
    scored_payers: int
    model_version: str | None
    top_payers: list[MerchantPayer]


@strawberry.type
class Holding:
    product_id: strawberry.ID
    limit: float | None
    balance: float | None
    status: str | None
    since: str | None
    temp_limit: float | None
    temp_until: str | None

    @strawberry.field
    async def product(self, info: Info) -> Product | None:
        n = await ctx_of(info).loaders.products.load(str(self.product_id))
        return Product.from_node(n) if n else None

    @classmethod
    def from_rel(cls, r: Relationship) -> Holding:
        p = r.properties
        return cls(
            product_id=strawberry.ID(r.dst), limit=_num(p.get("limit")),
            balance=_num(p.get("balance")), status=p.get("status"),  # type: ignore[arg-type]
            since=iso(p.get("since")), temp_limit=_num(p.get("temp_limit")),
            temp_until=iso(p.get("temp_until")),
        )


@strawberry.type
class CreditLine:
    line: str
    product_id: strawberry.ID
    limit: float | None
    balance: float | None
    available: float | None
    temp_limit: float | None
    temp_until: str | None
    status: str | None


@strawberry.type
class CreditLimits:
    lines: list[CreditLine]
    total_limit: float
    total_balance: float


@strawberry.type
class Flag:
    id: strawberry.ID
    user_id: strawberry.ID
    reason: str
    by: str
    at: str | None


def flag_from(f: Any) -> Flag:
    return Flag(id=strawberry.ID(f.id), user_id=strawberry.ID(f.user_id), reason=f.reason,
                by=f.by, at=iso(f.at_ms))


@strawberry.type
class Reason:
    code: str
    line: str | None
    # The engine's reason (or an audit record's): its texts are formatted only when
    # asked for, as most callers read codes.
    source: strawberry.Private[Any]

    @strawberry.field
    def en(self) -> str:
        return _reason_text(self.source, "en", "text", "message")

    @strawberry.field
    def zh(self) -> str:
        return _reason_text(self.source, "zh")


@strawberry.type
class LineDecision:
    line: str
    action: str | None
    current: float | None
    limit: float | None
    change: float | None
    temp_limit: float | None
    temp_until: str | None
    reasons: list[Reason]


@strawberry.type(description="What would change the decision, and to what.")
class Counterfactual:
    lever: str | None
    current: str | None
    needed: str | None
    action: str | None
    en: str
    zh: str
    line: str | None = strawberry.field(
        default=None, description="the line the change would move")
    limit: float | None = strawberry.field(
        default=None, description="that line's limit after the change")


@strawberry.type
class Decision:
    user_id: strawberry.ID
    action: str
    dry_run: bool
    policy_version: str | None
    model_version: str | None
    decided_at: str | None
    refer: str | None
    lines: list[LineDecision]
    reasons: list[Reason]
    counterfactuals: list[Counterfactual]
    fallback: bool = strawberry.field(
        default=False,
        description="True when the risk data could not be read and the safe action was "
                    "returned instead of a decision: keep, nothing changed, not recorded.")


def _text(v: Any) -> str | None:
    return None if v is None else str(v)


def _reason(r: Any) -> Reason:
    if isinstance(r, str):
        return Reason(code="", line=None, source=r)
    return Reason(code=str(_pick(r, "code", default="") or ""), line=_pick(r, "line"),
                  source=r)


def _reason_text(r: Any, *names: str) -> str:
    if isinstance(r, str):
        return r
    return str(_pick(r, *names, default="") or "")


def _counterfactual(c: Any) -> Counterfactual:
    if isinstance(c, str):
        return Counterfactual(lever=None, current=None, needed=None, action=None, en=c, zh=c)
    return Counterfactual(
        lever=_text(_pick(c, "lever", "code")), current=_text(_pick(c, "current")),
        needed=_text(_pick(c, "needed")), action=_text(_pick(c, "action")),
        en=str(_pick(c, "en", default="") or ""), zh=str(_pick(c, "zh", default="") or ""),
        line=_text(_pick(c, "line")), limit=_float_or_none(_pick(c, "limit")),
    )


def _float_or_none(v: Any) -> float | None:
    return None if v is None else float(v)


def _when(v: Any) -> str | None:
    return v if isinstance(v, str) or v is None else iso(v)


def decision_from(d: Any, dry_run: bool | None = None) -> Decision:
    """A Decision from the limit engine's object, or from an audit record of one."""
    inner = _pick(d, "decision")
    if inner is not None and _pick(d, "action") is None:
        dry_run = _pick(d, "dry_run", default=dry_run)
        d = inner
    lines = []
    for ln in _pick(d, "lines", default=()) or ():
        cur = _num(_pick(ln, "current_limit", "current"))
        new = _num(_pick(ln, "new_limit", "limit"))
        lines.append(LineDecision(
            line=str(_pick(ln, "line", "product", default="")),
            action=_text(_pick(ln, "action")),
            current=cur, limit=new,
            change=None if new is None else new - (cur or 0.0),
            temp_limit=_num(_pick(ln, "temp_limit")),
            temp_until=_when(_pick(ln, "temp_until_ms", "temp_until")),
            reasons=[_reason(r) for r in _pick(ln, "reasons", default=()) or ()],
        ))
    return Decision(
        user_id=strawberry.ID(str(_pick(d, "user_id", default=""))),
        action=str(_pick(d, "action", default="")),
        dry_run=bool(_pick(d, "dry_run", default=dry_run)),
        policy_version=_text(_pick(d, "policy_version")),
        model_version=_text(_pick(d, "model_version")),
        decided_at=_when(_pick(d, "decided_at_ms", "decided_at")),
        refer=_text(_pick(d, "refer")),
        lines=lines,
        reasons=[_reason(r) for r in _pick(d, "reasons", default=()) or ()],
        counterfactuals=[_counterfactual(c) for c in _pick(d, "counterfactuals", default=()) or ()],
        fallback=bool(_pick(d, "fallback", default=False)),
    )


@strawberry.type
class ActionCount:
    action: str
    count: int


@strawberry.type
class Review:
    dry_run: bool
    reviewed: int
    by_action: list[ActionCount]


def review_from(r: Any, dry_run: bool) -> Review:
    by_action = _pick(r, "by_action", "actions", default=None)
    if by_action is None:
        decisions = _pick(r, "decisions", default=()) or ()
        by_action = {}
        for d in decisions:
            a = str(_pick(d, "action", default=""))
            by_action[a] = by_action.get(a, 0) + 1
    return Review(
        dry_run=bool(_pick(r, "dry_run", default=dry_run)),
        reviewed=int(_pick(r, "reviewed", "count", "total",
                           default=sum(int(v) for v in dict(by_action).values()))),
        by_action=[ActionCount(action=str(a), count=int(n))
                   for a, n in sorted(dict(by_action).items())],
    )


@strawberry.type
class Driver:
    label: str
    id: strawberry.ID
    rel_type: str | None
    weight: float


@strawberry.type
class Explanation:
    user_id: strawberry.ID
    model_version: str | None
    fraud_risk: float | None
    relational_risk: float | None
    drivers: list[Driver]


def explanation_from(e: Any, user_id: str) -> Explanation:
    drivers = []
    for d in _pick(e, "drivers", "neighbours", "top", default=()) or ():
        drivers.append(Driver(
            label=str(_pick(d, "label", default="User")),
            id=strawberry.ID(str(_pick(d, "id", "node_id", default=""))),
            rel_type=_pick(d, "rel_type", "relationship", "via"),
            weight=float(_pick(d, "weight", "importance", "score", default=0.0)),
        ))
    return Explanation(
        user_id=strawberry.ID(str(_pick(e, "user_id", default=user_id))),
        model_version=_pick(e, "model_version"),
        fraud_risk=_num(_pick(e, "fraud_risk")),
        relational_risk=_num(_pick(e, "relational_risk")),
        drivers=drivers,
    )


@strawberry.type
class Link:
    rel_type: str
    item_label: str
    item_id: strawberry.ID
    from_user: strawberry.ID
    count: int


@strawberry.type
class LinkedAccountEdge:
    cursor: str
    depth: int
    strength: int
    links: list[Link]
    user_id: strawberry.Private[str]

    @strawberry.field
    async def node(self, info: Info) -> User | None:
        return await load_user(info, self.user_id, required=False)


@strawberry.type
class LinkedAccountConnection:
    edges: list[LinkedAccountEdge]
    page_info: PageInfo
    total_count: int


@strawberry.type
class SharedItem:
    rel_type: str
    label: str
    id: strawberry.ID
    members: list[strawberry.ID]


@strawberry.type
class DirectLink:
    rel_type: str
    src: strawberry.ID
    dst: strawberry.ID
    count: int


@strawberry.type
class RingRisk:
    scored_members: int
    mean_fraud_risk: float | None
    max_fraud_risk: float | None
    mean_relational_risk: float | None


@strawberry.type
class Ring:
    id: strawberry.ID
    size: int
    kind: str = strawberry.field(description="ring: suspicious, act on it; community: a "
                                             "household, office, campus or public network")
    suspicion: float = strawberry.field(description="0 to 1, from structure and members' "
                                                    "model scores")
    why: list[str] = strawberry.field(description="the facts behind the suspicion")
    shared_items: list[SharedItem]
    direct_links: list[DirectLink]
    member_ids: list[strawberry.ID]

    @strawberry.field
    async def members(self, info: Info, first: int = 50) -> list[User]:
        check_first(first, ctx_of(info).settings.api_max_page)
        ids = [str(i) for i in self.member_ids[:first]]
        nodes = await ctx_of(info).loaders.users.load_many(ids)
        return [User(node=n) for n in nodes if n is not None]

    @strawberry.field(description="Scores of the members: mean and worst.")
    async def risk(self, info: Info) -> RingRisk:
        nodes = await ctx_of(info).loaders.users.load_many([str(i) for i in self.member_ids])
        fr = [_num(n.properties["fraud_risk"]) or 0.0 for n in nodes
              if n is not None and n.properties.get("fraud_risk") is not None]
        rr = [_num(n.properties["relational_risk"]) or 0.0 for n in nodes
              if n is not None and n.properties.get("relational_risk") is not None]
        return RingRisk(
            scored_members=len(fr),
            mean_fraud_risk=sum(fr) / len(fr) if fr else None,
            max_fraud_risk=max(fr) if fr else None,
            mean_relational_risk=sum(rr) / len(rr) if rr else None,
        )

    @classmethod
    def from_core(cls, r: CoreRing) -> Ring:
        return cls(
            id=strawberry.ID(r.id), size=r.size, kind=r.kind, suspicion=r.suspicion,
            why=list(r.why),
            shared_items=[SharedItem(rel_type=s.rel_type, label=s.label, id=strawberry.ID(s.id),
                                     members=[strawberry.ID(m) for m in s.members])
                          for s in r.shared_items],
            direct_links=[DirectLink(rel_type=t, src=strawberry.ID(a), dst=strawberry.ID(b),
                                     count=n) for t, a, b, n in r.direct_links],
            member_ids=[strawberry.ID(m) for m in r.members],
        )


@strawberry.type
class Device:
    id: strawberry.ID
    kind: str | None
    os: str | None

    @strawberry.field(description="Accounts that use this device (at most 200).")
    async def users(self, info: Info, first: int = 50) -> list[User]:
        check_first(first, ctx_of(info).settings.api_max_page)
        adj = await ctx_of(info).loaders.device_users.load(str(self.id))
        nodes = await ctx_of(info).loaders.users.load_many([a.other_id for a in adj[:first]])
        return [User(node=n) for n in nodes if n is not None]

    @classmethod
    def from_node(cls, n: Node) -> Device:
        return cls(id=strawberry.ID(n.id), kind=n.properties.get("kind"),  # type: ignore[arg-type]
                   os=n.properties.get("os"))  # type: ignore[arg-type]


@strawberry.type(description="An account holder, with scores, links and limits.")
class User:
    node: strawberry.Private[Node]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(self.node.id)

    @strawberry.field(permission_classes=allowed("User.profile"))
    def profile(self, info: Info) -> Profile | None:
        p = self.node.properties
        sees = ctx_of(info).principal.sees_pii
        return Profile(
            name=p.get("name") if sees else mask(p.get("name")),  # type: ignore[arg-type]
            city=p.get("city"),  # type: ignore[arg-type]
            signup_at=iso(p.get("signup_ts")),
            lifecycle=p.get("lifecycle"),  # type: ignore[arg-type]
            masked=not sees,
        )

    @strawberry.field(permission_classes=allowed("User.creditFeatures"))
    def credit_features(self) -> CreditFeatures | None:
        return CreditFeatures.from_node(self.node.properties)

    @strawberry.field(permission_classes=allowed("User.fraudRisk"),
                      description="Probability the account is fraudulent; null until scored.")
    def fraud_risk(self) -> float | None:
        return _num(self.node.properties.get("fraud_risk"))

    @strawberry.field(permission_classes=allowed("User.relationalRisk"),
                      description="Risk reaching the user through its links; null until scored.")
    def relational_risk(self) -> float | None:
        return _num(self.node.properties.get("relational_risk"))

    @strawberry.field(permission_classes=allowed("User.fraudRisk"))
    def own_risk(self) -> float | None:
        return _num(self.node.properties.get("own_risk"))

    @strawberry.field(permission_classes=allowed("User.fraudRisk"))
    def model_version(self) -> str | None:
        return self.node.properties.get("model_version")  # type: ignore[return-value]

    @strawberry.field(permission_classes=allowed("User.fraudRisk"))
    def scored_at(self) -> str | None:
        return iso(self.node.properties.get("scored_at"))

    @strawberry.field(permission_classes=allowed("User.explanation"),
                      description="Which neighbours and links drove the scores.")
    async def explanation(self, info: Info, top_k: int = 5) -> Explanation | None:
        if not 1 <= top_k <= 50:
            raise BadInputError("topK must be between 1 and 50")
        ctx = ctx_of(info)
        e = await ctx.run(services.explain_user, ctx.runtime.models, ctx.store, self.node.id,
                          top_k=top_k)
        return explanation_from(e, self.node.id)

    @strawberry.field(permission_classes=allowed("User.linkedAccounts"),
                      description="Accounts linked within `depth` steps, ranked by depth, "
                                  "then number of links, then id.")
    async def linked_accounts(
        self,
        info: Info,
        via: list[LinkType] | None = None,
        depth: int = 1,
        first: int = 20,
        after: str | None = None,
    ) -> LinkedAccountConnection | None:
        ctx = ctx_of(info)
        if not 1 <= depth <= 4:
            raise BadInputError(f"depth must be between 1 and 4, got {depth}")
        check_first(first, ctx.settings.api_max_page)
        chosen = tuple(sorted({v.value for v in via})) if via is not None else LINK_TYPES
        if not chosen:
            raise BadInputError("via must name at least one link type, or be left out")
        ranked: list[LinkedAccount] = await ctx.loaders.linked.load((self.node.id, depth, chosen))
        page = paginate(ranked, lambda a: [a.depth, -a.strength, a.user_id], "linked",
                        first, after, ctx.settings.api_max_page)
        edges = [
            LinkedAccountEdge(
                cursor=c, depth=a.depth, strength=a.strength, user_id=a.user_id,
                links=[Link(rel_type=lk.rel_type, item_label=lk.item_label,
                            item_id=strawberry.ID(lk.item_id),
                            from_user=strawberry.ID(lk.from_user), count=lk.count)
                       for lk in a.links],
            )
            for a, c in zip(page.items, page.cursors)
        ]
        return LinkedAccountConnection(edges=edges, total_count=page.total,
                                       page_info=page_info(page.cursors, page.has_next,
                                                           page.has_previous))

    @strawberry.field(permission_classes=allowed("User.ring"),
                      description="The ring (group of at least 3 linked users) it belongs to.")
    async def ring(self, info: Info) -> Ring | None:
        r = await ctx_of(info).loaders.rings.load(self.node.id)
        return Ring.from_core(r) if r is not None else None

    @strawberry.field(permission_classes=allowed("User.products"))
    async def products(self, info: Info) -> list[Holding] | None:
        rels = await ctx_of(info).loaders.holdings.load(self.node.id)
        return [Holding.from_rel(r) for r in rels]

    @strawberry.field(permission_classes=allowed("User.limits"),
                      description="Current limits on the credit lines (BNPL, cash loan).")
    async def limits(self, info: Info) -> CreditLimits | None:
        ctx = ctx_of(info)
        rels = await ctx.loaders.holdings.load(self.node.id)
        products = await ctx.loaders.products.load_many([r.dst for r in rels])
        lines = []
        for r, prod in zip(rels, products):
            kind = prod.properties.get("kind") if prod is not None else None
            if kind not in CREDIT_LINES:
                continue
            h = Holding.from_rel(r)
            lines.append(CreditLine(
                line=str(kind), product_id=h.product_id, limit=h.limit, balance=h.balance,
                available=None if h.limit is None else max(0.0, h.limit - (h.balance or 0.0)),
                temp_limit=h.temp_limit, temp_until=h.temp_until, status=h.status,
            ))
        return CreditLimits(
            lines=lines,
            total_limit=sum(ln.limit or 0.0 for ln in lines),
            total_balance=sum(ln.balance or 0.0 for ln in lines),
        )

    @strawberry.field(permission_classes=allowed("User.decisionHistory"),
                      description="Past limit decisions, newest first.")
    async def decision_history(self, info: Info, first: int = 10) -> list[Decision] | None:
        ctx = ctx_of(info)
        check_first(first, ctx.settings.api_max_page)
        got = await ctx.run(services.decision_history, ctx.runtime.limits, self.node.id,
                            limit=first)
        return [decision_from(d) for d in list(got)[:first]]

    @strawberry.field(permission_classes=allowed("User.flags"),
                      description="Flags investigators raised on this account.")
    async def flags(self, info: Info) -> list[Flag] | None:
        return [flag_from(f) for f in await ctx_of(info).loaders.flags.load(self.node.id)]

    @strawberry.field(permission_classes=allowed("User.devices"))
    async def devices(self, info: Info) -> list[Device] | None:
        ctx = ctx_of(info)
        adj = await ctx.loaders.used_devices.load(self.node.id)
        nodes = await ctx.loaders.devices.load_many([a.other_id for a in adj])
        return [Device.from_node(n) for n in nodes if n is not None]


def page_info(cursors: list[str], has_next: bool, has_previous: bool,
              end: str | None = None) -> PageInfo:
    return PageInfo(
        has_next_page=has_next, has_previous_page=has_previous,
        start_cursor=cursors[0] if cursors else None,
        end_cursor=end if end is not None else (cursors[-1] if cursors else None),
    )


async def load_user(info: Info, user_id: str, required: bool = True) -> User | None:
    node = await ctx_of(info).loaders.users.load(user_id)
    if node is None:
        if required:
            raise NotFoundError(f"no user with id {user_id!r}")
        return None
    return User(node=node)
