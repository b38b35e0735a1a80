#!/usr/bin/env python3
"""Writes a synthetic bmad2pf source tree of N agents, for benchmarks.

The tree looks like a large real project in the preprocessing layout:

- agents/agent-NNNN.md: front matter with description, a persona map,
  tasks / checklists / templates, commands, builtin tools, memory_scope,
  creates / requires chains, parallel, timeout, retry_count, error_handling;
  a 1-3 KB Markdown body mixing legacy placeholders ({persona}, {input} ...)
  and Jinja ({{ docs["..."] }}, {% for %}, {% if %}).
- tasks/, checklists/, templates/: shared resources (one per ten agents).
- workflow.yaml: a `main` flow with one step per dependency layer (every
  other layer's agents run in parallel), a review loop routed with `next`,
  and a shorter `first-layers` flow.

Agents are arranged in layers of LAYER_SIZE; each agent creates one document
and requires one or two documents of the previous layer, so the dependency
graph has no cycles. Output is deterministic for given arguments.

Usage: gen_synthetic.py N OUT_DIR
"""

import os
import random
import shutil
import sys

LAYER_SIZE = 5

PARAGRAPHS = [
    "Work from the documents you were given; do not invent requirements that are not in them. "
    "When something is missing, say what is missing and continue with the parts you can do.",
    "Keep the tone plain and specific. Prefer short sections with headings, numbered lists for "
    "sequences and tables for comparisons. Every claim should be traceable to an input document.",
    "Before you finish, re-read your output against the checklist and fix every item that fails. "
    "Mention trade-offs explicitly, with the option you recommend and why.",
    "Estimate effort in ideal days and flag every estimate above five days as a risk. Name owners "
    "by role, never by person. Dates are relative to the start of the story.",
    "Example of the summary format (this is literal JSON, not a template): "
    '{"status": "draft", "risks": 2, "open_questions": ["scope", "budget"]}.',
]


def agent_id(i):
    return f"agent-{i:04d}"


def doc_name(i):
    return f"doc-{i:04d}.md"


def write(root, rel, text):
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def resource_text(kind, k, rng):
    lines = [f"# {kind.title()} {k}", ""]
    for step in range(1, rng.randint(6, 12)):
        lines.append(f"{step}. Step {step} of {kind} {k}: check the inputs, then record the result.")
    # Resources are inserted verbatim: Jinja-looking text must survive as is.
    lines += ["", "Literal braces stay literal: {{ not_a_variable }} and {input}.", ""]
    return "\n".join(lines)


def agent_text(i, n, rng, resources):
    layer = i // LAYER_SIZE
    prev = [j for j in range((layer - 1) * LAYER_SIZE, layer * LAYER_SIZE) if 0 <= j < n]
    requires = sorted(rng.sample(prev, min(len(prev), rng.randint(1, 2)))) if prev else []
    parallel = layer % 2 == 1
    n_tasks, n_checklists, n_templates = resources
    tasks = sorted({f"task-{rng.randrange(n_tasks):03d}" for _ in range(rng.randint(1, 2))})
    checklist = f"checklist-{rng.randrange(n_checklists):03d}"
    template = f"template-{rng.randrange(n_templates):03d}"
    scope = ["isolated", "shared", f"shared:team-{layer % 7}"][i % 3]

    fm = [
        "---",
        f"id: {agent_id(i)}",
        f"description: Synthetic agent {i} of layer {layer}; drafts {doc_name(i)} from its inputs.",
        "persona:",
        f"  role: Specialist number {i}",
        "  style: concise, evidence-based",
        f"  identity: A careful reviewer who owns {doc_name(i)}",
        "  focus: correctness and traceability",
        "  core_principles:",
        "    - Cite the input document for every claim",
        "    - Prefer the simplest design that works",
        f"tasks: [{', '.join(tasks)}]",
        f"checklists: [{checklist}]",
        f"templates: [{template}]",
        "commands:",
        '  - "*draft": write the first version',
        '  - "*revise": improve after review',
        '  - "*approve": accept the inputs',
        "tools: [word_count, current_time]",
        f"memory_scope: {scope}",
        f"creates: [{doc_name(i)}]",
    ]
    if requires:
        fm.append(f"requires: [{', '.join(doc_name(j) for j in requires)}]")
    fm += [
        f"parallel: {'true' if parallel else 'false'}",
        f"timeout: {60 + i % 60}",
        f"retry_count: {i % 3}",
        f"error_handling: {['stop', 'continue', 'fallback'][i % 3]}",
        "---",
    ]

    body = [f"# Agent {i}", "", "{persona}", "", "Story {story_id}. The request:", "", "{input}", ""]
    for j in requires:
        body += [f"## Input {doc_name(j)}", "", f'{{{{ docs["{doc_name(j)}"] }}}}', ""]
    body += ["## Tasks", "", "{tasks}", "", "## Checklist", "", "{checklists}", "", "## Outline", "", "{templates}", ""]
    body += [
        "## Memory",
        "",
        "{% for key in memory %}- {{ key }}: {{ memory[key] }}",
        "{% endfor %}",
        "{% if context %}Caller context: {{ context }}{% endif %}",
        "",
        "## Commands",
        "",
        "{commands}",
        "",
    ]
    target = rng.randint(1024, 3072)
    text = "\n".join(fm + body)
    k = 0
    while len(text.encode()) < target:
        text += "\n" + PARAGRAPHS[(i + k) % len(PARAGRAPHS)] + "\n"
        k += 1
    return text


def workflow_text(n):
    layers = (n + LAYER_SIZE - 1) // LAYER_SIZE
    lines = ["flows:", "  main:", "    description: Every layer in order, with a review loop", "    max_visits: 3", "    steps:"]
    for layer in range(layers):
        members = [agent_id(j) for j in range(layer * LAYER_SIZE, min(n, (layer + 1) * LAYER_SIZE))]
        lines.append(f"      - id: layer-{layer}")
        lines.append(f"        agents: [{', '.join(members)}]")
    last = agent_id(n - 1)
    lines += [
        "      - id: review",
        f"        agent: {last}",
        '        next: {"*revise": revise, "*approve": end}',
        "      - id: revise",
        f"        agent: {last}",
        "        next: {default: review}",
    ]
    first = min(layers, 3)
    lines += ["  first-layers:", "    description: The first layers only", "    steps:"]
    for layer in range(first):
        members = [agent_id(j) for j in range(layer * LAYER_SIZE, min(n, (layer + 1) * LAYER_SIZE))]
        lines.append(f"      - agents: [{', '.join(members)}]")
    return "\n".join(lines) + "\n"


def main():
    if len(sys.argv) != 3 or not sys.argv[1].isdigit() or int(sys.argv[1]) < 1:
        sys.exit("usage: gen_synthetic.py N OUT_DIR   (N >= 1 agents)")
    n, root = int(sys.argv[1]), sys.argv[2]
    if os.path.exists(root):
        shutil.rmtree(root)
    rng = random.Random(n)
    resources = (max(3, n // 10), max(2, n // 10), max(2, n // 10))
    for kind, count in zip(["task", "checklist", "template"], resources):
        for k in range(count):
            write(root, f"{kind}s/{kind}-{k:03d}.md", resource_text(kind, k, rng))
    for i in range(n):
        write(root, f"agents/{agent_id(i)}.md", agent_text(i, n, rng, resources))
    write(root, "workflow.yaml", workflow_text(n))


if __name__ == "__main__":
    main()
