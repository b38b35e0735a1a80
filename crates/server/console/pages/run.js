// One run, live: its graph with the running step highlighted, each agent's
// status and duration, the model's text as it streams, tool calls, usage
// and cost per agent and model, errors with their codes, its open
// questions, and a cancel button. It follows GET /runs/{id}/events (stored
// events, then live ones) and reads /runs/{id} and /runs/{id}/usage.

import { followRun, getJson, request, seg } from "../api.js";
import { badge, count, duration, errorBox, fill, h, usd, when } from "../dom.js";
import { flowGraph } from "../graph.js";
import { questionForm } from "../question.js";

const ACTIVE = new Set(["queued", "running", "interrupted"]);

export async function render(container, { id }) {
  const [run, flows] = await Promise.all([getJson(`/runs/${seg(id)}`), getJson("/flows")]);
  const flow = flows.find((f) => f.name === run.flow) ?? null;
  const view = new RunView(container, run, flow);
  const stopFollowing = followRun(id, (event) => view.onEvent(event));
  const ticker = setInterval(() => view.tick(), 1000);
  return () => {
    stopFollowing();
    clearInterval(ticker);
    view.stopped = true;
  };
}

/** The agents a run's flow names, in step order, then any others seen. */
function flowAgents(flow) {
  return flow ? [...new Set(flow.steps.flatMap((step) => step.agents))] : [];
}

class RunView {
  constructor(container, run, flow) {
    this.run = run;
    this.flow = flow;
    this.stopped = false;
    /** agent → {status, step, startedAt, duration, summary, document, usage} */
    this.agents = new Map();
    this.activeSteps = new Set();
    this.visitedSteps = new Set();
    this.streamError = null;
    this.pendingText = new Map();
    this.flushScheduled = false;
    this.usageTimer = null;

    this.header = h("div", { class: "run-header" });
    this.problems = h("div", { class: "run-problems", "aria-live": "polite" });
    this.graph = h("div", { class: "graph" });
    this.agentRows = h("tbody");
    this.streams = h("div", { class: "streams" });
    this.toolRows = h("tbody");
    this.usage = h("div", { class: "usage" });
    this.questions = h("div", { class: "run-questions" });
    this.documents = h("ul", { class: "run-documents" });
    fill(
      container,
      this.header,
      this.problems,
      h("div", { class: "run-grid" },
        h("section", { class: "card", "aria-labelledby": "run-graph" }, h("h2", { id: "run-graph" }, "Flow"), this.graph),
        h("section", { class: "card", "aria-labelledby": "run-agents" },
          h("h2", { id: "run-agents" }, "Agents"),
          h("div", { class: "table-scroll" }, h("table", {},
            h("thead", {}, h("tr", {}, ["Agent", "Step", "Status", "Duration", "Tokens", "Document"].map((t) => h("th", { scope: "col" }, t)))),
            this.agentRows)),
          h("h3", {}, "Documents written"),
          this.documents)),
      h("section", { class: "card", "aria-labelledby": "run-questions" }, h("h2", { id: "run-questions" }, "Questions"), this.questions),
      h("section", { class: "card", "aria-labelledby": "run-output" },
        h("h2", { id: "run-output" }, "Model output"),
        h("p", { class: "muted" }, "Text streams in while an agent writes; it is not stored, so a finished agent shows its summary."),
        this.streams),
      h("section", { class: "card", "aria-labelledby": "run-tools" },
        h("h2", { id: "run-tools" }, "Tool calls"),
        h("div", { class: "table-scroll" }, h("table", {},
          h("thead", {}, h("tr", {}, ["Agent", "Tool", "Arguments", "Status", "Duration"].map((t) => h("th", { scope: "col" }, t)))),
          this.toolRows))),
      h("section", { class: "card", "aria-labelledby": "run-usage" }, h("h2", { id: "run-usage" }, "Usage and cost"), this.usage),
    );
    // Every agent of the flow gets its panel up front, so panels never
    // push the page around when agents start.
    for (const agent of flowAgents(flow)) this.agentState(agent);
    for (const [agent, result] of Object.entries(run.results ?? {})) {
      const state = this.agentState(agent);
      Object.assign(state, {
        status: result.status,
        duration: result.duration_ms,
        summary: result.summary,
        document: result.document,
        usage: result.usage,
      });
      if (result.summary) state.text.data = result.summary;
    }
    this.drawAll();
    this.loadUsage();
  }

  agentState(agent) {
    if (!this.agents.has(agent)) {
      const text = document.createTextNode("");
      const pre = h("pre", { class: "stream", "data-agent": agent, tabindex: 0, "aria-label": `Output of ${agent}` }, text);
      const panel = h("div", { class: "stream-panel" }, h("h3", {}, agent), pre);
      this.agents.set(agent, { status: "waiting", text, pre, panel, streamed: false });
      this.streams.append(panel);
    }
    return this.agents.get(agent);
  }

