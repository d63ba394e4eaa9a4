// The investigator explorer: wiring between the search box, the details panel, the
// network and the GraphQL API.
import "./style.css";
import { ApiError, AuthError, codeOf, forgetKey, graphql, storedKey, storeKey } from "./api.js";
import { h, pct } from "./dom.js";
import { EDGE_COLOURS, ITEM_STYLE, Network, UNSCORED, riskColour, ringSample, userKey } from "./network.js";
import { decisionView, flagBadge, flagList, itemView, userView } from "./panel.js";
import * as Q from "./queries.js";

const $ = (sel) => document.querySelector(sel);

const state = { focus: null, ring: null, opened: null, selected: null, pending: 0 };

const network = new Network($("#cy"), {
  onOpen: (data) => openNode(data),
  onExpand: (data) => expand(data),
});
// For the browser console: explorer.network.cy is the cytoscape instance.
window.explorer = { network, state };

// -- status and busy state ----------------------------------------------------------
function say(text, kind = "info") {
  const el = $("#status");
  el.textContent = text;
  el.className = kind;
}

async function busy(label, work) {
  state.pending += 1;
  document.body.dataset.pending = String(state.pending);
  if (label) say(label);
  try {
    return await work();
  } catch (err) {
    if (err instanceof AuthError) {
      askForKey(err.message);
    } else if (err instanceof ApiError) {
      say(err.codes.includes("NOT_FOUND") ? err.message : `${err.message} (${err.codes.join(", ")})`, "error");
    } else {
      say(`Something went wrong: ${err.message}`, "error");
      throw err;
    }
    return undefined;
  } finally {
    state.pending -= 1;
    document.body.dataset.pending = String(state.pending);
  }
}

// -- the API key ----------------------------------------------------------------------
function askForKey(message = "") {
  $("#key-error").textContent = message;
  $("#key-input").value = "";
  const dialog = $("#key-dialog");
  if (!dialog.open) dialog.showModal();
  $("#key-input").focus();
}

async function checkKey(key) {
  const { data } = await graphql(Q.ME, {}, key);
  $("#whoami").textContent = `${data.me.role} · ${data.me.keyId}`;
  return data.me;
}

$("#key-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const key = $("#key-input").value.trim();
  if (!key) return;
  try {
    await checkKey(key);
  } catch (err) {
    $("#key-error").textContent = err instanceof AuthError
      ? "The API refused this key. Check it and try again." : err.message;
    return;
  }
  storeKey(key);
  $("#key-dialog").close();
  say("Key accepted.");
  route();
});
$("#key-dialog").addEventListener("cancel", (ev) => {
  if (!storedKey()) ev.preventDefault(); // nothing works without a key
});
$("#change-key").addEventListener("click", () => {
  forgetKey();
  $("#whoami").textContent = "";
  askForKey();
});

// -- opening users, rings and items -------------------------------------------------
async function loadUser(id) {
  const { data, errors } = await graphql(Q.USER, { id });
  if (!data.user) {
    const nf = errors.find((e) => codeOf(e) === "NOT_FOUND");
    throw new ApiError(nf ? `No user ${id}.` : (errors[0] || {}).message || `No user ${id}.`, errors.map(codeOf));
  }
  return { user: data.user, errors };
}

function showUser(user, errors) {
  const details = $("#details");
  details.replaceChildren(userView(user, errors, { showRing, preview, flag, recentre, open: openUser }));
  state.opened = user.id;
  network.markFlagged(user.id, (user.flags || []).length > 0);
  network.select(userKey(user.id));
  state.selected = { kind: "User", uid: user.id, id: userKey(user.id) };
  $("#expand").disabled = false;
}

async function openUser(id, { recentre = false } = {}) {
  return busy(`Opening ${id}…`, async () => {
    const [{ user, errors }] = await Promise.all([
      loadUser(id),
      recentre ? drawNetwork(id) : Promise.resolve(),
    ]);
    setHash("user", id);
    $("#search").value = id;
    showUser(user, errors);
    const notes = errors.filter((e) => codeOf(e) !== "NOT_FOUND").map((e) => `${e.path ? e.path.slice(1).join(".") : ""}: ${codeOf(e)}`);
    say(notes.length ? `Opened ${id}; some parts unavailable (${notes.join("; ")}).` : `Opened ${id}.`,
      notes.length ? "warn" : "info");
  });
}

function recentre(id) {
  return openUser(id, { recentre: true });
}

