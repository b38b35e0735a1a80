// The console's shell: a hash router (`#/runs/run-…`) that mounts one page
// at a time in <main>, stops the previous page's polling and streams, and
// keeps the count of open questions in the navigation.
//
// A page's module is imported when the page is first shown, not up front:
// the first render then waits only for the modules of the page it draws
// (the shell, api.js, dom.js and that page), not for every page's code.

import { getJson } from "./api.js";
import { errorBox, fill, h } from "./dom.js";

const main = document.getElementById("main");
let stopPage = null;

/** `[page module loader, nav key, params]` for a location hash. */
function route(hash) {
  const [path, query = ""] = hash.replace(/^#/, "").split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const params = Object.fromEntries(new URLSearchParams(query));
  switch (parts[0]) {
    case "runs":
      return parts[1]
        ? [() => import("./pages/run.js"), "runs", { id: parts[1] }]
        : [() => import("./pages/runs.js"), "runs", params];
    case "questions":
      return [() => import("./pages/questions.js"), "questions", params];
    case "docs":
      return [() => import("./pages/documents.js"), "docs", { story: parts[1], doc: parts[2] }];
    case "health":
      return [() => import("./pages/health.js"), "health", params];
    default:
      return [() => import("./pages/flows.js"), "flows", params];
  }
}

async function show() {
  stopPage?.();
  stopPage = null;
  const [loadPage, key, params] = route(location.hash);
  for (const link of document.querySelectorAll(".top nav a")) {
    if (link.dataset.page === key) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const container = h("div", { class: "page" });
  fill(main, container);
  try {
    const page = await loadPage();
    // Another page was asked for while this one's module loaded: show nothing.
    if (container.parentNode !== main) return;
    stopPage = (await page.render(container, params)) ?? null;
  } catch (error) {
    fill(container, errorBox(error));
  }
}

/** The number of open questions, beside "Questions" in the navigation. */
async function updateQuestionCount() {
  const badge = document.getElementById("question-count");
  const list = await getJson("/runs?status=interrupted&limit=100");
  const open = list.runs.reduce((sum, r) => sum + (r.open_interrupts ?? 0), 0);
  badge.textContent = String(open);
  badge.hidden = open === 0;
  badge.setAttribute("aria-label", `${open} open`);
}

/** Keeps the count fresh; stops if the key was never given (no prompt loop). */
async function watchQuestionCount() {
  try {
    await updateQuestionCount();
  } catch (error) {
    if (error?.status === 401) return;
  }
  setTimeout(watchQuestionCount, document.hidden ? 15000 : 4000);
}

window.addEventListener("hashchange", () => {
  show();
  main.focus({ preventScroll: true });
  updateQuestionCount().catch(() => {});
});
show();
watchQuestionCount();