  onEvent({ type, data }) {
    if (this.stopped) return;
    switch (type) {
      case "token":
        this.queueText(data.agent, data.delta);
        return;
      case "progress": {
        const agent = this.agentState(data.agent);
        agent.status = data.status;
        agent.step = data.step;
        if (data.status === "started") {
          agent.startedAt = data.timestamp;
          agent.duration = null;
          if (agent.streamed) agent.text.appendData("\n\n");
          this.activeSteps.add(data.step);
        } else {
          if (data.duration_ms !== undefined) agent.duration = data.duration_ms;
          this.visitedSteps.add(data.step);
          this.refreshActiveSteps();
        }
        this.drawAgents();
        this.drawGraph();
        return;
      }
      case "result": {
        const agent = this.agentState(data.agent);
        Object.assign(agent, {
          status: data.data.status,
          summary: data.data.summary,
          document: data.data.document,
          usage: data.data.usage,
          duration: data.data.duration_ms,
        });
        if (!agent.streamed && data.data.summary) agent.text.data = data.data.summary;
        this.drawAgents();
        this.drawDocuments();
        return;
      }
      case "tool_call":
        this.toolRows.append(toolRow(data));
        return;
      case "usage":
        this.scheduleUsage();
        return;
      case "interrupt":
        this.run.interrupts = [data, ...(this.run.interrupts ?? []).filter((i) => i.id !== data.id)];
        this.drawQuestions();
        return;
      case "status":
        this.run.status = data.status;
        if (data.error_code) this.run.error_code = data.error_code;
        this.drawHeader();
        this.drawProblems();
        this.drawGraph();
        return;
      case "done":
        this.run = data;
        this.activeSteps.clear();
        for (const [name, result] of Object.entries(data.results ?? {})) {
          Object.assign(this.agentState(name), { status: result.status, duration: result.duration_ms, document: result.document, usage: result.usage });
        }
        this.drawAll();
        this.loadUsage();
        return;
      case "error":
      case "stream_error":
        this.streamError = data;
        this.drawProblems();
        return;
      default:
    }
  }

  refreshActiveSteps() {
    this.activeSteps = new Set(
      [...this.agents.values()].filter((a) => a.status === "started").map((a) => a.step),
    );
  }

  /** Buffers streamed text and writes it once per frame, whatever the token rate. */
  queueText(agent, delta) {
    this.pendingText.set(agent, (this.pendingText.get(agent) ?? "") + delta);
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    requestAnimationFrame(() => {
      this.flushScheduled = false;
      for (const [name, text] of this.pendingText) {
        const state = this.agentState(name);
        const pre = state.pre;
        const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
        state.text.appendData(text);
        state.streamed = true;
        if (atBottom) pre.scrollTop = pre.scrollHeight;
      }
      this.pendingText.clear();
    });
  }

  tick() {
    if (this.stopped) return;
    if ([...this.agents.values()].some((a) => a.status === "started")) this.drawAgents();
  }

  drawAll() {
    this.drawHeader();
    this.drawProblems();
    this.drawGraph();
    this.drawAgents();
    this.drawQuestions();
    this.drawDocuments();
  }

  drawHeader() {
    const run = this.run;
    const cancel = ACTIVE.has(run.status)
      ? h("button", { type: "button", class: "danger", id: "cancel-run", onclick: () => this.cancel() }, "Cancel run")
      : null;
    fill(
      this.header,
      h("p", { class: "crumbs" }, h("a", { href: "#/runs" }, "Runs"), " / ", run.run_id),
      h("h1", {}, `${run.flow} · ${run.story_id} `, h("span", { id: "run-status", "data-status": run.status }, badge(run.status))),
      h("p", { class: "muted" },
        `${run.mode} · created ${when(run.created_at)}`,
        run.finished_at ? ` · finished ${when(run.finished_at)} · ${duration(run.duration_ms)}` : "",
        run.step ? ` · step ${run.step}` : "",
        " · ",
        h("a", { href: `#/docs/${encodeURIComponent(run.story_id)}` }, "story documents")),
      run.input ? h("details", {}, h("summary", {}, "Input"), h("pre", { class: "input" }, run.input)) : null,
      cancel,
    );
  }

  async cancel() {
    try {
      const reply = await request("POST", `/runs/${seg(this.run.run_id)}/cancel`).then((r) => r.json());
      if (reply.status) this.run.status = reply.cancel_requested ? this.run.status : reply.status;
      this.drawHeader();
    } catch (error) {
      fill(this.problems, errorBox(error));
    }
  }

  drawProblems() {
    const run = this.run;
    const items = [];
    if (run.error_code) items.push(errorBox({ code: run.error_code, message: `The run ended: ${run.status}.` }));
    for (const [agent, message] of Object.entries(run.errors ?? {})) {
      items.push(errorBox({ code: agent, message }));
    }
    if (run.pending_docs?.length) {
      items.push(h("div", { class: "alert warn" }, "Waiting for documents: ", run.pending_docs.join(", "), " — ",
        h("a", { href: `#/docs/${encodeURIComponent(run.story_id)}` }, "upload them")));
    }
    if (this.streamError) items.push(errorBox(this.streamError));
    fill(this.problems, items);
  }

