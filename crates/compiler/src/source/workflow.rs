//! Flows: `workflow.yaml`, or a `default` flow derived from agent dependencies.
//!
//! # workflow.yaml
//! ```yaml
//! flows:
//!   planning:                          # ^[A-Za-z][A-Za-z0-9_-]*$
//!     description: Greenfield planning
//!     max_visits: 10                   # per-step loop guard, default 10
//!     steps:
//!       - agents: [analyst]            # a group step (may also carry `id`)
//!       - id: review                   # single-agent shorthand
//!         agent: po
//!         next: {"*revise": fix, "*approve": end}
//!         approve: after               # a person approves (before|after|true = after)
//!         approve_prompt: Ship this review?
//!         on_reject: fix               # a step id or `end` (see StepGate)
//! ```
//! Decisions: a step has either `agent` or `agents`, never both; a group
//! step may carry `id`, and `next` only when it runs exactly one agent
//! (routing follows *the* agent's action, SPEC 4.3). Step ids follow the
//! name rule, are unique within a flow, may not be `end`, and default to
//! `step-<n>` (1-based position). `next` keys are `default` or one of the
//! step agent's commands; targets are step ids of the same flow or `end`.
//!
//! # Dependencies
//! Agent B depends on agent A when B lists A in `wait_for.agents`, or B
//! `requires` / `wait_for.docs` a document in A's outputs (its `creates`,
//! or its default output, the lower-cased id). Cycles are errors in every
//! project (a flow could never satisfy them), reported as the chain of
//! agents that wait for each other. Without workflow.yaml the `default`
//! flow runs the dependency graph's topological layers, one step per layer,
//! agents sorted by id within a layer.

use super::agent::{DepKind, ParsedAgent};
use super::fields::{FieldReader, is_name};
use crate::bundle::{AgentSpec, DEFAULT_FLOW, END_STEP, FlowSpec, GateWhen, StepGate, StepSpec};
use crate::diag::{Diagnostics, Pos, did_you_mean};
use crate::yaml::{self, Key, Node, check_keys};
use std::collections::{BTreeMap, BTreeSet, HashMap};

pub const DEFAULT_MAX_VISITS: u32 = 10;
/// Most cycles reported in one compile; one dense knot would otherwise
/// produce thousands of near-identical errors.
const MAX_CYCLE_REPORTS: usize = 20;

/// The agents a workflow may name.
#[derive(Debug, Clone, Copy)]
pub struct AgentIndex<'a> {
    pub agents: &'a BTreeMap<String, AgentSpec>,
    /// Ids of agent files that exist but could not be read; naming them is
    /// not reported again as "unknown agent".
    pub unreadable: &'a BTreeSet<String>,
}

impl AgentIndex<'_> {
    fn knows(&self, id: &str) -> bool {
        self.agents.contains_key(id) || self.unreadable.contains(id)
    }

    fn unknown_agent(
        &self,
        diags: &mut Diagnostics,
        file: &str,
        pos: Pos,
        id: &str,
        context: &str,
    ) {
        let hint = match did_you_mean(id, self.agents.keys().map(String::as_str)) {
            Some(close) => format!("did you mean `{close}`?"),
            None => format!(
                "agents: {}",
                self.agents.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        };
        diags
            .error(
                "unknown-agent",
                file,
                pos,
                format!("{context} names unknown agent `{id}`"),
            )
            .hint = Some(hint);
    }
}

/// Reads workflow.yaml text into flows, checking agents, step ids and `next`.
pub fn parse_workflow(
    text: &str,
    file: &str,
    index: AgentIndex<'_>,
    diags: &mut Diagnostics,
) -> BTreeMap<String, FlowSpec> {
    let mut flows = BTreeMap::new();
    let Some(root) = yaml::parse(text, file, 0, diags) else {
        return flows;
    };
    let mut r = FieldReader::new(file, diags);
    let Some(top) = r.map(&root, "workflow.yaml") else {
        return flows;
    };
    check_keys(top, &["flows"], "workflow.yaml", file, r.diags);
    let Some((_, flows_node)) = top.iter().find(|(k, _)| k.name == "flows") else {
        r.missing(root.pos, "flows", "workflow.yaml");
        return flows;
    };
    let Some(entries) = r.map(flows_node, "flows") else {
        return flows;
    };
    if entries.is_empty() {
        r.diags.error(
            "no-flows",
            file,
            flows_node.pos,
            "workflow.yaml defines no flows",
        );
    }
    for (key, node) in entries {
        if let Some(flow) = parse_flow(&mut r, index, key, node) {
            flows.insert(flow.name.clone(), flow);
        }
    }
    flows
}

