#!/usr/bin/env python3
"""Writes a synthetic BMAD v4 installed project, for benchmarks.

The tree has the shape of a real BMAD v4 installation: a `.bmad-core/`
folder and expansion packs beside it (`.bmad-<name>/`), each pack with
agents/*.md (an activation notice and one fenced YAML block: agent,
persona, commands in several shapes, dependencies), tasks/*.md,
templates/*-tmpl.yaml (sections with instructions, repeatable and nested
sections), checklists/*.md, data/*.md, workflows/*.yaml (a `sequence` of
steps with creates / requires / notes, optional steps and conditions) and
agent-teams/*.yaml. File sizes are of the order of the published packs
(agents 4-8 KB, tasks 2-10 KB, templates 3-9 KB).

The default is a core of 10 agents plus 6 packs of 5 agents: 40 agents.
Output is deterministic for given arguments.

Usage: gen_bmad.py OUT_DIR [PACKS [AGENTS_PER_PACK]]
"""

import os
import random
import shutil
import sys

CORE_AGENTS = ["analyst", "architect", "master", "orchestrator", "dev", "pm", "po", "qa", "sm", "ux-expert"]
PACK_NAMES = ["game-dev", "infra-ops", "creative-writing", "data-science", "mobile-app", "security-review", "legal-docs"]
ROLES = ["designer", "developer", "architect", "reviewer", "writer", "planner", "tester", "analyst"]

SENTENCES = [
    "Read every input document before you write anything, and list what is missing.",
    "Keep each section short; use numbered lists for sequences and tables for comparisons.",
    "When the user's request is ambiguous, ask one clarifying question and wait.",
    "Record every decision with its reason, so a later reader can follow it.",
    "Never invent requirements; trace each statement back to a document or the user.",
    "Offer the next step as a numbered menu when the current one is done.",
    "Prefer the simplest option that satisfies the requirements; say what it costs.",
    "Flag risks explicitly with their likelihood, impact and an owner by role.",
]


def write(root, rel, text):
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def prose(rng, size):
    lines = []
    while sum(len(line) + 1 for line in lines) < size:
        lines.append(rng.choice(SENTENCES))
    return "\n".join(lines)


def task_text(name, rng):
    out = [f"# {name.replace('-', ' ').title()}", "", "## Purpose", "", prose(rng, 300), "", "## Process", ""]
    for step in range(1, rng.randint(5, 14)):
        out += [f"### {step}. Step {step}", "", prose(rng, rng.randint(150, 700)), ""]
    out += ["## Elicitation", "", "Present options 1-9 and wait: {{ not_a_variable }} stays literal.", ""]
    return "\n".join(out)


def template_text(name, rng):
    out = [
        "template:",
        f"  id: {name}-v2",
        f"  name: {name.replace('-', ' ').title()}",
        "  version: 2.0",
        "  output:",
        "    format: markdown",
        f"    filename: docs/{name}.md",
        '    title: "{{project_name}} ' + name + '"',
        "",
        "workflow:",
        "  mode: interactive",
        "  elicitation: advanced-elicitation",
        "",
        "sections:",
    ]
    for s in range(rng.randint(5, 12)):
        out += [
            f"  - id: section-{s}",
            f"    title: Section {s}",
            f'    instruction: "{rng.choice(SENTENCES)} {rng.choice(SENTENCES)}"',
        ]
        if s % 3 == 0:
            out += ["    elicit: true"]
        if s % 4 == 1:
            out += ["    repeatable: true", "    sections:"]
            for t in range(rng.randint(2, 4)):
                out += [
                    f"      - id: item-{s}-{t}",
                    f'        title: "Item {{{{item_number}}}}.{t}"',
                    "        type: bullet-list",
                    f'        instruction: "{rng.choice(SENTENCES)}"',
                    "        template: |",
                    "          - **{{item_title}}**: {{item_description}}",
                    "            Owner: {{owner_role}}",
                ]
    return "\n".join(out) + "\n"