  drawGraph() {
    if (!this.flow) {
      fill(this.graph, h("p", { class: "muted" }, `The flow ${this.run.flow} is no longer in the bundle.`));
      return;
    }
    // Keyed by step and agent: an agent in two steps (pm in design and
    // revise) is coloured only where it ran last.
    const statuses = Object.fromEntries([...this.agents].map(([name, a]) => [a.step ? `${a.step}/${name}` : name, a.status]));
    const active = new Set(this.activeSteps);
    if (ACTIVE.has(this.run.status) && active.size === 0 && this.run.step) active.add(this.run.step);
    fill(this.graph, flowGraph(this.flow, { agents: statuses, activeSteps: active, visitedSteps: this.visitedSteps }));
  }

  drawAgents() {
    const now = Date.now();
    this.agentRows.replaceChildren(
      ...[...this.agents].map(([name, a]) => {
        const tokens = a.usage ? (a.usage.input_tokens ?? 0) + (a.usage.output_tokens ?? 0) : null;
        const time = a.status === "started" && a.startedAt ? `${duration(now - a.startedAt)} so far` : duration(a.duration);
        return h("tr", { "data-agent": name },
          h("td", {}, name),
          h("td", {}, a.step ?? "—"),
          h("td", {}, badge(a.status)),
          h("td", { class: "num" }, time),
          h("td", { class: "num" }, tokens === null ? "—" : count(tokens)),
          h("td", {}, a.document ? h("a", { href: docLink(this.run.story_id, a.document) }, docName(this.run.story_id, a.document)) : "—"));
      }),
    );
  }

  drawDocuments() {
    const written = [...this.agents].filter(([, a]) => a.document);
    fill(
      this.documents,
      written.length === 0
        ? h("li", { class: "muted" }, "none yet")
        : written.map(([name, a]) => h("li", {}, h("a", { href: docLink(this.run.story_id, a.document) }, a.document), ` by ${name}`)),
    );
  }

  drawQuestions() {
    const open = (this.run.interrupts ?? []).filter((i) => i.status === "open");
    const asked = this.run.open_questions ?? [];
    fill(
      this.questions,
      open.length === 0 && asked.length === 0 ? h("p", { class: "muted" }, "No open questions.") : null,
      open.map((interrupt) =>
        questionForm(this.run.run_id, interrupt, () => {
          interrupt.status = "answered";
        }),
      ),
      asked.length
        ? h("div", {}, h("h3", {}, "Assumed (headless)"), h("ul", {}, asked.map((q) => h("li", {}, `${q.agent}: ${q.prompt}`, q.assumed ? ` → ${q.assumed}` : ""))))
        : null,
    );
  }

  scheduleUsage() {
    if (this.usageTimer) return;
    this.usageTimer = setTimeout(() => {
      this.usageTimer = null;
      this.loadUsage();
    }, 500);
  }

  async loadUsage() {
    try {
      const usage = await getJson(`/runs/${seg(this.run.run_id)}/usage`);
      if (this.stopped) return;
      fill(
        this.usage,
        usageTable("Total", { all: usage.totals }),
        usageTable("By agent", usage.by_agent),
        usageTable("By model", usage.by_model),
      );
    } catch (error) {
      fill(this.usage, errorBox(error));
    }
  }
}

/** `s1__prd` shown as `prd` in a run of story `s1`. */
function docName(story, document) {
  return document.startsWith(`${story}__`) ? document.slice(story.length + 2) : document;
}

function docLink(story, document) {
  return `#/docs/${encodeURIComponent(story)}/${encodeURIComponent(document)}`;
}

function toolRow(call) {
  const args = typeof call.arguments === "string" ? call.arguments : JSON.stringify(call.arguments);
  return h("tr", {},
    h("td", {}, call.agent),
    h("td", {}, call.tool),
    h("td", {}, h("code", { class: "args" }, args ?? ""), call.truncated ? " (truncated)" : ""),
    h("td", {}, badge(call.status)),
    h("td", { class: "num" }, duration(call.duration_ms)));
}

function usageTable(title, rows) {
  const entries = Object.entries(rows ?? {});
  return h("div", { class: "table-scroll" }, h("table", { class: "usage-table" },
    h("caption", {}, title),
    h("thead", {}, h("tr", {}, ["", "Calls", "Input", "Output", "Cache read", "Reasoning", "Cost", "Unpriced calls"].map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, entries.map(([name, t]) => h("tr", {},
      h("th", { scope: "row" }, name),
      h("td", { class: "num" }, count(t.calls)),
      h("td", { class: "num" }, count(t.input_tokens)),
      h("td", { class: "num" }, count(t.output_tokens)),
      h("td", { class: "num" }, count(t.cache_read_tokens)),
      h("td", { class: "num" }, count(t.reasoning_tokens)),
      h("td", { class: "num" }, usd(t.cost_usd)),
      h("td", { class: "num" }, count(t.unpriced_calls)))))));
}
