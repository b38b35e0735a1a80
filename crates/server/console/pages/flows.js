// Flows: every flow of the bundle as a graph, the agents it runs with the
// documents they need and write, and a form that starts a run (POST /runs).

import { getJson, postJson } from "../api.js";
import { errorBox, fill, h } from "../dom.js";
import { flowGraph } from "../graph.js";

const STORY_PATTERN = "[A-Za-z0-9][A-Za-z0-9._\\-]{0,199}";

export async function render(container) {
  const [flows, agents] = await Promise.all([getJson("/flows"), getJson("/agents")]);
  const byId = new Map(agents.map((agent) => [agent.id, agent]));
  fill(
    container,
    h("h1", {}, "Flows"),
    flows.length === 0 ? h("p", { class: "muted" }, "This bundle has no flows.") : null,
    flows.map((flow) => flowCard(flow, byId)),
  );
}

function flowCard(flow, agentsById) {
  const ids = [...new Set(flow.steps.flatMap((step) => step.agents))];
  return h(
    "section",
    { class: "card flow", id: `flow-${flow.name}`, "data-flow": flow.name },
    h("h2", {}, flow.name),
    flow.description ? h("p", {}, flow.description) : null,
    h("p", { class: "muted" }, `from ${flow.source} · each step at most ${flow.max_visits} times per run`),
    h(
      "div",
      { class: "flow-body" },
      h("div", { class: "graph" }, flowGraph(flow)),
      h("div", { class: "flow-side" }, startForm(flow), agentList(ids, agentsById)),
    ),
  );
}

function agentList(ids, agentsById) {
  return h(
    "details",
    { class: "agents" },
    h("summary", {}, `Agents (${ids.length})`),
    h(
      "dl",
      {},
      ids.map((id) => {
        const agent = agentsById.get(id);
        return [
          h("dt", {}, id),
          h(
            "dd",
            {},
            agent?.description ?? "",
            agent?.requires?.length ? h("div", { class: "muted" }, "needs: ", agent.requires.join(", ")) : null,
            agent?.outputs?.length ? h("div", { class: "muted" }, "writes: ", agent.outputs.join(", ")) : null,
            agent?.tools?.length ? h("div", { class: "muted" }, "tools: ", agent.tools.join(", ")) : null,
          ),
        ];
      }),
    ),
  );
}

function startForm(flow) {
  const id = `start-${flow.name.replace(/[^A-Za-z0-9_-]/g, "_")}`;
  const story = h("input", { id: `${id}-story`, name: "story_id", required: true, pattern: STORY_PATTERN, autocomplete: "off", placeholder: "e.g. todo-app" });
  const input = h("textarea", { id: `${id}-input`, name: "input", rows: 3, placeholder: "What the flow is about" });
  const mode = (value, label, checked) =>
    h("label", { class: "option" }, h("input", { type: "radio", name: `${id}-mode`, value, checked }), " ", label);
  const submit = h("button", { type: "submit", class: "primary" }, "Start run");
  const status = h("div", { class: "form-status", "aria-live": "polite" });
  const form = h(
    "form",
    { class: "start-run", "data-flow": flow.name },
    h("h3", {}, "Start a run"),
    h("label", { for: story.id }, "Story"),
    story,
    h("label", { for: input.id }, "Input"),
    input,
    h(
      "fieldset",
      {},
      h("legend", {}, "Mode"),
      mode("interactive", "Interactive (agents may ask you)", true),
      mode("headless", "Headless (agents assume and go on)", false),
    ),
    h("div", { class: "actions" }, submit),
    status,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    submit.disabled = true;
    fill(status, "Starting…");
    const chosen = form.querySelector(`input[name="${id}-mode"]:checked`);
    try {
      const reply = await postJson("/runs", {
        flow: flow.name,
        story_id: story.value.trim(),
        input: input.value,
        mode: chosen?.value ?? "interactive",
      });
      location.hash = `#/runs/${encodeURIComponent(reply.run_id)}`;
    } catch (error) {
      submit.disabled = false;
      const existing = error.details?.run_id;
      fill(
        status,
        errorBox(error),
        existing ? h("p", {}, h("a", { href: `#/runs/${encodeURIComponent(existing)}` }, `Open run ${existing}`)) : null,
      );
    }
  });
  return form;
}