fn parse_flow(
    r: &mut FieldReader<'_>,
    index: AgentIndex<'_>,
    key: &Key,
    node: &Node,
) -> Option<FlowSpec> {
    let name = key.name.clone();
    if !is_name(&name) {
        r.diags.error(
            "bad-flow-name",
            r.file,
            key.pos,
            format!("flow name `{name}` must match ^[A-Za-z][A-Za-z0-9_-]*$"),
        );
    }
    let entries = r.map(node, &format!("flows.{name}"))?;
    check_keys(
        entries,
        &["description", "steps", "max_visits"],
        &format!("flow `{name}`"),
        r.file,
        r.diags,
    );
    let get = |field: &str| {
        entries
            .iter()
            .find(|(k, _)| k.name == field)
            .map(|(_, v)| v)
    };
    let description = get("description")
        .and_then(|v| r.optional_string(v, &format!("flows.{name}.description")))
        .unwrap_or_default();
    let max_visits = get("max_visits")
        .and_then(|v| r.integer(v, &format!("flows.{name}.max_visits"), 1, 1_000_000))
        .map_or(DEFAULT_MAX_VISITS, |n| n as u32);
    let Some(steps_node) = get("steps") else {
        r.missing(node.pos, "steps", &format!("flow `{name}`"));
        return None;
    };
    let Some(items) = steps_node.as_seq() else {
        r.wrong_type(
            steps_node,
            &format!("flows.{name}.steps"),
            "a list of steps",
        );
        return None;
    };
    if items.is_empty() {
        r.bad_value(steps_node.pos, format!("flow `{name}` has no steps"));
    }
    let mut steps: Vec<ParsedStep> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        if let Some(step) = parse_step(r, index, &name, i, item) {
            if let Some(first) = steps.iter().find(|s| s.spec.id == step.spec.id) {
                r.diags
                    .error(
                        "duplicate-step",
                        r.file,
                        step.pos,
                        format!("step id `{}` is used twice in flow `{name}`", first.spec.id),
                    )
                    .hint = Some(format!("first used on line {}", first.pos.line));
                continue;
            }
            steps.push(step);
        }
    }
    let ids: Vec<&str> = steps.iter().map(|s| s.spec.id.as_str()).collect();
    for step in &steps {
        for Route {
            action,
            target,
            pos,
        } in &step.routes
        {
            if target != END_STEP && !ids.contains(&target.as_str()) {
                let hint = match did_you_mean(target, ids.iter().copied().chain([END_STEP])) {
                    Some(close) => format!("did you mean `{close}`?"),
                    None => format!("steps of `{name}`: {}, or `end`", ids.join(", ")),
                };
                r.diags
                    .error(
                        "unknown-step",
                        r.file,
                        *pos,
                        format!("`{action}` goes to unknown step `{target}`"),
                    )
                    .hint = Some(hint);
            }
        }
    }
    Some(FlowSpec {
        name,
        description,
        source: r.file.to_string(),
        steps: steps.into_iter().map(|s| s.spec).collect(),
        max_visits,
        metadata: BTreeMap::new(),
    })
}

/// A step as read, with what the flow-level checks need.
struct ParsedStep {
    spec: StepSpec,
    pos: Pos,
    /// The `next` entries with positions, checked once every step id of the flow is known.
    routes: Vec<Route>,
}

struct Route {
    action: String,
    target: String,
    pos: Pos,
}

