// Runs: every run, newest first (GET /runs, keyset-paged), filtered by
// status and story, refreshed every few seconds while the tab is visible.

import { getJson, withQuery } from "../api.js";
import { badge, count, duration, errorBox, fill, h, when } from "../dom.js";

const PAGE_SIZE = 50;
const REFRESH_MS = 2000;
const STATUSES = ["queued", "running", "interrupted", "pending", "success", "error", "cancelled"];

export async function render(container, params) {
  const filters = { status: params.status ?? "", story: params.story ?? "" };
  const query = (cursor) =>
    withQuery("/runs", { status: filters.status, story_id: filters.story, limit: PAGE_SIZE, cursor });

  const statusSelect = h(
    "select",
    { id: "runs-status", name: "status" },
    h("option", { value: "" }, "any status"),
    STATUSES.map((s) => h("option", { value: s, selected: s === filters.status }, s)),
  );
  const storyInput = h("input", { id: "runs-story", name: "story", value: filters.story, type: "search", placeholder: "story id", autocomplete: "off" });
  const form = h(
    "form",
    { class: "filters", role: "search" },
    h("label", { for: "runs-status" }, "Status"),
    statusSelect,
    h("label", { for: "runs-story" }, "Story"),
    storyInput,
    h("button", { type: "submit" }, "Filter"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    location.hash = withQuery("#/runs", { status: statusSelect.value, story: storyInput.value.trim() });
  });
  statusSelect.addEventListener("change", () => form.requestSubmit());

  const body = h("tbody");
  const more = h("button", { type: "button", hidden: true }, "Load more");
  const problem = h("div", { "aria-live": "polite" });
  const note = h("p", { class: "muted" });
  fill(
    container,
    h("h1", {}, "Runs"),
    form,
    problem,
    h(
      "div",
      { class: "table-scroll" },
      h(
        "table",
        { class: "runs" },
        h("thead", {}, h("tr", {}, ["Run", "Flow", "Story", "Status", "Step", "Questions", "Tokens", "Created", "Duration"].map((t) => h("th", { scope: "col" }, t)))),
        body,
      ),
    ),
    note,
    more,
  );

  // The first page is refreshed live; pages loaded with "Load more" stay as loaded.
  let firstPage = [];
  let olderPages = [];
  let cursor = null;
  const draw = () => {
    const seen = new Set(firstPage.map((r) => r.run_id));
    const rows = [...firstPage, ...olderPages.filter((r) => !seen.has(r.run_id))];
    body.replaceChildren(...rows.map(row));
    fill(note, rows.length === 0 ? "No runs match." : `${rows.length} shown, newest first.`);
    more.hidden = cursor === null;
  };
  const first = await getJson(query());
  firstPage = first.runs;
  cursor = first.next_cursor;
  draw();
  // A User Timing mark: when the first page of runs was on screen (bench/console.sh reads it).
  performance.mark("bmad2pf:runs-rendered");

  more.addEventListener("click", async () => {
    more.disabled = true;
    try {
      const page = await getJson(query(cursor));
      olderPages = olderPages.concat(page.runs);
      cursor = page.next_cursor;
      draw();
    } catch (error) {
      fill(problem, errorBox(error));
    }
    more.disabled = false;
  });

  let timer = null;
  let stopped = false;
  const refresh = async () => {
    if (stopped) return;
    if (!document.hidden) {
      try {
        const page = await getJson(query());
        firstPage = page.runs;
        if (olderPages.length === 0) cursor = page.next_cursor;
        fill(problem);
        draw();
      } catch (error) {
        fill(problem, errorBox(error));
      }
    }
    if (!stopped) timer = setTimeout(refresh, REFRESH_MS);
  };
  timer = setTimeout(refresh, REFRESH_MS);
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

function row(run) {
  const tokens = (run.usage?.input_tokens ?? 0) + (run.usage?.output_tokens ?? 0);
  const ended = run.finished_at ?? null;
  return h(
    "tr",
    { "data-run": run.run_id },
    h("td", {}, h("a", { href: `#/runs/${encodeURIComponent(run.run_id)}` }, run.run_id)),
    h("td", {}, run.flow),
    h("td", {}, h("a", { href: `#/docs/${encodeURIComponent(run.story_id)}` }, run.story_id)),
    h("td", {}, badge(run.status), run.error_code ? h("code", { class: "code" }, ` ${run.error_code}`) : null),
    h("td", {}, run.step ?? "—"),
    h("td", { class: "num" }, run.open_interrupts ? h("a", { href: "#/questions" }, String(run.open_interrupts)) : "0"),
    h("td", { class: "num" }, count(tokens)),
    h("td", {}, when(run.created_at)),
    h("td", { class: "num" }, ended ? duration(run.duration_ms) : "…"),
  );
}