async function drawNetwork(id) {
  const depth = Number($("#depth").value);
  const { data, errors } = await graphql(Q.NETWORK, { id, depth });
  if (!data.user) throw new ApiError(`No user ${id}.`, errors.map(codeOf));
  const u = data.user;
  network.clear();
  network.addUser(u);
  if (u.linkedAccounts) network.addLinked(u.linkedAccounts.edges);
  if (u.ring) network.addRing(u.ring);
  state.ring = u.ring;
  network.setFocus(id);
  state.focus = id;
  refreshNodeList();
  network.layout();
  const linked = u.linkedAccounts ? u.linkedAccounts.totalCount : 0;
  const shown = u.linkedAccounts ? u.linkedAccounts.edges.length : 0;
  $("#graph-summary").textContent = `${id}: ${linked} linked within depth ${depth}`
    + (shown < linked ? ` (showing ${shown})` : "")
    + (u.ring ? ` · ${u.ring.id} (${u.ring.size} members)` : " · not in a ring");
}

async function showRing(ringId) {
  return busy(`Opening ${ringId}…`, async () => {
    const { data } = await graphql(Q.RING_BY_ID, { id: ringId });
    const ring = data.ring;
    const members = await usersById(ringSample(ring, state.opened, Q.RING_PAGE));
    network.clear();
    network.addRing(ring, members);
    state.ring = ring;
    network.setFocus(state.opened);
    refreshNodeList();
    network.layout();
    state.focus = null;
    setHash("ring", ringId);
    $("#graph-summary").textContent = `${ring.id}: ${ring.size} members, ${ring.sharedItems.length} shared items, `
      + `${ring.directLinks.length} direct links` + (members.length < ring.size ? ` (showing ${members.length})` : "");
    if (!state.opened || !ring.memberIds.includes(state.opened)) {
      $("#details").replaceChildren(ringView(ring, members));
    }
    say(`Showing ${ring.id}. Click a member to open it.`);
  });
}

// Users by id, a batch of aliases per request; ids that are gone are left out.
async function usersById(ids) {
  const out = [];
  for (let i = 0; i < ids.length; i += Q.USERS_PER_QUERY) {
    const batch = ids.slice(i, i + Q.USERS_PER_QUERY);
    const vars = Object.fromEntries(batch.map((id, k) => [`i${k}`, id]));
    const { data } = await graphql(Q.usersById(batch.length), vars);
    batch.forEach((_, k) => { if (data[`u${k}`]) out.push(data[`u${k}`]); });
  }
  return out;
}

function ringView(ring, shown) {
  const members = [...shown].sort((a, b) => (b.fraudRisk ?? -1) - (a.fraudRisk ?? -1) || a.id.localeCompare(b.id));
  const more = ring.size - members.length;
  return h("article", { "data-ring": ring.id },
    h("header", { class: "who" }, h("h2", {}, ring.id), h("p", { class: "muted" }, `${ring.size} members`)),
    h("section", { class: "card" }, h("h3", {}, more > 0 ? `${members.length} members drawn, riskiest first (${more} more)` : "Members, riskiest first"),
      h("ul", { class: "plain" }, members.map((m) => h("li", {},
        h("a", { href: `#user=${encodeURIComponent(m.id)}`, onclick: (ev) => { ev.preventDefault(); openUser(m.id); } }, m.id),
        h("span", { class: "muted" }, ` ${m.profile && m.profile.name ? m.profile.name : ""} · fraud risk ${pct(m.fraudRisk)}`))))),
    h("section", { class: "card" }, h("h3", {}, "What ties them"), tiesList(ring, new Set(members.map((m) => m.id)))));
}

const TIES_LISTED = 40;

function tiesList(ring, shown) {
  const ties = [
    ...ring.sharedItems.filter((s) => s.members.filter((m) => shown.has(m)).length >= 2)
      .map((s) => `${s.label} ${s.id} (${s.relType}): ${s.members.join(", ")}`),
    ...ring.directLinks.filter((d) => shown.has(d.src) && shown.has(d.dst))
      .map((d) => `${d.relType}: ${d.src} – ${d.dst}${d.count > 1 ? ` ×${d.count}` : ""}`),
  ];
  return h("ul", { class: "plain" }, ties.slice(0, TIES_LISTED).map((t) => h("li", {}, t)),
    ties.length > TIES_LISTED ? h("li", { class: "muted" }, `and ${ties.length - TIES_LISTED} more`) : null);
}

async function openNode(data) {
  state.selected = data;
  $("#expand").disabled = false;
  if (data.kind === "User") return openUser(data.uid);
  return busy(`Opening ${data.kind} ${data.uid}…`, async () => {
    let device = null;
    if (data.kind === "Device") device = (await graphql(Q.DEVICE, { id: data.uid })).data.device;
    $("#details").replaceChildren(itemView(data, device, { open: openUser }));
    say(`Opened ${data.kind} ${data.uid}.`);
  });
}

