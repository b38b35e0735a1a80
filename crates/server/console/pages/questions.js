// Questions: every open question of every run waiting for a person
// (GET /runs?status=interrupted, then each run), answered in place; after
// an answer the card follows its run (GET /runs/{id}/wait) to its next stop.

import { getJson, seg } from "../api.js";
import { ENDED, badge, errorBox, fill, h } from "../dom.js";
import { questionForm } from "../question.js";

const REFRESH_MS = 3000;
const WAIT_S = 30;

export async function render(container) {
  const list = h("div", { class: "questions" });
  const empty = h("p", { class: "muted", hidden: true }, "No run is waiting for a person.");
  const problem = h("div", { "aria-live": "polite" });
  fill(container, h("h1", {}, "Questions"), problem, empty, list);

  /** interrupt id → its card, so refreshes add new questions and keep answered ones. */
  const cards = new Map();
  let stopped = false;
  let timer = null;

  const load = async () => {
    const waiting = await getJson("/runs?status=interrupted&limit=100");
    const runs = await Promise.all(waiting.runs.map((summary) => getJson(`/runs/${seg(summary.run_id)}`)));
    if (stopped) return;
    for (const run of runs) {
      for (const interrupt of (run.interrupts ?? []).filter((i) => i.status === "open")) {
        if (cards.has(interrupt.id)) continue;
        const card = questionCard(run, interrupt, () => stopped);
        cards.set(interrupt.id, card);
        list.append(card);
      }
    }
    empty.hidden = cards.size > 0;
  };
  await load();

  const refresh = async () => {
    if (stopped) return;
    if (!document.hidden) {
      try {
        await load();
        fill(problem);
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

function questionCard(run, interrupt, isStopped) {
  const outcome = h("p", { class: "run-outcome", "aria-live": "polite" });
  const card = h(
    "section",
    { class: "card question-card", "data-run": run.run_id },
    h("h2", {}, h("a", { href: `#/runs/${encodeURIComponent(run.run_id)}` }, `${run.flow} · ${run.story_id}`)),
    h("p", { class: "muted" }, run.run_id),
    questionForm(run.run_id, interrupt, () => follow(run.run_id, outcome, isStopped)),
    outcome,
  );
  return card;
}

/** Shows the run's status until it ends or stops for another question. */
async function follow(runId, outcome, isStopped) {
  fill(outcome, "Run: ", badge("queued"));
  for (;;) {
    try {
      const run = await getJson(`/runs/${seg(runId)}/wait?timeout_s=${WAIT_S}`);
      if (isStopped()) return;
      fill(outcome, "Run: ", h("span", { class: "outcome-status", "data-status": run.status }, badge(run.status)), " ",
        h("a", { href: `#/runs/${encodeURIComponent(runId)}` }, "open the run"));
      if (ENDED.has(run.status) || run.status === "interrupted") return;
    } catch (error) {
      if (isStopped()) return;
      fill(outcome, errorBox(error));
      return;
    }
  }
}
