// Health: GET /health — status, version, uptime, the loaded bundle, each
// backend, request and run counters — and links to the API docs page.

import { getJson } from "../api.js";
import { badge, count, duration, fill, h } from "../dom.js";

export async function render(container) {
  const health = await getJson("/health");
  const rows = (object) =>
    Object.entries(object ?? {}).map(([name, value]) =>
      h("tr", {}, h("th", { scope: "row" }, name), h("td", {}, typeof value === "object" ? JSON.stringify(value) : String(value))));
  fill(
    container,
    h("h1", {}, "Health"),
    h("section", { class: "card" },
      h("p", {}, "Status ", h("span", { id: "health-status" }, badge(health.status))),
      h("dl", { class: "facts" },
        h("dt", {}, "Version"), h("dd", { id: "health-version" }, health.version),
        h("dt", {}, "Up for"), h("dd", {}, duration((health.uptime_s ?? 0) * 1000)),
        h("dt", {}, "Agents"), h("dd", {}, count(health.bundle?.agents)),
        h("dt", {}, "Flows"), h("dd", {}, count(health.bundle?.flows)),
        h("dt", {}, "Bundle"), h("dd", {}, h("code", { class: "hash" }, health.bundle?.source_hash ?? "—")),
        h("dt", {}, "Generator"), h("dd", {}, health.bundle?.generator ?? "—")),
      h("p", {}, h("a", { href: "/docs/" }, "API docs page"), " · ", h("a", { href: "/openapi.json" }, "OpenAPI document"), " · ",
        h("a", { href: "/metrics" }, "Prometheus metrics"))),
    h("section", { class: "card" }, h("h2", {}, "Backends"),
      h("table", {}, h("tbody", {}, Object.entries(health.backends ?? {}).map(([name, state]) =>
        h("tr", {}, h("th", { scope: "row" }, name), h("td", {}, badge(typeof state === "string" ? state : JSON.stringify(state)))))))),
    h("section", { class: "card" }, h("h2", {}, "Counters"),
      h("h3", {}, "HTTP"), h("table", {}, h("tbody", {}, rows(health.metrics?.http))),
      h("h3", {}, "Runs"), h("table", {}, h("tbody", {}, rows(health.metrics?.runs))),
      h("table", {}, h("tbody", {}, rows({ llm_calls: health.metrics?.llm_calls, tokens_in: health.metrics?.tokens_in, tokens_out: health.metrics?.tokens_out })))),
  );
}
