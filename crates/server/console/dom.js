// Building the page from data without ever parsing text as HTML: every
// string becomes a text node or an attribute value, so text from the API
// (documents, model output, questions) cannot inject markup.

/**
 * An element: `h("a", {href: "#/runs", class: "x", onclick: fn}, "text", child)`.
 * Attributes named `on…` with a function become listeners; `null`,
 * `undefined` and `false` attributes and children are skipped; arrays of
 * children are flattened.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  setAttributes(el, attrs);
  append(el, children);
  return el;
}

/** An SVG element, with the same conventions as `h`. */
export function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  setAttributes(el, attrs);
  append(el, children);
  return el;
}

function setAttributes(el, attrs) {
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else if (value === true) {
      el.setAttribute(name, "");
    } else {
      el.setAttribute(name, String(value));
    }
  }
}

/** Appends children (nodes, strings, numbers, nested arrays). */
export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Replaces `el`'s content with `children`. */
export function fill(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** A status word as a coloured badge. */
export function badge(status) {
  return h("span", { class: `badge status-${String(status).replace(/[^a-z_]/g, "")}` }, status);
}

/** An error from the API (or any other) as an alert with its code. */
export function errorBox(error) {
  const code = error?.code ? h("code", {}, error.code) : null;
  return h("div", { class: "alert", role: "alert" }, code, code ? " " : null, error?.message ?? String(error));
}

// Dates and counts are formatted by hand rather than with `Intl` or
// `toLocaleString`: the first use of either in a tab loads the browser's
// locale data, which would then sit on the critical path of every page's
// first render (see docs/console.md, Speed).

const twoDigits = (n) => String(n).padStart(2, "0");

/** Unix milliseconds as a local date and time: `2026-12-04 21:53:06`. */
export function when(ms) {
  if (!ms) return "—";
  const d = new Date(ms);
  const date = `${d.getFullYear()}-${twoDigits(d.getMonth() + 1)}-${twoDigits(d.getDate())}`;
  return `${date} ${twoDigits(d.getHours())}:${twoDigits(d.getMinutes())}:${twoDigits(d.getSeconds())}`;
}

/** A duration in milliseconds, short. */
export function duration(ms) {
  if (ms === null || ms === undefined) return "—";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const minutes = Math.floor(ms / 60_000);
  return `${minutes} min ${Math.round((ms % 60_000) / 1000)} s`;
}

/** A cost in USD, or a dash when it is unknown (unpriced model). */
export function usd(value) {
  return typeof value === "number" ? `$${value.toFixed(4)}` : "—";
}

/** A count with thousands separators: `12,345`. */
export function count(value) {
  if (typeof value !== "number") return "—";
  const [whole, fraction] = String(value).split(".");
  const grouped = whole.replace(/\B(?=(\d{3})+$)/g, ",");
  return fraction === undefined ? grouped : `${grouped}.${fraction}`;
}

/** Statuses of runs that have ended. */
export const ENDED = new Set(["pending", "success", "error", "cancelled"]);
