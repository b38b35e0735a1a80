//! Approval gates on workflow steps (SPEC 8.3): a person approves a step
//! before its agents start, or its output once they are done.
//!
//! A gate is a node of the step's graph, before its first group of agents
//! or after its last. A headless run approves it at once and lists the
//! question in `open_questions`. An interactive run opens an `approve`
//! interrupt and stops there; the resume that answers it brings the
//! decision back to the same node, which the run reaches again as the same
//! visit of the step:
//! - approval goes on (before: the agents run; after: the step's action is
//!   kept);
//! - rejection goes to `on_reject`, or else, before, ends the run
//!   `cancelled` / `approval_rejected`, or, after, runs the step again with
//!   the person's feedback in its agents' input and as `{{ feedback }}`
//!   (a new visit, so `max_visits` bounds it).
//!
//! An after gate asks only once every agent of the step finished in this
//! visit (completed, up to date, or a fallback): with an agent failed or
//! waiting for documents there is nothing to approve yet.

use super::graph::HALT;
use super::{Halt, RunState};
use crate::core::Core;
use crate::failure::HaltCode;
use crate::outcome::{AgentRunStatus, RunEvent};
use crate::runs::RunMode;
use crate::runs::interrupts::{Interrupt, InterruptKind, InterruptSource, OpenQuestion, Question};
use bmad2pf_compiler::bundle::{GateWhen, StepGate, StepSpec};
use pocketflow::Action;
use serde::{Deserialize, Serialize};

/// What a headless run proceeds on at a gate: `assumed` of its open question.
const HEADLESS_APPROVAL: &str = "approved";
use std::collections::BTreeMap;
use std::sync::Arc;

/// The action of a step whose gate was rejected: to `on_reject`, or (an
/// after gate without one) to the step itself.
pub(super) const REJECTED: &str = "gate:rejected";

/// A gate waiting for a person, as the checkpoint keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OpenGate {
    pub interrupt_id: String,
    pub step: String,
    pub when: GateWhen,
}

/// A person's decision on a gate, brought by a resume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GateDecision {
    pub interrupt_id: String,
    pub approved: bool,
    /// With a rejection: what to change (may be empty).
    pub feedback: String,
}

/// What a run knows about its gates.
#[derive(Debug, Default)]
pub(crate) struct Gates {
    /// The gate waiting for a decision.
    pub open: Option<OpenGate>,
    /// A decision for the gate it names, applied when the run reaches it.
    pub decided: Option<(OpenGate, GateDecision)>,
    /// Set by a rejected gate, for its step to route by [`REJECTED`].
    pub rejected: bool,
    /// Step id → a person's feedback on the step's last output, read by its
    /// agents in the step's next visit.
    pub feedback: BTreeMap<String, String>,
}

impl Gates {
    /// Takes the decision waiting for the gate `when` of `step`.
    fn take_decision(&mut self, step: &str, when: GateWhen) -> Option<GateDecision> {
        match &self.decided {
            Some((gate, _)) if gate.step == step && gate.when == when => {
                self.decided.take().map(|(_, decision)| decision)
            }
            _ => None,
        }
    }
}

/// The gate of one step, on one side of its agents: its graph node is a
/// decision ([`GateNode::decide`]).
pub(super) struct GateNode {
    core: Arc<Core>,
    step: StepSpec,
    gate: StepGate,
}

impl GateNode {
    pub fn new(core: &Arc<Core>, step: &StepSpec, gate: &StepGate) -> Self {
        Self {
            core: core.clone(),
            step: step.clone(),
            gate: gate.clone(),
        }
    }

    fn prompt(&self) -> String {
        match (&self.gate.prompt, self.gate.when) {
            (Some(prompt), _) => prompt.clone(),
            (None, GateWhen::Before) => format!("Approve running step `{}`?", self.step.id),
            (None, GateWhen::After) => format!("Approve the output of step `{}`?", self.step.id),
        }
    }

    /// Whom the interrupt names: the step's first agent, or the step itself
    /// for a step without agents (a person's own step).
    fn agent(&self) -> String {
        self.step
            .agents
            .first()
            .unwrap_or(&self.step.id)
            .to_string()
    }

    /// Whether every agent of the step finished in this visit with
    /// something to approve.
    fn step_finished(&self, state: &RunState) -> bool {
        self.step.agents.iter().all(|id| {
            state.step_done.contains(id)
                && state.results.get(id).is_some_and(|r| {
                    matches!(
                        r.status,
                        AgentRunStatus::Completed
                            | AgentRunStatus::Skipped
                            | AgentRunStatus::Fallback
                    )
                })
        })
    }

    /// The documents the step's agents wrote (their results' documents).
    fn documents(&self, state: &RunState) -> Vec<String> {
        self.step
            .agents
            .iter()
            .filter_map(|id| state.results.get(id)?.document.clone())
            .collect()
    }

    pub fn decide(&self, state: &mut RunState) -> Action {
        if state.halted.is_some() || !state.waiting.is_empty() || state.gates.open.is_some() {
            return Action::new(HALT);
        }
        if let Some(decision) = state.gates.take_decision(&self.step.id, self.gate.when) {
            return self.apply(state, decision);
        }
        if self.gate.when == GateWhen::After && !self.step_finished(state) {
            return Action::DEFAULT;
        }
        match state.ctx.mode {
            RunMode::Headless => {
                state.ctx.assumed(OpenQuestion {
                    agent: self.agent(),
                    step: Some(self.step.id.clone()),
                    kind: InterruptKind::Approve,
                    prompt: self.prompt(),
                    options: None,
                    assumed: Some(HEADLESS_APPROVAL.to_string()),
                });
                Action::DEFAULT
            }
            RunMode::Interactive => {
                self.ask(state);
                Action::new(HALT)
            }
        }
    }

    /// Opens the gate's interrupt: the run stops once this step is left.
    fn ask(&self, state: &mut RunState) {
        let question = Question {
            kind: InterruptKind::Approve,
            prompt: self.prompt(),
            options: None,
            assume: None,
        };
        let mut interrupt = Interrupt::open(
            &self.agent(),
            &self.step.id,
            question,
            InterruptSource::Gate,
        );
        if self.gate.when == GateWhen::After {
            interrupt.documents = Some(self.documents(state));
        }
        self.core.counters.interrupt_opened(interrupt.kind);
        state.gates.open = Some(OpenGate {
            interrupt_id: interrupt.id.clone(),
            step: self.step.id.clone(),
            when: self.gate.when,
        });
        state
            .ctx
            .emit(RunEvent::Interrupt(Box::new(interrupt.clone())));
        state.interrupts.push(interrupt);
    }

    /// Applies a person's decision (module docs).
    fn apply(&self, state: &mut RunState, decision: GateDecision) -> Action {
        let step = &self.step.id;
        if decision.approved {
            state.gates.feedback.remove(step);
            return Action::DEFAULT;
        }
        match (&self.gate.on_reject, self.gate.when) {
            (Some(_), _) => state.gates.rejected = true,
            (None, GateWhen::After) => {
                state.gates.rejected = true;
                state.gates.feedback.insert(step.clone(), decision.feedback);
            }
            (None, GateWhen::Before) => {
                let why = match decision.feedback.trim() {
                    "" => String::new(),
                    feedback => format!(": {feedback}"),
                };
                state.halted = Some(Halt::new(
                    HaltCode::ApprovalRejected,
                    format!("step `{step}` was not approved{why}"),
                ));
            }
        }
        Action::new(HALT)
    }
}
