//! `graph.mmd`: every flow as a Mermaid `flowchart TD`.
//!
//! Each flow is a subgraph running from a `start` node to an `end` node.
//! A single-agent step is one box; a step with several agents is a nested
//! subgraph laid out left to right, where agents that may run concurrently
//! (`parallel: true`) stand side by side and the others are chained in their
//! order. Edges between steps are the routes a run can take: an unlabelled
//! edge is the `default` route (the following step, or `next.default`), a
//! labelled one is a `next` action (`*revise`), and `end` is a node.
//!
//! Node ids are built from the names so the file reads well and diffs well:
//! `f_<flow>__<step>[__<agent>]`, where every character of a name outside
//! `[A-Za-z0-9]` is written `_<hex>_` (so `_` never appears unescaped and the
//! `__` separator stays unambiguous), and the start/end nodes use a `___`
//! separator no name can produce. The `f_` prefix keeps ids clear of Mermaid
//! keywords (`end`, `graph`, `subgraph`). Labels are quoted with `"`, `#`,
//! `<` and `>` written as Mermaid entity codes. Output is deterministic:
//! flows in name order, steps in order, actions sorted.

use super::OutputError;
use crate::bundle::{Bundle, END_STEP, FlowSpec, StepSpec};
use std::fmt::Write;

/// The Mermaid diagram of every flow of the bundle (the text of `graph.mmd`).
pub fn graph(bundle: &Bundle) -> String {
    let mut out = String::from("flowchart TD\n");
    for flow in bundle.flows.values() {
        write_flow(&mut out, bundle, flow);
    }
    out
}

/// The Mermaid diagram of one flow, or [`OutputError::UnknownFlow`] listing the flows.
pub fn graph_of_flow(bundle: &Bundle, name: &str) -> Result<String, OutputError> {
    let flow = bundle
        .flows
        .get(name)
        .ok_or_else(|| OutputError::UnknownFlow {
            name: name.to_string(),
            known: bundle.flows.keys().cloned().collect(),
        })?;
    let mut out = String::from("flowchart TD\n");
    write_flow(&mut out, bundle, flow);
    Ok(out)
}

fn write_flow(out: &mut String, bundle: &Bundle, flow: &FlowSpec) {
    let flow_id = format!("f_{}", escape_id(&flow.name));
    let start = format!("{flow_id}___start");
    let end = format!("{flow_id}___end");
    let step_id = |step: &str| format!("{flow_id}__{}", escape_id(step));

    let title = if flow.description.is_empty() {
        flow.name.clone()
    } else {
        format!("{}: {}", flow.name, flow.description)
    };
    line(
        out,
        1,
        &format!("subgraph {flow_id}[\"{}\"]", label(&title)),
    );
    line(out, 2, "direction TB");
    line(out, 2, &format!("{start}([\"start\"])"));
    for step in &flow.steps {
        write_step(out, bundle, &step_id(&step.id), step);
    }
    line(out, 2, &format!("{end}([\"end\"])"));

    let target = |name: &str| {
        if name == END_STEP {
            end.clone()
        } else {
            step_id(name)
        }
    };
    match flow.steps.first() {
        Some(first) => line(out, 2, &format!("{start} --> {}", step_id(&first.id))),
        None => line(out, 2, &format!("{start} --> {end}")),
    }
    for (index, step) in flow.steps.iter().enumerate() {
        let from = step_id(&step.id);
        let default_target = match step.next.get("default") {
            Some(to) => target(to),
            None => flow
                .steps
                .get(index + 1)
                .map_or_else(|| end.clone(), |following| step_id(&following.id)),
        };
        line(out, 2, &format!("{from} --> {default_target}"));
        for (action, to) in step.next.iter().filter(|(action, _)| *action != "default") {
            line(
                out,
                2,
                &format!("{from} -->|\"{}\"| {}", label(action), target(to)),
            );
        }
    }
    line(out, 1, "end");
}

fn write_step(out: &mut String, bundle: &Bundle, id: &str, step: &StepSpec) {
    match step.agents.as_slice() {
        [] => {
            let waits = if step.requires.is_empty() {
                "human step".to_string()
            } else {
                format!("waits for {}", step.requires.join(", "))
            };
            line(
                out,
                2,
                &format!("{id}[/\"{}\"/]", label(&format!("{} · {waits}", step.id))),
            );
        }
        [agent] => {
            let text = if step.id == *agent {
                agent.clone()
            } else {
                format!("{} · {agent}", step.id)
            };
            line(out, 2, &format!("{id}[\"{}\"]", label(&text)));
        }
        agents => {
            let parallel: Vec<bool> = agents
                .iter()
                .map(|a| bundle.agents.get(a).is_some_and(|spec| spec.parallel))
                .collect();
            let title = if parallel.iter().filter(|p| **p).count() >= 2 {
                format!("{} · parallel", step.id)
            } else {
                step.id.clone()
            };
            line(out, 2, &format!("subgraph {id}[\"{}\"]", label(&title)));
            line(out, 3, "direction LR");
            let agent_id = |agent: &str| format!("{id}__{}", escape_id(agent));
            for agent in agents {
                line(
                    out,
                    3,
                    &format!("{}[\"{}\"]", agent_id(agent), label(agent)),
                );
            }
            // Agents that do not run concurrently run one after another.
            for (pair, flags) in agents.windows(2).zip(parallel.windows(2)) {
                if !flags[0] && !flags[1] {
                    line(
                        out,
                        3,
                        &format!("{} --> {}", agent_id(&pair[0]), agent_id(&pair[1])),
                    );
                }
            }
            line(out, 2, "end");
        }
    }
}

fn line(out: &mut String, depth: usize, text: &str) {
    // Writing to a String cannot fail.
    let _ = writeln!(out, "{:indent$}{text}", "", indent = depth * 4);
}

/// A name as part of a Mermaid node id (see the module docs).
fn escape_id(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else {
            let _ = write!(out, "_{:x}_", u32::from(c));
        }
    }
    out
}

/// Text inside a quoted Mermaid label.
fn label(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '#' => out.push_str("#35;"),
            '"' => out.push_str("#quot;"),
            '<' => out.push_str("#lt;"),
            '>' => out.push_str("#gt;"),
            '\n' | '\r' | '\t' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}
