//! How long a story id may be for one flow or one agent.
//!
//! A story id may have up to 200 characters on its own, but it prefixes the
//! ids the engine makes from it: document ids `{story}__{name}` must fit in
//! 200 characters too, and an isolated memory scope needs `agent + story`
//! within 240 (see `store::ids`). A story id that is valid but too long for
//! one of those used to start a run that failed half-way (or a readiness
//! check that failed on its first document).
//!
//! The rule: a request is refused up front, before anything runs or is
//! written, when its story id is longer than the tightest limit among the
//! ids it would make —
//! - a run of a flow: every document each step's agents would read or write
//!   (required, `wait_for`, `reads`, `creates` and `updates`, the step's own
//!   included, or the default output of an agent that names none) and the
//!   isolated memory scope of each of its agents;
//! - a readiness check of an agent: the same for that agent alone, without
//!   any step, so that a story it calls ready could also be run.
//!
//! Limits are computed once per bundle, when the engine starts. A flow or
//! agent whose names are all short enough has no limit beyond the story id
//! rule itself.

use crate::core::{Core, output_documents};
use crate::error::EngineError;
use crate::store::ids::{MAX_ID_LEN, MAX_ISOLATED_LEN};
use bmad2pf_compiler::bundle::{AgentSpec, FlowSpec, MemoryScope, StepSpec};

/// Between the story and the name in a document id.
const DOC_SEPARATOR: &str = "__";

/// The tightest limit on story ids for a flow or an agent, and what sets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoryLimit {
    /// Longest story id accepted, in characters.
    pub max_len: usize,
    /// What the limit comes from, for the error message.
    pub bound_by: Bound,
}

/// The id that sets a [`StoryLimit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Bound {
    /// A document of this name (without `.md`).
    Document(String),
    /// The isolated memory scope of this agent.
    MemoryScope(String),
}

impl StoryLimit {
    /// Refuses `story_id` when it is longer than the limit; `of` names the
    /// flow or agent for the message ("flow `brief`").
    pub fn check(limit: Option<&Self>, of: &str, story_id: &str) -> Result<(), EngineError> {
        match limit {
            Some(limit) if story_id.len() > limit.max_len => Err(EngineError::StoryIdTooLong {
                len: story_id.len(),
                max_len: limit.max_len,
                of: of.to_string(),
                too_long_for: match &limit.bound_by {
                    Bound::Document(name) => format!(
                        "document `{name}` (its id `{{story_id}}{DOC_SEPARATOR}{name}` must fit in {MAX_ID_LEN} characters)"
                    ),
                    Bound::MemoryScope(agent) => format!(
                        "the isolated memory of agent `{agent}` (agent and story ids together must fit in {MAX_ISOLATED_LEN} characters)"
                    ),
                },
            }),
            _ => Ok(()),
        }
    }

    /// The limit of a run of `flow`.
    pub fn of_flow(core: &Core, flow: &FlowSpec) -> Option<Self> {
        let tightest = flow.steps.iter().flat_map(|step| {
            step.agents
                .iter()
                .filter_map(|id| core.agent(id))
                .filter_map(move |agent| Self::of_agent_in(core, agent, Some(step)))
        });
        tightest.min_by_key(|limit| limit.max_len)
    }

    /// The limit of a readiness check of `agent` (the agent without a step).
    pub fn of_agent(core: &Core, agent: &AgentSpec) -> Option<Self> {
        Self::of_agent_in(core, agent, None)
    }

    fn of_agent_in(core: &Core, agent: &AgentSpec, step: Option<&StepSpec>) -> Option<Self> {
        let step_requires: &[String] = step.map_or(&[], |step| &step.requires);
        let writes = output_documents(agent, step);
        let reads = core
            .required_documents(agent, step_requires)
            .into_iter()
            .map(|(_, name)| name)
            .chain(agent.reads.iter().cloned());
        let documents = writes.into_iter().chain(reads).map(|name| {
            let stem = name.strip_suffix(".md").unwrap_or(&name).to_string();
            Self {
                max_len: MAX_ID_LEN.saturating_sub(DOC_SEPARATOR.len() + stem.len()),
                bound_by: Bound::Document(stem),
            }
        });
        let scope = matches!(agent.memory_scope, MemoryScope::Isolated).then(|| Self {
            max_len: MAX_ISOLATED_LEN.saturating_sub(agent.id.len()),
            bound_by: Bound::MemoryScope(agent.id.clone()),
        });
        documents
            .chain(scope)
            .filter(|limit| limit.max_len < MAX_ID_LEN)
            .min_by_key(|limit| limit.max_len)
    }
}
