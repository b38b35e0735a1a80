// A flow drawn as SVG from GET /flows: steps top to bottom, the agents of a
// step side by side (a parallel group when there are several), routing
// edges with their actions, and loops (edges back to an earlier step) as
// dashed arcs on the right. Agent and step states colour the drawing.

import { svg } from "./dom.js";

const WIDTH = 520;
const STEP_X = 10;
const STEP_WIDTH = 380;
const CHIP_WIDTH = 112;
const CHIP_HEIGHT = 26;
const CHIP_GAP = 8;
const STEP_GAP = 40;
const HEADER = 24;
const END = "end";

/** Where each of a step's actions leads: `[{action, to}]`. */
function edgesOf(flow, index) {
  const step = flow.steps[index];
  const entries = Object.entries(step.next ?? {});
  if (entries.length === 0) {
    return [{ action: "", to: flow.steps[index + 1]?.id ?? END }];
  }
  return entries.map(([action, to]) => ({ action: action === "default" ? "" : action, to }));
}

/**
 * The SVG of `flow`. `state.agents` maps `step/agent` (or just the agent,
 * step unknown) → status (started, completed, failed, interrupted…), `state.activeSteps` is a Set of step
 * ids running now, `state.visitedSteps` those run before.
 */
export function flowGraph(flow, state = {}) {
  const agents = state.agents ?? {};
  const perRow = Math.max(1, Math.floor((STEP_WIDTH - CHIP_GAP) / (CHIP_WIDTH + CHIP_GAP)));
  const boxes = new Map();
  let y = 10;
  for (const step of flow.steps) {
    const rows = Math.max(1, Math.ceil(step.agents.length / perRow));
    const height = HEADER + rows * (CHIP_HEIGHT + CHIP_GAP) + 4;
    boxes.set(step.id, { y, height });
    y += height + STEP_GAP;
  }
  boxes.set(END, { y, height: 24 });
  const totalHeight = y + 34;

  const edges = [];
  flow.steps.forEach((step, index) => {
    for (const edge of edgesOf(flow, index)) {
      const target = boxes.get(edge.to);
      if (!target) continue;
      const from = boxes.get(step.id);
      const adjacent = edge.to === (flow.steps[index + 1]?.id ?? END);
      edges.push({ ...edge, from, target, adjacent, back: target.y <= from.y, source: step.id });
    }
  });

  const root = svg("svg", {
    class: "flow-graph",
    viewBox: `0 0 ${WIDTH} ${totalHeight}`,
    role: "img",
    "aria-label": `Graph of flow ${flow.name}: ${flow.steps.map((s) => `${s.id} (${s.agents.join(", ")})`).join(", then ")}`,
  });
  root.append(
    svg("defs", {}, svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
      svg("path", { d: "M0,0 L10,5 L0,10 z", class: "arrow-head" }))),
  );

  const center = STEP_X + STEP_WIDTH / 2;
  let lane = 0;
  for (const edge of edges) {
    const label = edge.action;
    if (edge.adjacent && !edge.back) {
      const x = label && edges.some((e) => e.source === edge.source && e !== edge && e.adjacent) ? center - 30 : center;
      const y1 = edge.from.y + edge.from.height;
      root.append(svg("line", { class: "edge", x1: x, y1, x2: x, y2: edge.target.y - 2, "marker-end": "url(#arrow)" }));
      if (label) root.append(svg("text", { class: "edge-label", x: x + 6, y: y1 + STEP_GAP / 2 + 4 }, label));
      continue;
    }
    lane += 1;
    const x = STEP_X + STEP_WIDTH + 14 + lane * 22;
    const y1 = edge.from.y + edge.from.height / 2 + (edge.back ? 6 : -6);
    const y2 = edge.target.y + edge.target.height / 2 + (edge.back ? -6 : 6);
    const right = STEP_X + STEP_WIDTH;
    const targetRight = edge.to === END ? center + 30 : right;
    root.append(svg("path", {
      class: edge.back ? "edge loop" : "edge",
      d: `M${right},${y1} H${x - 8} Q${x},${y1} ${x},${y1 + Math.sign(y2 - y1) * 8} V${y2 - Math.sign(y2 - y1) * 8} Q${x},${y2} ${x - 8},${y2} H${targetRight + 2}`,
      "marker-end": "url(#arrow)",
    }));
    root.append(svg("text", { class: "edge-label", x: right + 6, y: y1 - 4 }, `${label || "next"}${edge.back ? " ↺" : ""}`));
  }

  for (const step of flow.steps) {
    const box = boxes.get(step.id);
    const classes = ["step"];
    if (state.activeSteps?.has(step.id)) classes.push("active");
    else if (state.visitedSteps?.has(step.id)) classes.push("visited");
    if (step.agents.length > 1) classes.push("parallel");
    const group = svg("g", { class: classes.join(" "), "data-step": step.id });
    group.append(
      svg("rect", { x: STEP_X, y: box.y, width: STEP_WIDTH, height: box.height, rx: 8 }),
      svg("text", { class: "step-label", x: STEP_X + 10, y: box.y + 16 },
        step.id + (step.agents.length > 1 ? " · parallel" : "") + (step.agents.length === 0 ? " · waits for documents" : "")
          + (step.gate ? ` · approval ${step.gate.when}` : "")),
    );
    step.agents.forEach((agent, n) => {
      const x = STEP_X + CHIP_GAP + (n % perRow) * (CHIP_WIDTH + CHIP_GAP);
      const cy = box.y + HEADER + Math.floor(n / perRow) * (CHIP_HEIGHT + CHIP_GAP);
      const status = agents[`${step.id}/${agent}`] ?? agents[agent];
      const chip = svg("g", { class: `agent${status ? ` agent-${status}` : ""}`, "data-agent": agent });
      chip.append(
        svg("title", {}, status ? `${agent}: ${status}` : agent),
        svg("rect", { x, y: cy, width: CHIP_WIDTH, height: CHIP_HEIGHT, rx: 13 }),
        svg("text", { x: x + CHIP_WIDTH / 2, y: cy + 17, "text-anchor": "middle" }, shorten(agent, 15)),
      );
      group.append(chip);
    });
    root.append(group);
  }
  const end = boxes.get(END);
  root.append(
    svg("g", { class: "end" },
      svg("rect", { x: center - 30, y: end.y, width: 60, height: end.height, rx: 12 }),
      svg("text", { x: center, y: end.y + 16, "text-anchor": "middle" }, "end")),
  );
  return root;
}

function shorten(text, max) {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}
