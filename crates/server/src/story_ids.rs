//! The one limit on story ids that the server documents for a bundle, and
//! the check that holds the routes to it.
//!
//! The engine holds a limit per flow and per agent (its `story_limit`): a
//! story id must leave room for the longest document name it prefixes. The
//! OpenAPI document cannot give a limit per flow or agent (a schema cannot
//! depend on which flow the story id is sent with), so it gives the
//! smallest of them all, and the routes that take a story id
//! (`POST /run`, `POST /runs`, `GET /agent/{id}/ready`) refuse a longer
//! one even where the flow or agent alone would take it: every story id
//! the document allows is accepted, and no other. The engine checks first,
//! so a story id too long for the flow's own documents is refused with the
//! engine's message, which names the document.

use crate::error::ApiError;
use crate::state::AppState;
use bmad2pf_compiler::bundle::{Bundle, MemoryScope};
use bmad2pf_engine::Engine;
use bmad2pf_engine::outcome::RunRequest;
use bmad2pf_engine::store::ids::{MAX_ID_LEN, MAX_ISOLATED_LEN};
use serde_json::json;
use std::sync::Arc;

/// Between the story and the name in a document id.
const DOC_SEPARATOR: &str = "__";

/// The longest story id the routes accept for `bundle`: a story id
/// prefixes the ids of the documents it names (`{story}__{name}`, at most
/// 200 characters) and an isolated memory scope needs agent and story ids
/// within 240 characters together. Every name of the bundle counts, so
/// the limit is at most each flow's and agent's own (the engine's).
pub(crate) fn story_id_limit(bundle: &Bundle) -> usize {
    let agents = bundle.agents.values();
    let agent_names = agents.clone().flat_map(|agent| {
        let named = agent
            .creates
            .iter()
            .chain(&agent.updates)
            .chain(&agent.requires);
        let named = named.chain(&agent.wait_for.docs).chain(&agent.reads);
        named
            .cloned()
            .chain(std::iter::once(agent.default_output()))
    });
    let step_names = bundle.flows.values().flat_map(|flow| {
        flow.steps
            .iter()
            .flat_map(|step| {
                step.creates
                    .iter()
                    .chain(&step.updates)
                    .chain(&step.requires)
            })
            .cloned()
    });
    let documents = agent_names.chain(step_names).map(|name| {
        let stem = name.strip_suffix(".md").unwrap_or(&name).len();
        MAX_ID_LEN.saturating_sub(DOC_SEPARATOR.len() + stem)
    });
    let scopes = agents
        .filter(|agent| matches!(agent.memory_scope, MemoryScope::Isolated))
        .map(|agent| MAX_ISOLATED_LEN.saturating_sub(agent.id.len()));
    documents.chain(scopes).fold(MAX_ID_LEN, usize::min)
}

/// 400 `invalid_id` for a story id longer than `max_len`, the bundle's
/// [`story_id_limit`].
pub(crate) fn check_story_id_length(max_len: usize, story_id: &str) -> Result<(), ApiError> {
    if story_id.len() <= max_len {
        return Ok(());
    }
    let reason = format!(
        "is {} characters long; the agents of this bundle accept story ids of at most {max_len}",
        story_id.len()
    );
    Err(
        ApiError::bad_request("invalid_id", format!("invalid story id: {reason}"))
            .with_details(json!({"kind": "story id", "reason": reason, "max_len": max_len})),
    )
}

/// The engine to start `request` on (`POST /run`, `POST /runs`), once the
/// engine would take it ([`Engine::check_run`]) and its story id is within
/// the bundle's limit.
pub(crate) fn engine_for_run(
    state: &AppState,
    request: &RunRequest,
) -> Result<Arc<Engine>, ApiError> {
    let (engine, story_limit) = state.engine_and_story_limit();
    engine.check_run(request)?;
    check_story_id_length(story_limit, &request.story_id)?;
    Ok(engine)
}