def checklist_text(name, rng):
    out = [f"# {name.replace('-', ' ').title()}", "", "[[LLM: go through each item; mark it done, partial or missing.]]", ""]
    for section in range(rng.randint(3, 7)):
        out += [f"## {section + 1}. Area {section + 1}", ""]
        out += [f"- [ ] {rng.choice(SENTENCES)}" for _ in range(rng.randint(4, 10))]
        out += [""]
    return "\n".join(out)


def agent_text(agent_id, pack, deps, rng):
    tasks, templates, checklists, data = deps
    lines = [
        f"# {agent_id}",
        "",
        "ACTIVATION-NOTICE: This file contains your full agent operating guidelines. Do not load any",
        "external agent files; the complete configuration is in the YAML block below.",
        "",
        "CRITICAL: Read the full YAML BLOCK that FOLLOWS IN THIS FILE to understand your operating",
        "params, start and follow exactly your activation-instructions to alter your state of being.",
        "",
        "## COMPLETE AGENT DEFINITION FOLLOWS - NO EXTERNAL FILES NEEDED",
        "",
        "```yaml",
        "IDE-FILE-RESOLUTION:",
        "  - FOR LATER USE ONLY - NOT FOR ACTIVATION, when executing commands that reference dependencies",
        f"  - Dependencies map to {{root}}/{{type}}/{{name}} where root is .{pack}",
        "  - Example: create-doc.md -> {root}/tasks/create-doc.md",
        "REQUEST-RESOLUTION: Match user requests to your commands/dependencies flexibly; ask when unsure.",
        "activation-instructions:",
    ]
    lines += [f"  - STEP {n}: {rng.choice(SENTENCES)}" for n in range(1, 7)]
    lines += [
        "agent:",
        f"  name: {agent_id.title().replace('-', '')}",
        f"  id: {agent_id}",
        f"  title: {agent_id.replace('-', ' ').title()}",
        "  icon: 🧩",
        f"  whenToUse: Use for {agent_id.replace('-', ' ')} work in the {pack} pack. {rng.choice(SENTENCES)}",
        "  customization: null",
        "persona:",
        f"  role: Expert {agent_id.replace('-', ' ')}",
        "  style: Methodical, clear, collaborative",
        f"  identity: {rng.choice(SENTENCES)}",
        f"  focus: {rng.choice(SENTENCES)}",
        "  core_principles:",
    ]
    lines += [f"    - {rng.choice(SENTENCES)}" for _ in range(rng.randint(6, 12))]
    lines += ["    - CRITICAL: Numbered Options - always use numbered lists when presenting choices", "commands:"]
    # The three command shapes of the published packs.
    lines += ["  - help: Show numbered list of the following commands to allow selection"]
    for n, task in enumerate(tasks):
        if n % 3 == 0:
            lines.append(f"  - run-{task}: execute task {task}.md")
        elif n % 3 == 1:
            lines.append(f"  - '*{task}': run the {task} task")
        else:
            lines += [f"  - {task}:", f"      - run task {task}.md", f"      - then {rng.choice(SENTENCES)}"]
    for template in templates:
        lines.append(f"  - create-{template}: use task create-doc with {template}-tmpl.yaml")
    lines += ["  - exit: Say goodbye as the agent, and then abandon inhabiting this persona", "dependencies:"]
    lines += ["  tasks:"] + [f"    - {t}.md" for t in tasks]
    lines += ["  templates:"] + [f"    - {t}-tmpl.yaml" for t in templates]
    lines += ["  checklists:"] + [f"    - {c}.md" for c in checklists]
    lines += ["  data:"] + [f"    - {d}.md" for d in data]
    lines += ["```", ""]
    return "\n".join(lines)


