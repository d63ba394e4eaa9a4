// The details panel: who the user is, their risk, ring, limits, the latest decision with
// its reasons and what would change it, decision and flag history, and the flag form.
import { day, h, money, pct, when } from "./dom.js";
import { riskColour } from "./network.js";

const ACTION_CLASS = {
  decrease: "bad", reduce: "bad", freeze: "bad", close: "bad",
  increase: "good", raise: "good", open: "good",
};

function section(title, ...body) {
  return h("section", { class: "card" }, h("h3", {}, title), ...body);
}

function riskMeter(label, value, hint) {
  const width = value == null ? 0 : Math.round(Math.min(1, Math.max(0, value)) * 100);
  return h("div", { class: "meter", title: hint },
    h("span", { class: "meter-label" }, label),
    h("span", { class: "meter-bar" },
      h("span", { class: "meter-fill", style: { width: `${width}%`, background: riskColour(value) } })),
    h("span", { class: "meter-value", "data-testid": `risk-${label.split(" ")[0].toLowerCase()}` },
      pct(value)));
}

function unavailable(errors, what) {
  if (!errors.length) return null;
  return h("p", { class: "error" }, `${what} unavailable: ${errors[0].message}`);
}

function actionBadge(action) {
  return h("span", { class: `badge ${ACTION_CLASS[action] || "neutral"}` }, action || "?");
}

function reasonList(reasons) {
  if (!reasons.length) return null;
  return h("ul", { class: "reasons" },
    reasons.map((r) => h("li", { title: r.zh || "" },
      r.code ? h("code", {}, r.code) : null, r.line ? ` [${r.line}] ` : " ", r.en,
      r.zh && r.zh !== r.en ? h("span", { class: "zh", lang: "zh" }, r.zh) : null)));
}

export function decisionView(d, { preview = false } = {}) {
  const rows = d.lines.map((ln) => h("tr", {},
    h("td", {}, ln.line), h("td", {}, actionBadge(ln.action)), h("td", { class: "num" }, money(ln.current)),
    h("td", { class: "num" }, money(ln.limit)),
    h("td", { class: `num ${ln.change < 0 ? "down" : ln.change > 0 ? "up" : ""}` },
      ln.change == null ? "–" : `${ln.change > 0 ? "+" : ""}${money(ln.change)}`)));
  const lineReasons = d.lines.flatMap((ln) => ln.reasons.map((r) => ({ ...r, line: r.line || ln.line })));
  return h("div", { class: "decision", "data-testid": preview ? "decision-preview" : "decision-latest" },
    h("p", {}, actionBadge(d.action), " ",
      preview || d.dryRun ? h("strong", {}, "dry run, not applied") : `applied ${when(d.decidedAt)}`,
      h("span", { class: "muted" }, ` · policy ${d.policyVersion || "?"} · model ${d.modelVersion || "none"}`),
      d.refer ? h("span", { class: "badge neutral" }, `refer: ${d.refer}`) : null),
    rows.length ? h("table", {},
      h("thead", {}, h("tr", {}, ["line", "action", "was", "now", "change"].map((c) => h("th", {}, c)))),
      h("tbody", {}, rows)) : null,
    h("h4", {}, "Why"),
    reasonList([...d.reasons, ...lineReasons]) || h("p", { class: "muted" }, "No reasons recorded."),
    h("h4", {}, "What would change it"),
    d.counterfactuals.length
      ? h("ul", { class: "counterfactuals" }, d.counterfactuals.map((c) => h("li", { title: c.zh || "" },
          c.en, c.action ? h("span", { class: "muted" }, ` → ${c.action}`) : null)))
      : h("p", { class: "muted" }, "Nothing listed."));
}

export function flagBadge(flags) {
  if (!flags.length) return null;
  return h("span", { class: "badge bad", id: "flag-badge", title: "flags raised on this account" }, `⚑ ${flags.length}`);
}

