"""Static pictures of small networks for reports: a ring, or a user's linked accounts.

A picture is built in two steps: ``ring_network`` or ``linked_network`` gathers a small
``Network`` (at most ``MAX_USERS`` users and the items that tie them) from the store,
and ``draw`` lays it out with networkx and renders it with matplotlib's Agg canvas, so
no display is needed. Users are coloured by fraud risk where scored (grey otherwise),
shared items by type; every edge carries the kind of relationship it stands for.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from graph.errors import RiskGraphError
from graph.queries import LinkedAccount, Ring
from graph.store import GraphStore

MAX_USERS = 60
UNSCORED = "#b0b0b0"
RISK_CMAP = "RdYlGn_r"  # green for low risk, red for high
ITEM_STYLE: dict[str, tuple[str, str]] = {  # label -> (colour, marker)
    "Device": ("#4c72b0", "s"),
    "Phone": ("#8172b3", "D"),
    "BankCard": ("#c44e52", "p"),
    "IP": ("#64b5cd", "h"),
    "Merchant": ("#937860", "v"),
    "Product": ("#55a868", "^"),
}
EDGE_COLOURS: dict[str, str] = {
    "USES": "#4c72b0",
    "HAS_PHONE": "#8172b3",
    "HAS_CARD": "#c44e52",
    "LOGGED_FROM": "#64b5cd",
    "REFERRED": "#dd8452",
    "TRANSFERRED": "#2f2f2f",
}
EDGE_LABELS_UP_TO = 60  # more edges than this and the labels hide the picture

NodeKey = tuple[str, str]  # (label, id)


class PictureError(RiskGraphError):
    """A picture cannot be drawn or written."""


@dataclass
class Network:
    """What a picture shows: users with their scores, items, and labelled edges."""

    title: str
    focus: NodeKey | None = None  # drawn larger, with a thick outline
    risks: dict[str, float | None] = field(default_factory=dict)  # user id -> fraud risk
    items: list[NodeKey] = field(default_factory=list)
    edges: list[tuple[NodeKey, NodeKey, str, int]] = field(default_factory=list)
    hidden_users: int = 0  # users left out to keep the picture readable

    @property
    def users(self) -> list[str]:
        return list(self.risks)

    def add_edge(self, a: NodeKey, b: NodeKey, kind: str, count: int = 1) -> None:
        self.edges.append((a, b, kind, count))


def _risks(store: GraphStore, user_ids: Sequence[str]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for uid, node in zip(user_ids, store.get_nodes("User", list(user_ids))):
        value = node.properties.get("fraud_risk") if node is not None else None
        out[uid] = _finite(value)
    return out


def _finite(value: object) -> float | None:
    if value is None:
        return None
    try:
        f = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def ring_sample(ring: Ring, max_users: int, start: str | None = None) -> list[str]:
    """Up to ``max_users`` members, breadth-first over the ring's links from ``start``
    (default its smallest member), so that a cut ring still draws as one network."""
    neighbours: dict[str, set[str]] = {m: set() for m in ring.members}
    for item in ring.shared_items:
        for m in item.members:
            neighbours[m].update(item.members)
    for _, a, b, _ in ring.direct_links:
        neighbours[a].add(b)
        neighbours[b].add(a)
    first = start if start in neighbours else ring.members[0]
    seen = {first: None}
    queue = deque([first])
    while queue and len(seen) < max_users:
        for other in sorted(neighbours[queue.popleft()] - seen.keys()):
            if len(seen) >= max_users:
                break
            seen[other] = None
            queue.append(other)
    return list(seen)


def ring_network(store: GraphStore, ring: Ring, max_users: int = MAX_USERS) -> Network:
    """The ring's members (up to ``max_users``, see ring_sample), shared items and
    direct links."""
    shown = ring_sample(ring, max_users)
    keep = set(shown)
    net = Network(
        title=f"Ring {ring.id}: {ring.size} members, {len(ring.shared_items)} shared items, "
              f"{len(ring.direct_links)} direct links",
        focus=("User", ring.members[0]),
        risks=_risks(store, shown),
        hidden_users=ring.size - len(shown),
    )
    for item in ring.shared_items:
        holders = [m for m in item.members if m in keep]
        if len(holders) < 2:
            continue
        key = (item.label, item.id)
        net.items.append(key)
        for m in holders:
            net.add_edge(("User", m), key, item.rel_type)
    for rel_type, a, b, count in ring.direct_links:
        if a in keep and b in keep:
            net.add_edge(("User", a), ("User", b), rel_type, count)
    return net


def linked_network(
    store: GraphStore, user_id: str, accounts: Iterable[LinkedAccount],
    max_users: int = MAX_USERS,
) -> Network:
    """``user_id`` and the accounts linked to it, with the links that reached them."""
    found = list(accounts)
    shown = found[: max_users - 1]
    ids = [user_id, *(a.user_id for a in shown)]
    keep = set(ids)
    depth = max((a.depth for a in found), default=0)
    net = Network(
        title=f"Accounts linked to {user_id}: {len(found)} within depth {depth}",
        focus=("User", user_id),
        risks=_risks(store, ids),
        hidden_users=len(found) - len(shown),
    )
    seen_items: set[NodeKey] = set()
    seen_edges: set[tuple[NodeKey, NodeKey, str]] = set()
    for acc in shown:
        for lk in acc.links:
            if lk.from_user not in keep:
                continue
            a = ("User", lk.from_user)
            b = ("User", acc.user_id)
            if lk.item_label == "User":
                pairs = [(a, b)]
            else:
                item = (lk.item_label, lk.item_id)
                if item not in seen_items:
                    seen_items.add(item)
                    net.items.append(item)
                pairs = [(a, item), (b, item)]
            for x, y in pairs:
                if (x, y, lk.rel_type) not in seen_edges:
                    seen_edges.add((x, y, lk.rel_type))
                    net.add_edge(x, y, lk.rel_type, lk.count)
    return net


def draw(net: Network, path: Path | str, dpi: int = 110) -> Path:
    """Render ``net`` to a PNG at ``path``; returns the path written."""
    import networkx as nx
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    path = Path(path)
    g = nx.Graph()
    for uid in net.users:
        g.add_node(("User", uid))
    g.add_nodes_from(net.items)
    for a, b, kind, count in net.edges:
        g.add_edge(a, b, kind=kind, count=count)

    n = g.number_of_nodes()
    side = min(16.0, 8.0 + n / 12)
    fig = Figure(figsize=(side + 2.5, side), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.set_axis_off()
    pos = nx.spring_layout(g, seed=7, k=1.6 / math.sqrt(max(n, 1)), iterations=200) \
        if n > 1 else {k: (0.0, 0.0) for k in g.nodes}

    cmap = _cmap(RISK_CMAP)
    norm = Normalize(0.0, 1.0)
    for kind in sorted({k for _, _, k, _ in net.edges}):
        edges = [(a, b) for a, b, k, _ in net.edges if k == kind]
        nx.draw_networkx_edges(g, pos, edgelist=edges, ax=ax, width=1.6, alpha=0.8,
                               edge_color=EDGE_COLOURS.get(kind, "#777777"))
    users = [("User", u) for u in net.users]
    colours = [UNSCORED if (r := net.risks[u]) is None else cmap(norm(r)) for u in net.users]
    sizes = [900 if k == net.focus else 520 for k in users]
    widths = [3.0 if k == net.focus else 0.8 for k in users]
    nx.draw_networkx_nodes(g, pos, nodelist=users, node_color=colours, node_size=sizes,
                           edgecolors="#222222", linewidths=widths, ax=ax)
    for label in sorted({lb for lb, _ in net.items}):
        colour, marker = ITEM_STYLE.get(label, ("#999999", "o"))
        nodes = [k for k in net.items if k[0] == label]
        nx.draw_networkx_nodes(g, pos, nodelist=nodes, node_color=colour, node_shape=marker,
                               node_size=380, edgecolors="#222222", linewidths=0.6, ax=ax)
    # Names sit just below their node, where they do not hide its colour.
    ys = [y for _, y in pos.values()]
    drop = 0.03 * ((max(ys) - min(ys)) or 1.0)
    below = {k: (x, y - drop) for k, (x, y) in pos.items()}
    nx.draw_networkx_labels(g, below, labels={k: k[1] for k in g.nodes}, font_size=8, ax=ax,
                            verticalalignment="top")
    if len(net.edges) <= EDGE_LABELS_UP_TO:
        labels = {(a, b): (k if c == 1 else f"{k} x{c}") for a, b, k, c in net.edges}
        nx.draw_networkx_edge_labels(g, pos, edge_labels=labels, font_size=7, ax=ax,
                                     font_color="#333333", rotate=False,
                                     bbox={"boxstyle": "round,pad=0.15", "fc": "white",
                                           "ec": "none", "alpha": 0.75})

    handles = [Line2D([], [], marker="o", linestyle="", markersize=10,
                      markerfacecolor=UNSCORED, markeredgecolor="#222222",
                      label="User (not scored)")]
    if net.focus is not None:
        handles.append(Line2D([], [], marker="o", linestyle="", markersize=13,
                              markerfacecolor="white", markeredgecolor="#222222",
                              markeredgewidth=3, label=f"{net.focus[1]} (focus)"))
    for label in sorted({lb for lb, _ in net.items}):
        colour, marker = ITEM_STYLE.get(label, ("#999999", "o"))
        handles.append(Line2D([], [], marker=marker, linestyle="", markersize=9,
                              markerfacecolor=colour, markeredgecolor="#222222", label=label))
    for kind in sorted({k for _, _, k, _ in net.edges}):
        handles.append(Line2D([], [], color=EDGE_COLOURS.get(kind, "#777777"), linewidth=2,
                              label=kind))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False,
              fontsize=9, title="nodes and links")
    bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, shrink=0.4,
                       location="right", pad=0.02)
    bar.set_label("User fraud risk")
    title = net.title
    if net.hidden_users:
        title += f" (showing {len(net.users)} users, {net.hidden_users} more not drawn)"
    ax.set_title(title, fontsize=12)

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=dpi, format="png")
    except OSError as exc:
        raise PictureError(f"cannot write the picture to {path}: {exc}") from exc
    return path


def _cmap(name: str):  # type: ignore[no-untyped-def]
    from matplotlib import colormaps

    return colormaps[name]
