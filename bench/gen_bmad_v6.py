#!/usr/bin/env python3
"""Writes a synthetic BMAD v6 module tree, for benchmarks.

The tree has the shape SPEC 1.7 describes: `src/core/` and `src/<module>/`
folders with `module.yaml`; `agents/*.agent.yaml` (metadata, persona with a
bulleted principles block, critical actions, a menu naming workflows);
step-file workflows (`workflow.md` naming `steps/step-01-….md`, each step
with front matter naming the next step, a branch and a loop back, a menu
and an `<ask>`); `workflow.yaml` workflows with instructions, a template and
a checklist; a data CSV per workflow. Every agent's menu names its module's
workflows, so every flow has an owner.

The default is 10 agents and 40 workflows (30 step-file workflows of 6
steps, 10 workflow.yaml) over 3 modules. Output is deterministic.

Usage: gen_bmad_v6.py OUT_DIR [AGENTS [WORKFLOWS]]
"""

import os
import shutil
import sys

MODULES = ["core", "plan", "build"]
FILLER = (
    "Read every document of the story before you write anything, and say what is missing. "
    "Keep the user's words where they are precise; ask when they are not. "
)


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def module_yaml(code):
    return (
        f"code: {code}\nname: {code.title()} module\n"
        "output_folder:\n  default: _bmad-output\n  result: '{project-root}/{value}'\n"
        "planning_artifacts:\n  default: '{output_folder}/planning'\n"
        "user_name:\n  default: User\n"
    )


def agent_yaml(code, name, workflows):
    menu = ""
    for i, (wf, kind) in enumerate(workflows):
        target = "exec" if kind == "md" else "workflow"
        file = "workflow.md" if kind == "md" else "workflow.yaml"
        menu += (
            f"    - trigger: W{i} or fuzzy match on {wf}\n"
            f"      {target}: '{{project-root}}/_bmad/{code}/workflows/{wf}/{file}'\n"
            f"      description: '[W{i}] Run {wf}'\n"
        )
    principles = "".join(f"      - Principle {j} of {name}: {FILLER}\n" for j in range(6))
    return (
        "agent:\n  metadata:\n"
        f"    id: _bmad/{code}/agents/{name}.md\n    name: {name.title()}\n    title: {name} lead\n"
        f"    icon: '*'\n    module: {code}\n    capabilities: planning, review\n    hasSidecar: false\n"
        f"  persona:\n    role: {name} who plans\n    identity: {FILLER}\n    communication_style: Plain and brief.\n"
        f"    principles: |\n{principles}"
        "  critical_actions:\n    - 'Load {project-root}/_bmad/" + code + "/config.yaml first'\n    - Greet {user_name}\n"
        f"  menu:\n{menu}"
    )


def step_file(n, last, wf):
    fm = f"---\nname: 'step-{n:02d}-part'\ndescription: 'Part {n} of {wf}'\n"
    if not last:
        fm += f"nextStepFile: './step-{n + 1:02d}-part.md'\n"
    if n == 2:
        fm += "altStepFile: './step-02b-alt.md'\n"
    if n == 1:
        fm += "outputFile: '{planning_artifacts}/" + wf + "-{{date}}.md'\n"
    fm += "---\n\n"
    body = f"# Step {n}\n\n" + FILLER * 8 + "\n\n<ask>Anything to add?</ask>\n\n"
    if n == 4:
        body += "If the review fails, go back to ./step-02-part.md\n\n"
    body += "[A] Advanced [P] Party [C] Continue\n"
    return fm + body


def main():
    out = sys.argv[1]
    agents = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    workflows = int(sys.argv[3]) if len(sys.argv) > 3 else 40
    if os.path.exists(out):
        shutil.rmtree(out)
    write(os.path.join(out, "runtime.yaml"), "llm: {provider: mock}\n")
    per_module = {m: [] for m in MODULES}
    for w in range(workflows):
        code = MODULES[w % len(MODULES)]
        kind = "yaml" if w % 4 == 3 else "md"
        name = f"wf-{w:02d}"
        per_module[code].append((name, kind))
        base = os.path.join(out, "src", code, "workflows", name)
        write(os.path.join(base, "data", "table.csv"), "a,b\n" + "x,y\n" * 20)
        if kind == "md":
            write(
                os.path.join(base, "workflow.md"),
                f"---\nname: {name}\ndescription: Workflow {w}\nnextStep: './steps/step-01-part.md'\n---\n\n"
                f"# {name}\n\nSpeak to {{user_name}}. Plans go to {{planning_artifacts}}.\n\n" + FILLER * 6,
            )
            for n in range(1, 7):
                write(os.path.join(base, "steps", f"step-{n:02d}-part.md"), step_file(n, n == 6, name))
            write(os.path.join(base, "steps", "step-02b-alt.md"), "# Alternative\n\n" + FILLER * 4 + "\nThen load ./step-03-part.md\n")
        else:
            write(
                os.path.join(base, "workflow.yaml"),
                f"name: {name}\ndescription: 'Workflow {w}'\nconfig_source: '{{project-root}}/_bmad/{code}/config.yaml'\n"
                "output_folder: '{config_source}:output_folder'\n"
                f"installed_path: '{{project-root}}/_bmad/{code}/workflows/{name}'\n"
                "instructions: '{installed_path}/instructions.md'\ntemplate: '{installed_path}/template.md'\n"
                "validation: '{installed_path}/checklist.md'\ndefault_output_file: '{output_folder}/" + name + ".md'\n",
            )
            write(os.path.join(base, "instructions.md"), "<workflow>\n" + "".join(f"<step n=\"{i}\"><action>{FILLER}</action><ask>Ok?</ask></step>\n" for i in range(8)) + "</workflow>\n")
            write(os.path.join(base, "template.md"), "# {{title}}\n\n" + FILLER * 5)
            write(os.path.join(base, "checklist.md"), "".join(f"- [ ] Check {i}\n" for i in range(15)))
    for code in MODULES:
        write(os.path.join(out, "src", code, "module.yaml"), module_yaml(code))
    for a in range(agents):
        code = MODULES[a % len(MODULES)]
        name = f"agent-{a:02d}"
        write(os.path.join(out, "src", code, "agents", f"{name}.agent.yaml"), agent_yaml(code, name, per_module[code]))


if __name__ == "__main__":
    main()