fn parse_step(
    r: &mut FieldReader<'_>,
    index: AgentIndex<'_>,
    flow: &str,
    i: usize,
    item: &Node,
) -> Option<ParsedStep> {
    let Some(entries) = item.as_map() else {
        r.wrong_type(
            item,
            &format!("flows.{flow}.steps[]"),
            "a map with `agents` or `agent`",
        );
        return None;
    };
    check_keys(
        entries,
        &[
            "id",
            "agent",
            "agents",
            "next",
            "approve",
            "approve_prompt",
            "on_reject",
        ],
        "flow step",
        r.file,
        r.diags,
    );
    let get = |field: &str| {
        entries
            .iter()
            .find(|(k, _)| k.name == field)
            .map(|(_, v)| v)
    };
    let id = match get("id") {
        Some(node) => {
            let id = r.string(node, "step id")?;
            if !is_name(&id) || id == END_STEP {
                r.bad_value(
                    node.pos,
                    format!("step id `{id}` must match ^[A-Za-z][A-Za-z0-9_-]*$ and not be `end`"),
                );
            }
            id
        }
        None => format!("step-{}", i + 1),
    };
    let agents: Vec<(String, Pos)> = match (get("agent"), get("agents")) {
        (Some(_), Some(_)) => {
            r.diags.error(
                "bad-step",
                r.file,
                item.pos,
                "a step has `agent` (one) or `agents` (a group), not both",
            );
            return None;
        }
        (Some(node), None) => vec![(r.string(node, "agent")?, node.pos)],
        (None, Some(node)) => {
            let agents = r.string_list(node, "agents");
            if agents.is_empty() {
                r.bad_value(node.pos, format!("step `{id}` has no agents"));
            }
            agents
        }
        (None, None) => {
            r.missing(item.pos, "agent` or `agents", "a flow step");
            return None;
        }
    };
    let mut names: Vec<String> = Vec::with_capacity(agents.len());
    for (agent, pos) in &agents {
        if !index.knows(agent) {
            index.unknown_agent(r.diags, r.file, *pos, agent, &format!("step `{id}`"));
        }
        if names.contains(agent) {
            r.bad_value(
                *pos,
                format!("agent `{agent}` appears twice in step `{id}`"),
            );
        } else {
            names.push(agent.clone());
        }
    }
    let mut next = BTreeMap::new();
    let mut targets = Vec::new();
    if let Some(node) = get("next") {
        let entries = r.map(node, "next")?;
        if names.len() > 1 && !entries.is_empty() {
            r.diags
                .error(
                    "bad-step",
                    r.file,
                    node.pos,
                    format!(
                        "step `{id}` runs {} agents; `next` routes on one agent's action",
                        names.len()
                    ),
                )
                .hint = Some("give the routing agent a step of its own".into());
        }
        let commands: Option<Vec<&str>> = names
            .first()
            .and_then(|a| index.agents.get(a))
            .map(|a| a.commands.iter().map(|c| c.name.as_str()).collect());
        for (key, value) in entries {
            let Some(target) = r.string(value, &format!("next.{}", key.name)) else {
                continue;
            };
            check_action(
                r,
                &key.name,
                key.pos,
                names.first().map(String::as_str),
                commands.as_deref(),
            );
            targets.push(Route {
                action: key.name.clone(),
                target: target.clone(),
                pos: value.pos,
            });
            next.insert(key.name.clone(), target);
        }
    }
    let gate = parse_gate(r, entries, &mut targets);
    let step = StepSpec {
        id,
        agents: names,
        next,
        creates: Vec::new(),
        requires: Vec::new(),
        updates: Vec::new(),
        gate,
        metadata: BTreeMap::new(),
    };
    Some(ParsedStep {
        spec: step,
        pos: item.pos,
        routes: targets,
    })
}

