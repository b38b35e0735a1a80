//! Turning a bundle flow into a PocketFlow graph (done once, at engine start).
//!
//! ```text
//! flow:  [step] --action--> [step] --…--> [end]
//! step:  [visit guard] -> [gate]? -> [group] -> [group] … -> [gate]?   (a nested flow)
//! group: BatchFlow / ParallelBatchFlow over the group's agents,
//!        each set running [router] --agent id--> [agent node]
//! ```
//!
//! A step's agents are split into groups of consecutive agents with the
//! same `parallel` flag: a group of parallel agents runs concurrently (a
//! ParallelBatchFlow; `server.max_parallel_agents` bounds LLM calls
//! engine-wide), other agents run one after another (a BatchFlow). The
//! router sends each param set (`{"agent": id}`) to that agent's node.
//!
//! Routing between steps: every action an agent of the step can return (its
//! commands and `default`) gets an edge — to the step `next` names, to the
//! end for `end`, otherwise to the following step. A step's action is the
//! first non-default action returned by its agents, in the order the step
//! lists them. A step about to run for the (max_visits + 1)-th time halts
//! the run with `loop_limit`; a halted run takes the `halt` edge to the end,
//! and so does a step after which a question waits for a person (the run
//! is then `interrupted`). A resumed run starts at an entry node that
//! routes it to the step it stopped in, which it enters again as the same
//! visit; the agents of a group start only while no question is open,
//! except those continuing with their answer. A step with an approval gate
//! ([`super::gate`]) gets the gate's node before or after its groups, and
//! a `gate:rejected` edge to `on_reject` (or, for an after gate without
//! one, back to itself).

use super::agent::AgentNode;
use super::gate::{GateNode, REJECTED};
use super::{Halt, RunState};
use crate::core::Core;
use crate::failure::HaltCode;
use crate::reply::DEFAULT_ACTION;
use crate::store::DocStore;
use bmad2pf_compiler::bundle::{END_STEP, FlowSpec, GateWhen, StepSpec};
use bmad2pf_compiler::config::OnMissingDoc;
use pocketflow::{
    Action, BatchFlow, Flow, Node, NodeError, NodeId, ParallelBatchFlow, ParamSets, Params,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// The action a halted step returns; it leads to the end.
pub(super) const HALT: &str = "halt";

/// Builds the graph of `flow`.
pub(crate) fn build_flow(core: &Arc<Core>, flow: &FlowSpec) -> Flow<RunState> {
    let shared = FlowShared::of(flow);
    let mut graph = Flow::named(flow.name.clone());
    let entry = graph.add(resume_entry());
    let steps: Vec<_> = flow
        .steps
        .iter()
        .map(|step| graph.add_runnable(build_step(core, step, flow.max_visits, &shared)))
        .collect();
    let end = graph.add(end());
    graph.next(entry, steps.first().copied().unwrap_or(end));
    for (step, &node) in flow.steps.iter().zip(&steps) {
        graph.on(entry, resume_action(&step.id), node);
    }
    let index: HashMap<&str, usize> = flow
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.as_str(), i))
        .collect();
    for (i, step) in flow.steps.iter().enumerate() {
        let following = steps.get(i + 1).copied().unwrap_or(end);
        let mut actions: BTreeSet<String> = step
            .agents
            .iter()
            .filter_map(|id| core.agent(id))
            .flat_map(|agent| agent.commands.iter().map(|c| c.name.clone()))
            .collect();
        actions.insert(DEFAULT_ACTION.to_string());
        actions.extend(step.next.keys().cloned());
        let step_node = |id: &str| match id {
            END_STEP => end,
            id => index
                .get(id)
                .and_then(|&j| steps.get(j).copied())
                .unwrap_or(end),
        };
        for action in actions {
            let target = match step.next.get(&action) {
                Some(id) => step_node(id),
                None => following,
            };
            graph.on(steps[i], action, target);
        }
        if let Some(gate) = &step.gate {
            let rejected_to = match (&gate.on_reject, gate.when) {
                (Some(id), _) => Some(step_node(id)),
                (None, GateWhen::After) => Some(steps[i]),
                // The gate ends the run itself.
                (None, GateWhen::Before) => None,
            };
            if let Some(target) = rejected_to {
                graph.on(steps[i], REJECTED, target);
            }
        }
        graph.on(steps[i], HALT, end);
    }
    graph
}

/// What the agents of a flow share from its metadata (BMAD flows, SPEC 1.7).
pub(crate) struct FlowShared {
    /// The document a step-file flow grows step by step ([`super::growing`]).
    pub growing: Option<String>,
    /// The files `read_resource` reads, path → content.
    pub resources: Arc<BTreeMap<String, String>>,
    /// A skill with a headless contract (flow metadata `headless_contract`,
    /// SPEC 1.7): run headless, it is told so and ends with a closing
    /// report ([`super::closing_report`]).
    pub headless_contract: bool,
    /// Whether the flow runs more than one agent: then each agent that
    /// completes saves the run's progress ([`super::save_progress`]); with
    /// one, its completion and the run's end are stored together anyway.
    pub several_agents: bool,
}