async function expand(data) {
  state.selected = data;
  return busy(`Expanding ${data.uid}…`, async () => {
    const before = new Set(network.cy.nodes().map((n) => n.id()));
    const at = { ...network.cy.getElementById(data.id).position() };
    if (data.kind === "User") {
      const { data: got } = await graphql(Q.NETWORK, { id: data.uid, depth: 1 });
      if (got.user && got.user.linkedAccounts) network.addLinked(got.user.linkedAccounts.edges);
    } else if (data.kind === "Device") {
      const { data: got } = await graphql(Q.DEVICE, { id: data.uid });
      if (got.device) network.addDeviceUsers(got.device);
    } else {
      say(`The API lists no accounts by ${data.kind}; expand one of the accounts tied to it.`, "warn");
      return;
    }
    const fresh = network.cy.nodes().filter((n) => !before.has(n.id()));
    const added = fresh.length;
    if (added > 0) {
      // New nodes start around the one expanded; the rest keep their places.
      fresh.positions(() => ({ x: at.x + (Math.random() - 0.5) * 80, y: at.y + (Math.random() - 0.5) * 80 }));
      if (state.ring) network.addRing(state.ring);
      refreshNodeList();
      network.layout({ randomize: false });
    }
    say(added > 0 ? `Expanded ${data.uid}: ${added} new nodes.` : `${data.uid} has no links beyond what is shown.`);
  });
}

async function preview(button) {
  const id = state.opened;
  return busy(`Deciding ${id} (dry run)…`, async () => {
    const { data } = await graphql(Q.DRY_RUN, { id });
    const slot = button.closest("#decision-slot");
    if (slot && data.decideLimit) slot.replaceChildren(decisionView(data.decideLimit, { preview: true }));
    say(`Dry run for ${id}: ${data.decideLimit ? data.decideLimit.action : "no answer"}. Nothing was applied.`);
  });
}

async function flag(form) {
  const id = state.opened;
  const reason = form.reason.value.trim();
  if (!reason) return;
  return busy(`Flagging ${id}…`, async () => {
    await graphql(Q.FLAG, { id, reason });
    // Read the flags back from the API: what is shown is what was stored.
    const { data } = await graphql(Q.FLAGS, { id });
    const flags = data.user.flags || [];
    $("#flag-list").replaceWith(flagList(flags));
    $("#flag-badge")?.remove();
    const badge = flagBadge(flags);
    if (badge) $(".who h2").append(badge);
    form.reset();
    network.markFlagged(id, flags.length > 0);
    say(`Flagged ${id}.`);
  });
}

// -- graph toolbar, legend, the list of accounts shown ------------------------------
$("#depth").addEventListener("change", () => {
  if (state.focus) openUser(state.focus, { recentre: true });
});
$("#fit").addEventListener("click", () => network.fit());
$("#expand").addEventListener("click", () => {
  if (state.selected) expand(state.selected);
});

function refreshNodeList() {
  const users = network.cy.nodes("[kind = 'User']").map((n) => n.data())
    .sort((a, b) => (b.risk ?? -1) - (a.risk ?? -1) || a.uid.localeCompare(b.uid));
  $("#node-list").replaceChildren(
    h("span", { class: "muted" }, `${users.length} accounts, riskiest first: `),
    ...users.map((u) => h("button", {
      type: "button", class: "chip", "data-uid": u.uid, title: `fraud risk ${pct(u.risk)}`,
      onclick: () => openUser(u.uid),
    }, h("span", { class: "dot", style: { background: riskColour(u.risk) } }), u.uid)));
}

function legend() {
  const swatch = (colour, shape = "circle") => h("span", { class: `swatch ${shape}`, style: { background: colour } });
  $("#legend").replaceChildren(
    h("span", { class: "legend-item" }, h("span", { class: "gradient" }), "user fraud risk 0 → 1"),
    h("span", { class: "legend-item" }, swatch(UNSCORED), "not scored"),
    ...Object.entries(ITEM_STYLE).slice(0, 4).map(([k, s]) => h("span", { class: "legend-item" }, swatch(s.colour, "square"), k)),
    ...Object.entries(EDGE_COLOURS).map(([k, c]) => h("span", { class: "legend-item" }, h("span", { class: "line", style: { background: c } }), k)),
    h("span", { class: "legend-item" }, h("span", { class: "ringbox" }), "ring"),
  );
}

// -- routing: #user=ID or #ring=ring:ID -----------------------------------------------
function setHash(kind, id) {
  const want = `#${kind}=${encodeURIComponent(id)}`;
  if (location.hash !== want) history.replaceState(null, "", want);
}

function route() {
  const m = /^#(user|ring)=(.+)$/.exec(location.hash);
  if (!m) return;
  const id = decodeURIComponent(m[2]);
  $("#search").value = id;
  if (m[1] === "ring") showRing(id);
  else openUser(id, { recentre: true });
}

$("#search-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const q = $("#search").value.trim();
  if (!q) return;
  if (q.startsWith("ring:")) showRing(q);
  else openUser(q, { recentre: true });
});

async function start() {
  legend();
  document.body.dataset.pending = "0";
  const key = storedKey();
  if (!key) {
    askForKey();
    return;
  }
  try {
    await checkKey(key);
  } catch (err) {
    forgetKey();
    askForKey(err instanceof AuthError ? "The stored key was refused; paste it again." : err.message);
    return;
  }
  route();
}

start();