/// A step's approval gate: `approve: before|after|true|false`, with
/// `approve_prompt` and `on_reject` (whose target is checked with the
/// `next` routes, so it goes into `routes`).
fn parse_gate(
    r: &mut FieldReader<'_>,
    entries: &[(Key, Node)],
    routes: &mut Vec<Route>,
) -> Option<StepGate> {
    let get = |field: &str| {
        entries
            .iter()
            .find(|(k, _)| k.name == field)
            .map(|(_, v)| v)
    };
    let prompt = get("approve_prompt").and_then(|node| r.string(node, "approve_prompt"));
    let on_reject = get("on_reject").and_then(|node| {
        let target = r.string(node, "on_reject")?;
        routes.push(Route {
            action: "on_reject".into(),
            target: target.clone(),
            pos: node.pos,
        });
        Some(target)
    });
    let when = match get("approve") {
        None => None,
        Some(node) => match &node.value {
            yaml::Value::Bool(true) => Some(GateWhen::After),
            yaml::Value::Bool(false) => None,
            _ => match r.string(node, "approve").as_deref() {
                Some("before") => Some(GateWhen::Before),
                Some("after") => Some(GateWhen::After),
                Some(other) => {
                    r.bad_value(
                        node.pos,
                        format!("`approve` is `before`, `after` or true/false, not `{other}`"),
                    );
                    None
                }
                None => None,
            },
        },
    };
    match when {
        Some(when) => Some(StepGate {
            when,
            prompt,
            on_reject,
        }),
        None => {
            if let Some(node) = get("approve_prompt").or_else(|| get("on_reject")) {
                r.diags.warning(
                    "unused-gate-field",
                    r.file,
                    node.pos,
                    "`approve_prompt` and `on_reject` do nothing without `approve: before|after`",
                );
            }
            None
        }
    }
}

/// A `next` key must be `default` or one of the agent's commands.
fn check_action(
    r: &mut FieldReader<'_>,
    action: &str,
    pos: Pos,
    agent: Option<&str>,
    commands: Option<&[&str]>,
) {
    if action == "default" {
        return;
    }
    if !action.strip_prefix('*').is_some_and(is_name) {
        r.diags
            .error(
                "bad-command",
                r.file,
                pos,
                format!("`next` key `{action}` must be `default` or a command like `*approve`"),
            )
            .hint = is_name(action).then(|| format!("write \"*{action}\""));
        return;
    }
    let (Some(agent), Some(commands)) = (agent, commands) else {
        return;
    };
    if !commands.contains(&action) {
        let hint = match did_you_mean(action, commands.iter().copied()) {
            Some(close) => format!("did you mean `{close}`?"),
            None if commands.is_empty() => {
                format!("`{agent}` declares no commands; add `commands: [\"{action}\"]` to it")
            }
            None => format!("`{agent}` has: {}", commands.join(", ")),
        };
        r.diags
            .error(
                "unknown-action",
                r.file,
                pos,
                format!(
                    "agent `{agent}` has no command `{action}`, so this route can never be taken"
                ),
            )
            .hint = Some(hint);
    }
}

/// Checks dependencies between agents: unknown `wait_for.agents`, documents
/// nobody creates (warning), cycles (error). Returns the topological layers
/// when there is no cycle.
pub fn dependency_layers(
    agents: &[ParsedAgent],
    unreadable: &BTreeSet<String>,
    diags: &mut Diagnostics,
) -> Option<Vec<Vec<String>>> {
    let slot: HashMap<&str, usize> = agents
        .iter()
        .enumerate()
        .map(|(i, a)| (a.spec.id.as_str(), i))
        .collect();
    let mut creators: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, a) in agents.iter().enumerate() {
        for doc in a.spec.outputs() {
            creators.entry(doc).or_default().push(i);
        }
    }
    // waits[b] = (a, position in b's file) for every agent a that b waits for.
    let mut waits: Vec<Vec<(usize, Pos)>> = vec![Vec::new(); agents.len()];
    for (b, agent) in agents.iter().enumerate() {
        let file = agent.spec.source.as_str();
        for dep in &agent.deps {
            let targets: Vec<usize> = match dep.kind {
                DepKind::Agent => match slot.get(dep.name.as_str()) {
                    Some(&a) => vec![a],
                    None => {
                        if !unreadable.contains(&dep.name) {
                            let hint = did_you_mean(&dep.name, slot.keys().copied())
                                .map(|c| format!("did you mean `{c}`?"));
                            diags
                                .error(
                                    "unknown-agent",
                                    file,
                                    dep.pos,
                                    format!("`wait_for.agents` names unknown agent `{}`", dep.name),
                                )
                                .hint = hint;
                        }
                        Vec::new()
                    }
                },
                DepKind::Doc => match creators.get(&dep.name) {
                    Some(list) => list.clone(),
                    None => {
                        diags
                            .warning(
                                "missing-document",
                                file,
                                dep.pos,
                                format!("no agent creates document `{}`", dep.name),
                            )
                            .hint = Some("it must be supplied before the run (PUT /doc/<story>__<name>), or add it to an agent's `creates`".into());
                        Vec::new()
                    }
                },
            };
            for a in targets {
                if !waits[b].iter().any(|(x, _)| *x == a) {
                    waits[b].push((a, dep.pos));
                }
            }
        }
    }
    // Kahn's algorithm, one layer at a time.
    let mut pending: Vec<usize> = waits.iter().map(Vec::len).collect();
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); agents.len()];
    for (b, list) in waits.iter().enumerate() {
        for (a, _) in list {
            dependents[*a].push(b);
        }
    }
    let mut layer: Vec<usize> = (0..agents.len()).filter(|&i| pending[i] == 0).collect();
    let mut layers: Vec<Vec<String>> = Vec::new();
    let mut placed = 0;
    while !layer.is_empty() {
        placed += layer.len();
        let mut next = Vec::new();
        for &a in &layer {
            for &b in &dependents[a] {
                pending[b] -= 1;
                if pending[b] == 0 {
                    next.push(b);
                }
            }
        }
        let mut ids: Vec<String> = layer.iter().map(|&i| agents[i].spec.id.clone()).collect();
        ids.sort();
        layers.push(ids);
        layer = next;
    }
    if placed == agents.len() {
        return Some(layers);
    }
    report_cycles(agents, &waits, &pending, diags);
    None
}

