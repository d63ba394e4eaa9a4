// A small helper to build DOM nodes. Text always goes in as text, never as HTML, so
// names and reasons coming from the data cannot inject markup.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    // through the CSSOM, which a strict Content-Security-Policy allows
    else if (k === "style") Object.assign(el.style, v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c == null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function money(v) {
  if (v == null) return "–";
  const amount = Math.abs(Number(v)).toLocaleString("en-US", { maximumFractionDigits: 0 });
  return `${v < 0 ? "−" : ""}¥${amount}`;
}

export function pct(v) {
  return v == null ? "not scored" : v.toFixed(2);
}

export function day(iso) {
  if (!iso) return "–";
  return iso.slice(0, 10);
}

export function when(iso) {
  if (!iso) return "–";
  return iso.replace("T", " ").replace(/\..*$/, "").replace(/\+00:00$/, " UTC");
}