export function flagList(flags) {
  if (!flags.length) return h("p", { class: "muted", id: "flag-list" }, "No flags yet.");
  return h("ul", { id: "flag-list", class: "flags" },
    [...flags].reverse().map((f) => h("li", { "data-flag-id": f.id },
      h("span", { class: "flag-reason" }, f.reason),
      h("span", { class: "muted" }, ` — ${f.by}, ${when(f.at)}`))));
}

export function userView(u, errors, actions) {
  const err = (field) => errors.filter((e) => e.path && e.path[1] === field);
  const p = u.profile || {};
  const c = u.creditFeatures || {};
  const history = u.decisionHistory || [];
  const latest = history[0];
  const ring = u.ring;

  const ringBody = ring
    ? h("div", {},
        h("p", {}, h("strong", { "data-testid": "ring-id" }, ring.id), ` · ${ring.size} members`),
        h("p", { "data-testid": "ring-kind" },
          h("strong", {}, ring.kind === "ring" ? "Suspicious ring" : "Community"),
          ` · suspicion ${pct(ring.suspicion)}`),
        ring.why && ring.why.length
          ? h("ul", { "data-testid": "ring-why" }, ...ring.why.map((w) => h("li", {}, w)))
          : null,
        ring.risk && ring.risk.scoredMembers > 0 ? h("p", { class: "muted" },
          `members' fraud risk: mean ${pct(ring.risk.meanFraudRisk)}, worst ${pct(ring.risk.maxFraudRisk)}`,
          ` (${ring.risk.scoredMembers} of ${ring.size} scored)`)
          : h("p", { class: "muted" }, "No member scored yet."),
        h("button", { type: "button", onclick: () => actions.showRing(ring.id) }, "Show the whole ring"))
    : err("ring").length ? unavailable(err("ring"), "Ring") : h("p", { class: "muted" }, "Not in a group.");

  const limits = u.limits;
  const limitsBody = limits && limits.lines.length
    ? h("table", {},
        h("thead", {}, h("tr", {}, ["line", "limit", "balance", "available", "temporary", "status"].map((t) => h("th", {}, t)))),
        h("tbody", {}, limits.lines.map((ln) => h("tr", {},
          h("td", {}, ln.line), h("td", { class: "num" }, money(ln.limit)), h("td", { class: "num" }, money(ln.balance)),
          h("td", { class: "num" }, money(ln.available)),
          h("td", { class: "num" }, ln.tempLimit ? `${money(ln.tempLimit)} to ${day(ln.tempUntil)}` : "–"),
          h("td", {}, ln.status || "–")))),
        h("tfoot", {}, h("tr", {}, h("td", {}, "total"), h("td", { class: "num" }, money(limits.totalLimit)),
          h("td", { class: "num" }, money(limits.totalBalance)), h("td", { colspan: 3 }))))
    : unavailable(err("limits"), "Limits") || h("p", { class: "muted" }, "No credit line.");

  const products = (u.products || []).length
    ? h("ul", { class: "plain" }, u.products.map((pr) => h("li", {},
        h("strong", {}, pr.product ? pr.product.name || pr.productId : pr.productId),
        h("span", { class: "muted" }, ` ${pr.product ? pr.product.kind || "" : ""} · ${pr.status || "?"}${pr.since ? ` · since ${day(pr.since)}` : ""}`),
        pr.limit != null ? ` · limit ${money(pr.limit)}` : null)))
    : unavailable(err("products"), "Products") || h("p", { class: "muted" }, "No products.");

  let decisionBody;
  const historyErr = err("decisionHistory");
  if (latest) {
    decisionBody = decisionView(latest);
  } else {
    decisionBody = h("div", { id: "decision-slot" },
      historyErr.length ? unavailable(historyErr, "Decision history")
        : h("p", { class: "muted" }, "No decision recorded for this user."),
      h("button", { type: "button", onclick: (ev) => actions.preview(ev.target) },
        "Preview the decision now (dry run)"));
  }

  const historyBody = history.length > 1
    ? h("ol", { class: "history" }, history.slice(1).map((d) => h("li", {},
        actionBadge(d.action), ` ${when(d.decidedAt)} · policy ${d.policyVersion || "?"} · `,
        d.lines.map((ln) => `${ln.line} ${money(ln.current)} → ${money(ln.limit)}`).join(", "),
        d.reasons.length ? h("span", { class: "muted" }, ` · ${d.reasons.map((r) => r.code || r.en).join(", ")}`) : null)))
    : h("p", { class: "muted" }, history.length ? "Only the latest decision." : "None.");

  const flagForm = h("form", { id: "flag-form", onsubmit: (ev) => { ev.preventDefault(); actions.flag(ev.target); } },
    h("label", { for: "flag-reason" }, "Flag this account for investigation"),
    h("textarea", { id: "flag-reason", name: "reason", rows: 2, maxlength: 2000, required: true,
      placeholder: "Reason, e.g. shares a device with a confirmed fraud account" }),
    h("button", { type: "submit" }, "Flag user"));

  return h("article", { "data-user": u.id },
    h("header", { class: "who" },
      h("h2", {}, u.id, p.name ? h("span", { class: "muted" }, ` ${p.name}`) : null,
        flagBadge(u.flags || [])),
      h("p", { class: "muted" }, [p.city, p.lifecycle, p.signupAt ? `since ${day(p.signupAt)}` : null].filter(Boolean).join(" · ")),
      h("div", { class: "row" },
        h("button", { type: "button", onclick: () => actions.recentre(u.id) }, "Centre the network here"))),
    section("Risk",
      riskMeter("Fraud risk", u.fraudRisk, "probability the account is fraudulent"),
      riskMeter("Relational risk", u.relationalRisk, "risk reaching the user through its links"),
      h("p", { class: "muted" }, u.modelVersion ? `model ${u.modelVersion}${u.scoredAt ? `, scored ${when(u.scoredAt)}` : ""}` : "not scored yet")),
    section("Ring", ringBody),
    section("Latest limit decision", decisionBody),
    section("Current limits", limitsBody),
    section("Products", products),
    section("Credit", h("dl", { class: "kv" }, [
      ["credit score", c.creditScore], ["income", money(c.income)], ["months on book", c.monthsOnBook],
      ["overdue count", c.overdueCount], ["worst days past due", c.worstDpd],
      ["utilisation", c.utilisation == null ? null : `${Math.round(c.utilisation * 100)}%`],
      ["monthly spend", money(c.monthlySpend)], ["active days (30d)", c.activeDays30d],
    ].filter(([, v]) => v != null).flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
      c.repaymentHistory ? h("p", { class: "repayments", title: "one mark a month, oldest first: 0 on time, 1-6 overdue by 30-day buckets, - no bill" },
        "repayments ", [...c.repaymentHistory].map((m) => h("span", { class: m === "0" ? "ok" : m === "-" ? "none" : "late" }, m))) : null),
    section("Decision history", historyBody),
    section("Flags", err("flags").length ? unavailable(err("flags"), "Flags") : flagList(u.flags || []), flagForm));
}

export function itemView(item, device, actions) {
  return h("article", { "data-item": `${item.kind}:${item.uid}` },
    h("header", { class: "who" }, h("h2", {}, `${item.kind} ${item.uid}`)),
    device ? section("Device", h("p", {}, `${device.kind || "?"} · ${device.os || "?"}`),
      h("p", {}, `${device.users.length} accounts use it:`),
      h("ul", { class: "plain" }, device.users.map((u) => h("li", {},
        h("a", { href: `#user=${encodeURIComponent(u.id)}`, onclick: (ev) => { ev.preventDefault(); actions.open(u.id); } }, u.id),
        h("span", { class: "muted" }, ` fraud risk ${pct(u.fraudRisk)}`)))))
      : section("Shared item", h("p", { class: "muted" },
          "The accounts tied through it are drawn in the network. Double-click an account to expand its links.")));
}
