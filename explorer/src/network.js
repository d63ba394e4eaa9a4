// The interactive network: cytoscape.js over the users, items and links the API returns.
// Users are coloured by fraud risk (grey when not scored), items by type; each edge is
// labelled with the kind of relationship it stands for; a ring is drawn as a box around
// its members and the items they share.
import cytoscape from "cytoscape";

export const ITEM_STYLE = {
  Device: { colour: "#4c72b0", shape: "round-rectangle" },
  Phone: { colour: "#8172b3", shape: "diamond" },
  BankCard: { colour: "#c44e52", shape: "round-tag" },
  IP: { colour: "#64b5cd", shape: "hexagon" },
  Merchant: { colour: "#937860", shape: "vee" },
  Product: { colour: "#55a868", shape: "triangle" },
};
export const EDGE_COLOURS = {
  USES: "#4c72b0",
  HAS_PHONE: "#8172b3",
  HAS_CARD: "#c44e52",
  LOGGED_FROM: "#64b5cd",
  REFERRED: "#dd8452",
  TRANSFERRED: "#2f2f2f",
};
export const UNSCORED = "#b0b0b0";

// Green (low) through yellow to red (high), as in the PNG pictures.
const STOPS = [
  [0.0, [26, 152, 80]],
  [0.5, [254, 224, 139]],
  [1.0, [215, 48, 39]],
];

export function riskColour(risk) {
  if (risk == null || Number.isNaN(risk)) return UNSCORED;
  const r = Math.min(1, Math.max(0, risk));
  for (let i = 1; i < STOPS.length; i += 1) {
    const [x1, c1] = STOPS[i];
    const [x0, c0] = STOPS[i - 1];
    if (r <= x1) {
      const t = (r - x0) / (x1 - x0);
      const mix = c0.map((v, k) => Math.round(v + t * (c1[k] - v)));
      return `rgb(${mix.join(",")})`;
    }
  }
  return `rgb(${STOPS[STOPS.length - 1][1].join(",")})`;
}

export const userKey = (id) => `User:${id}`;
const itemKey = (label, id) => `${label}:${id}`;

const STYLE = [
  {
    selector: "node",
    style: {
      label: "data(label)",
      "font-size": 11,
      "text-valign": "bottom",
      "text-margin-y": 4,
      color: "#1d2433",
      "text-background-color": "#ffffff",
      "text-background-opacity": 0.8,
      "text-background-padding": 1,
      "min-zoomed-font-size": 6,
      "border-width": 1,
      "border-color": "#333333",
    },
  },
  {
    selector: "node[kind = 'User']",
    style: {
      width: 34,
      height: 34,
      shape: "ellipse",
      "background-color": (n) => riskColour(n.data("risk")),
    },
  },
  ...Object.entries(ITEM_STYLE).map(([kind, s]) => ({
    selector: `node[kind = '${kind}']`,
    style: { width: 22, height: 22, shape: s.shape, "background-color": s.colour },
  })),
  {
    selector: "node.focus",
    style: { width: 46, height: 46, "border-width": 5, "border-color": "#111111", "font-weight": "bold" },
  },
  {
    selector: "node.flagged",
    style: { "border-style": "double", "border-width": 6, "border-color": "#7a0019" },
  },
  {
    selector: "node:selected",
    style: { "overlay-color": "#1f6feb", "overlay-opacity": 0.25, "overlay-padding": 6 },
  },
  {
    selector: "node[kind = 'Ring']",
    style: {
      shape: "round-rectangle",
      "background-color": "#f4ecff",
      "background-opacity": 0.55,
      "border-color": "#6f42c1",
      "border-width": 2,
      "border-style": "dashed",
      label: "data(label)",
      "text-valign": "top",
      "text-halign": "center",
      "text-margin-y": -4,
      "font-size": 12,
      color: "#4b2a85",
      padding: 18,
    },
  },
  {
    selector: "edge",
    style: {
      width: 2,
      "curve-style": "bezier",
      "line-color": (e) => EDGE_COLOURS[e.data("kind")] || "#777777",
      label: "data(label)",
      "font-size": 9,
      color: "#333333",
      "text-rotation": "autorotate",
      "min-zoomed-font-size": 8, // a crowded view drops edge labels until zoomed in
      "text-background-color": "#ffffff",
      "text-background-opacity": 0.85,
      "text-background-padding": 1,
    },
  },
];

export class Network {
  constructor(container, { onOpen, onExpand }) {
    this.cy = cytoscape({
      container,
      style: STYLE,
      wheelSensitivity: 0.3,
      minZoom: 0.2,
      maxZoom: 3,
      boxSelectionEnabled: false,
    });
    this.cy.on("tap", "node", (evt) => {
      if (evt.target.data("kind") !== "Ring") onOpen(evt.target.data());
    });
    this.cy.on("dbltap", "node", (evt) => {
      if (evt.target.data("kind") !== "Ring") onExpand(evt.target.data());
    });
  }

  clear() {
    this.cy.elements().remove();
  }

  users() {
    return this.cy.nodes("[kind = 'User']").map((n) => n.data("uid")).sort();
  }

  // Adds (or updates) a user node from the API's { id, fraudRisk, profile }.
  addUser(u, parent) {
    const key = userKey(u.id);
    const data = {
      id: key, kind: "User", uid: u.id, label: u.id, risk: u.fraudRisk,
      relationalRisk: u.relationalRisk, name: u.profile ? u.profile.name : null,
    };
    const existing = this.cy.getElementById(key);
    if (existing.nonempty()) {
      existing.data({ ...data, parent: existing.data("parent") });
      if (parent && !existing.data("parent")) existing.move({ parent });
      return existing;
    }
    return this.cy.add({ group: "nodes", data: parent ? { ...data, parent } : data });
  }