def workflow_text(name, agents, rng):
    out = ["workflow:", f"  id: {name}", f"  name: {name.replace('-', ' ').title()}",
           f"  description: {rng.choice(SENTENCES)}", "  type: greenfield", "  project_types:",
           "    - web-app", "    - service", "  sequence:"]
    previous = None
    for n, agent in enumerate(agents):
        doc = f"{name}-{n}.md"
        out += [f"    - agent: {agent}", f"      creates: {doc}"]
        if previous:
            out += [f"      requires: {previous}"]
        if n % 3 == 1:
            out += ["      optional_steps:", "        - elicitation_round", "        - research_spike"]
        if n % 4 == 2:
            out += ["      condition: user_wants_review"]
        out += [f'      notes: "{rng.choice(SENTENCES)}"', ""]
        previous = doc
    out += ["    - workflow_end:", "        action: ready_for_development", f'        notes: "{rng.choice(SENTENCES)}"']
    return "\n".join(out) + "\n"


def write_pack(root, folder, agent_ids, rng):
    n = len(agent_ids)
    tasks = [f"{folder.strip('.')}-task-{k}" for k in range(max(4, 2 * n))]
    templates = [f"{folder.strip('.')}-doc-{k}" for k in range(max(2, n))]
    checklists = [f"{folder.strip('.')}-checklist-{k}" for k in range(max(2, n // 2))]
    data = [f"{folder.strip('.')}-kb-{k}" for k in range(2)]
    for t in tasks:
        write(root, f"{folder}/tasks/{t}.md", task_text(t, rng))
    for t in templates:
        write(root, f"{folder}/templates/{t}-tmpl.yaml", template_text(t, rng))
    for c in checklists:
        write(root, f"{folder}/checklists/{c}.md", checklist_text(c, rng))
    for d in data:
        write(root, f"{folder}/data/{d}.md", "# Knowledge base\n\n" + prose(rng, rng.randint(2000, 6000)) + "\n")
    for agent_id in agent_ids:
        deps = (sorted(rng.sample(tasks, min(len(tasks), rng.randint(3, 6)))),
                sorted(rng.sample(templates, min(len(templates), rng.randint(1, 3)))),
                sorted(rng.sample(checklists, 1)), data)
        write(root, f"{folder}/agents/{agent_id}.md", agent_text(agent_id, folder.strip("."), deps, rng))
    for w in range(2):
        name = f"{folder.strip('.')}-flow-{w}"
        write(root, f"{folder}/workflows/{name}.yaml", workflow_text(name, rng.sample(agent_ids, min(n, 5)), rng))
    team = ["bundle:", f"  name: {folder.strip('.')} team", "  icon: 🧭", f"  description: {rng.choice(SENTENCES)}",
            "agents:"] + [f"  - {a}" for a in agent_ids] + ["workflows:", f"  - {folder.strip('.')}-flow-0.yaml"]
    write(root, f"{folder}/agent-teams/team-{folder.strip('.')}.yaml", "\n".join(team) + "\n")


def main():
    args = sys.argv[1:]
    if not 1 <= len(args) <= 3 or not all(a.isdigit() for a in args[1:]):
        sys.exit("usage: gen_bmad.py OUT_DIR [PACKS [AGENTS_PER_PACK]]   (default: 6 packs of 5 agents)")
    root = args[0]
    packs = int(args[1]) if len(args) > 1 else 6
    per_pack = int(args[2]) if len(args) > 2 else 5
    if packs > len(PACK_NAMES):
        sys.exit(f"at most {len(PACK_NAMES)} packs")
    if os.path.exists(root):
        shutil.rmtree(root)
    rng = random.Random(packs * 100 + per_pack)
    write_pack(root, ".bmad-core", CORE_AGENTS, rng)
    for name in PACK_NAMES[:packs]:
        agents = [f"{name}-{ROLES[k % len(ROLES)]}" + (f"-{k // len(ROLES) + 1}" if k >= len(ROLES) else "")
                  for k in range(per_pack)]
        write_pack(root, f".bmad-{name}", agents, rng)


if __name__ == "__main__":
    main()