impl FlowShared {
    fn of(flow: &FlowSpec) -> Self {
        let metadata = &flow.metadata;
        let growing = match metadata.get("kind").and_then(|k| k.as_str()) {
            Some("step-file") => metadata
                .get("main_document")
                .and_then(|n| n.as_str())
                .map(str::to_string),
            _ => None,
        };
        Self {
            growing,
            headless_contract: metadata
                .get("headless_contract")
                .and_then(|c| c.as_bool())
                .unwrap_or(false),
            resources: Arc::new(resources_of(metadata)),
            several_agents: flow.steps.iter().map(|s| s.agents.len()).sum::<usize>() > 1,
        }
    }
}

/// The files of a flow's or agent's metadata `resources` (SPEC 1.7), path → content.
pub(crate) fn resources_of(
    metadata: &BTreeMap<String, serde_json::Value>,
) -> BTreeMap<String, String> {
    metadata
        .get("resources")
        .and_then(|r| r.as_object())
        .map(|files| {
            files
                .iter()
                .filter_map(|(path, text)| Some((path.clone(), text.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

fn build_step(
    core: &Arc<Core>,
    step: &StepSpec,
    max_visits: u32,
    shared: &FlowShared,
) -> Flow<RunState> {
    let agents = step.agents.clone();
    let mut graph = Flow::named(step.id.clone()).with_post(
        move |state: &mut RunState, _: &Params, _last: Action| {
            if state.halted.is_some() || !state.waiting.is_empty() || state.gates.open.is_some() {
                return Ok(Action::new(HALT));
            }
            if std::mem::take(&mut state.gates.rejected) {
                return Ok(Action::new(REJECTED));
            }
            let chosen = agents
                .iter()
                .filter_map(|id| state.actions.get(id))
                .find(|action| action.as_str() != DEFAULT_ACTION)
                .cloned()
                .unwrap_or_else(|| DEFAULT_ACTION.to_string());
            Ok(Action::new(chosen))
        },
    );
    let guard = graph.add(visit_guard(step.id.clone(), max_visits));
    let end = graph.add(end());
    graph.on(guard, HALT, end);
    let mut previous = guard;
    let gate = |graph: &mut Flow<RunState>, previous: NodeId, when: GateWhen| {
        let gate = step.gate.as_ref().filter(|g| g.when == when)?;
        let gate = GateNode::new(core, step, gate);
        let node = graph.add(Decide {
            name: "gate",
            decide: move |state: &mut RunState, _: &Params| Ok(gate.decide(state)),
        });
        graph.next(previous, node);
        graph.on(node, HALT, end);
        Some(node)
    };
    previous = gate(&mut graph, previous, GateWhen::Before).unwrap_or(previous);
    if step.agents.is_empty() {
        let human = graph.add(HumanStep {
            core: core.clone(),
            step: step.clone(),
        });
        graph.next(previous, human);
        gate(&mut graph, human, GateWhen::After);
        return graph;
    }
    for group in groups(core, step) {
        let mut dispatch = Flow::named(format!("{}:dispatch", step.id));
        let router = dispatch.add(router());
        for id in &group.agents {
            if let Some(agent) = core.agent(id) {
                let node = dispatch.add(AgentNode::new(
                    core.clone(),
                    agent.clone(),
                    step.clone(),
                    shared,
                ));
                dispatch.on(router, id.clone(), node);
            }
        }
        let sets = AgentSets(group.agents.clone());
        let member = if group.parallel && group.agents.len() > 1 {
            graph.add_runnable(ParallelBatchFlow::new(dispatch, sets))
        } else {
            graph.add_runnable(BatchFlow::new(dispatch, sets))
        };
        graph.next(previous, member);
        previous = member;
    }
    gate(&mut graph, previous, GateWhen::After);
    graph
}

struct Group {
    parallel: bool,
    agents: Vec<String>,
}

/// Consecutive agents with the same `parallel` flag.
fn groups(core: &Core, step: &StepSpec) -> Vec<Group> {
    let mut out: Vec<Group> = Vec::new();
    for id in &step.agents {
        let parallel = core.agent(id).is_some_and(|a| a.parallel);
        match out.last_mut() {
            Some(group) if group.parallel == parallel => group.agents.push(id.clone()),
            _ => out.push(Group {
                parallel,
                agents: vec![id.clone()],
            }),
        }
    }
    out
}

/// One param set per agent of a group.
struct AgentSets(Vec<String>);

impl ParamSets<RunState> for AgentSets {
    /// While a question is open, only the agents continuing with an answer
    /// start: the others need what the asking agent will write.
    async fn prep(&self, state: &RunState, _params: &Params) -> Result<Vec<Params>, NodeError> {
        let waiting = !state.waiting.is_empty();
        Ok(self
            .0
            .iter()
            .filter(|id| !waiting || state.resuming.contains_key(*id))
            .map(|id| Params::from([("agent".to_string(), serde_json::Value::String(id.clone()))]))
            .collect())
    }
}

/// A step without agents (a human action in a BMAD workflow): it waits for
/// its `requires` documents per `on_missing_doc`.
struct HumanStep {
    core: Arc<Core>,
    step: StepSpec,
}

impl Node<RunState> for HumanStep {
    type Prep = Vec<String>;
    type Exec = ();

    fn name(&self) -> &str {
        "human-step"
    }

    async fn prep(&self, state: &RunState, _params: &Params) -> Result<Vec<String>, NodeError> {
        let mut missing = Vec::new();
        for name in &self.step.requires {
            let Ok(id) = crate::store::doc_id(&state.ctx.story_id, name) else {
                continue;
            };
            if state.ctx.docs.meta(&id).await?.is_none() {
                missing.push(name.clone());
            }
        }
        Ok(missing)
    }

    async fn exec(&self, _prep: &Vec<String>) -> Result<(), NodeError> {
        Ok(())
    }

    async fn post(
        &self,
        state: &mut RunState,
        _params: &Params,
        missing: Vec<String>,
        _exec: (),
    ) -> Result<Action, NodeError> {
        if missing.is_empty() {
            return Ok(Action::DEFAULT);
        }
        match self.core.config.on_missing_doc {
            OnMissingDoc::Wait => state.pending_docs.extend(missing),
            OnMissingDoc::Skip => {}
            OnMissingDoc::Error => {
                state.errors.insert(
                    format!("step:{}", self.step.id),
                    format!("dependency_missing: {}", missing.join(", ")),
                );
            }
        }
        Ok(Action::DEFAULT)
    }
}

/// A node whose whole work is a decision in post: routing, counting, ending.
struct Decide<F> {
    name: &'static str,
    decide: F,
}

impl<F> Node<RunState> for Decide<F>
where
    F: Fn(&mut RunState, &Params) -> Result<Action, NodeError> + Send + Sync,
{
    type Prep = ();
    type Exec = ();

    fn name(&self) -> &str {
        self.name
    }

    async fn prep(&self, _state: &RunState, _params: &Params) -> Result<(), NodeError> {
        Ok(())
    }

    async fn exec(&self, _prep: &()) -> Result<(), NodeError> {
        Ok(())
    }

    async fn post(
        &self,
        state: &mut RunState,
        params: &Params,
        _prep: (),
        _exec: (),
    ) -> Result<Action, NodeError> {
        (self.decide)(state, params)
    }
}

/// Where every flow ends: a node without successors.
fn end() -> Decide<impl Fn(&mut RunState, &Params) -> Result<Action, NodeError> + Send + Sync> {
    Decide {
        name: "end",
        decide: |_: &mut RunState, _: &Params| Ok(Action::DEFAULT),
    }
}

/// Routes a param set (`{"agent": id}`) to that agent's node.
fn router() -> Decide<impl Fn(&mut RunState, &Params) -> Result<Action, NodeError> + Send + Sync> {
    Decide {
        name: "router",
        decide: |_: &mut RunState, params: &Params| {
            params
                .get("agent")
                .and_then(|v| v.as_str())
                .map(|id| Action::new(id.to_string()))
                .ok_or_else(|| NodeError::from("router: no agent in params"))
        },
    }
}

/// The action that takes a resumed run to step `step`.
fn resume_action(step: &str) -> String {
    format!("resume:{step}")
}

/// Where every run starts: a resumed run goes to the step it stopped in,
/// others to the first step.
fn resume_entry()
-> Decide<impl Fn(&mut RunState, &Params) -> Result<Action, NodeError> + Send + Sync> {
    Decide {
        name: "resume-entry",
        decide: |state: &mut RunState, _: &Params| {
            Ok(match &state.resume_step {
                Some(step) => Action::new(resume_action(step)),
                None => Action::DEFAULT,
            })
        },
    }
}

/// Counts a step's visits and halts the run on the (max_visits + 1)-th.
/// A resumed run entering the step it stopped in continues that visit.
fn visit_guard(
    step: String,
    max_visits: u32,
) -> Decide<impl Fn(&mut RunState, &Params) -> Result<Action, NodeError> + Send + Sync> {
    Decide {
        name: "visit-guard",
        decide: move |state: &mut RunState, _: &Params| {
            if state.halted.is_some() {
                return Ok(Action::new(HALT));
            }
            if state.resume_step.as_deref() == Some(step.as_str()) {
                state.resume_step = None;
                state.ctx.log.enter_step(&step);
                return Ok(Action::DEFAULT);
            }
            state.step_done.clear();
            let visits = state.visits.entry(step.clone()).or_insert(0);
            if *visits >= max_visits {
                state.halted = Some(Halt::new(
                    HaltCode::LoopLimit,
                    format!(
                        "step `{step}` was about to run a {}th time (max_visits is {max_visits})",
                        max_visits + 1
                    ),
                ));
                return Ok(Action::new(HALT));
            }
            *visits += 1;
            state.ctx.log.enter_step(&step);
            Ok(Action::DEFAULT)
        },
    }
}