  addItem(label, id, parent) {
    const key = itemKey(label, id);
    const existing = this.cy.getElementById(key);
    if (existing.nonempty()) {
      if (parent && !existing.data("parent")) existing.move({ parent });
      return existing;
    }
    const data = { id: key, kind: label, uid: id, label: `${label} ${id}` };
    return this.cy.add({ group: "nodes", data: parent ? { ...data, parent } : data });
  }

  addEdge(kind, a, b, count = 1) {
    const [x, y] = [a, b].sort();
    const key = `${kind}|${x}|${y}`;
    const existing = this.cy.getElementById(key);
    const label = count > 1 ? `${kind} ×${count}` : kind;
    if (existing.nonempty()) {
      if (count > (existing.data("count") || 1)) existing.data({ count, label });
      return;
    }
    if (this.cy.getElementById(a).empty() || this.cy.getElementById(b).empty()) return;
    this.cy.add({ group: "edges", data: { id: key, kind, source: a, target: b, count, label } });
  }

  // A ring as a box around the given members (API user objects) and the items they
  // share; members already drawn join the box too.
  addRing(ring, members = []) {
    const inRing = new Set(ring.memberIds);
    for (const m of members) this.addUser(m);
    const shown = new Set(this.users().filter((id) => inRing.has(id)));
    const kind = ring.kind ? ` · ${ring.kind} ${Math.round((ring.suspicion || 0) * 100)}%` : "";
    const label = `${ring.id}${kind} · ${ring.size} members` + (shown.size < ring.size ? ` (${shown.size} shown)` : "");
    const box = this.cy.getElementById(ring.id);
    if (box.empty()) this.cy.add({ group: "nodes", data: { id: ring.id, kind: "Ring", label } });
    else box.data("label", label);
    for (const id of shown) {
      const n = this.cy.getElementById(userKey(id));
      if (!n.data("parent")) n.move({ parent: ring.id });
    }
    for (const item of ring.sharedItems) {
      const holders = item.members.filter((m) => shown.has(m));
      if (holders.length < 2) continue;
      const node = this.addItem(item.label, item.id, ring.id);
      for (const m of holders) this.addEdge(item.relType, userKey(m), node.id());
    }
    for (const d of ring.directLinks) {
      if (shown.has(d.src) && shown.has(d.dst)) {
        this.addEdge(d.relType, userKey(d.src), userKey(d.dst), d.count);
      }
    }
  }

  // linkedAccounts edges: each link ties the account to the user it was reached from,
  // through a shared item or directly.
  addLinked(edges) {
    for (const e of edges) this.addUser(e.node || { id: e.userId });
    for (const e of edges) {
      const to = userKey(e.node.id);
      for (const lk of e.links) {
        const from = userKey(lk.fromUser);
        if (lk.itemLabel === "User") {
          this.addEdge(lk.relType, from, to, lk.count);
        } else {
          const item = this.addItem(lk.itemLabel, lk.itemId).id();
          this.addEdge(lk.relType, from, item);
          this.addEdge(lk.relType, to, item);
        }
      }
    }
  }

  addDeviceUsers(device) {
    const item = this.addItem("Device", device.id).id();
    for (const u of device.users) {
      this.addUser(u);
      this.addEdge("USES", userKey(u.id), item);
    }
  }

  setFocus(uid) {
    this.cy.nodes(".focus").removeClass("focus");
    if (uid) this.cy.getElementById(userKey(uid)).addClass("focus");
  }

  markFlagged(uid, flagged) {
    const n = this.cy.getElementById(userKey(uid));
    if (flagged) n.addClass("flagged");
    else n.removeClass("flagged");
  }

  select(key) {
    this.cy.nodes(":selected").unselect();
    const n = this.cy.getElementById(key);
    if (n.nonempty()) n.select();
  }

  layout({ randomize = true } = {}) {
    const n = this.cy.nodes().length;
    if (n === 0) return;
    this.cy.resize(); // the container may have changed size with the list below it
    this.cy.layout({
      name: "cose",
      animate: false,
      randomize,
      nodeRepulsion: () => 9000,
      idealEdgeLength: () => 70,
      nestingFactor: 1.2,
      gravity: 0.6,
      numIter: 1500,
      padding: 30,
      fit: true,
    }).run();
    // A handful of nodes would otherwise be blown up to fill the whole view.
    if (this.cy.zoom() > 1.2) this.cy.zoom({ level: 1.2, renderedPosition: this.centre() });
  }

  centre() {
    return { x: this.cy.width() / 2, y: this.cy.height() / 2 };
  }

  fit() {
    this.cy.fit(undefined, 30);
  }
}

// Up to `limit` members of a ring, breadth-first over its links from `start`, so that a
// ring too big to draw whole is cut into a piece that still hangs together.
export function ringSample(ring, start, limit) {
  const next = new Map(ring.memberIds.map((m) => [m, new Set()]));
  for (const item of ring.sharedItems) {
    for (const m of item.members) for (const o of item.members) if (m !== o) next.get(m)?.add(o);
  }
  for (const d of ring.directLinks) {
    next.get(d.src)?.add(d.dst);
    next.get(d.dst)?.add(d.src);
  }
  const first = next.has(start) ? start : ring.memberIds[0];
  const seen = new Set([first]);
  const queue = [first];
  while (queue.length && seen.size < limit) {
    for (const o of [...next.get(queue.shift())].sort()) {
      if (seen.size >= limit) break;
      if (!seen.has(o)) {
        seen.add(o);
        queue.push(o);
      }
    }
  }
  return [...seen];
}