/// Finds cycles among the agents Kahn's algorithm could not place
/// (`pending > 0`) with an iterative depth-first search; each back edge
/// closes one cycle, reported at the reference that closes it.
fn report_cycles(
    agents: &[ParsedAgent],
    waits: &[Vec<(usize, Pos)>],
    pending: &[usize],
    diags: &mut Diagnostics,
) {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    let mut mark = vec![Mark::New; agents.len()];
    let mut reported = 0;
    for start in 0..agents.len() {
        if pending[start] == 0 || mark[start] != Mark::New {
            continue;
        }
        // (node, index of the next edge to follow)
        let mut path: Vec<(usize, usize)> = vec![(start, 0)];
        mark[start] = Mark::OnPath;
        while let Some(&mut (node, ref mut edge)) = path.last_mut() {
            let Some(&(target, pos)) = waits[node].get(*edge) else {
                mark[node] = Mark::Done;
                path.pop();
                continue;
            };
            *edge += 1;
            match mark[target] {
                Mark::New => {
                    mark[target] = Mark::OnPath;
                    path.push((target, 0));
                }
                Mark::OnPath if reported < MAX_CYCLE_REPORTS => {
                    reported += 1;
                    let from = path.iter().position(|&(n, _)| n == target).unwrap_or(0);
                    let mut chain: Vec<&str> = path[from..]
                        .iter()
                        .map(|&(n, _)| agents[n].spec.id.as_str())
                        .collect();
                    chain.push(agents[target].spec.id.as_str());
                    diags
                        .error(
                            "dependency-cycle",
                            &agents[node].spec.source,
                            pos,
                            format!("dependency cycle: {}", chain.join(" → ")),
                        )
                        .hint = Some("each agent waits for the next (wait_for.agents, or requires ↔ creates); break the cycle, or model the loop with `next` in workflow.yaml".into());
                }
                Mark::OnPath | Mark::Done => {}
            }
        }
    }
}

/// The `default` flow of a project without workflow.yaml.
pub fn derived_flow(layers: Vec<Vec<String>>) -> FlowSpec {
    FlowSpec {
        name: DEFAULT_FLOW.to_string(),
        description: "Derived from the agents' dependencies (wait_for.agents, requires ↔ creates)"
            .into(),
        source: "derived".into(),
        steps: layers
            .into_iter()
            .enumerate()
            .map(|(i, agents)| StepSpec {
                id: format!("step-{}", i + 1),
                agents,
                next: BTreeMap::new(),
                creates: Vec::new(),
                requires: Vec::new(),
                updates: Vec::new(),
                gate: None,
                metadata: BTreeMap::new(),
            })
            .collect(),
        max_visits: DEFAULT_MAX_VISITS,
        metadata: BTreeMap::new(),
    }
}
