//! Stateless single-agent execution and readiness checks.
//!
//! `execute` runs one agent on documents the caller supplies, without
//! touching the document store or memory: the answer is a structured
//! envelope (see [`crate::reply`]) validated against the agent's
//! `output_schema`, with one repair attempt: the same conversation code as
//! a flow's agents ([`crate::conversation`]), retrying failed calls itself. If a required document is
//! absent from the request the answer is `needs_input`, at once, without an
//! LLM call. An LLM that fails after its retries gives `failed` with the
//! provider's reason — never `completed`.

use crate::canonical::canonical_hash;
use crate::conversation::{
    Conversation, ConversationError, MAX_TOOL_ROUNDS, Retries, envelope_instructions,
    truncated_message,
};
use crate::core::Core;
use crate::error::EngineError;
use crate::llm::{LlmRequest, Message};
use crate::outcome::{ExecuteMetadata, ExecuteOutcome, ExecuteRequest, ExecuteStatus, Readiness};
use crate::run::elapsed_ms;
use crate::store::doc_id;
use crate::usage::UsageTotals;
use bmad2pf_compiler::config::ReplayMode;
use bmad2pf_compiler::prompt::RunInputs;
use std::collections::BTreeMap;
use std::time::Instant;

/// Looks a supplied document up by the name as written, or with/without `.md`.
fn supplied<'a>(
    documents: &'a BTreeMap<String, String>,
    key: &str,
    name: &str,
) -> Option<&'a String> {
    let stem = |s: &str| s.strip_suffix(".md").unwrap_or(s).to_string();
    documents
        .get(key)
        .or_else(|| documents.get(name))
        .or_else(|| {
            documents
                .iter()
                .find(|(k, _)| stem(k) == stem(name))
                .map(|(_, v)| v)
        })
}

pub(crate) async fn execute(
    core: &Core,
    agent_id: &str,
    request: ExecuteRequest,
) -> Result<ExecuteOutcome, EngineError> {
    let started = Instant::now();
    let agent = core
        .agent(agent_id)
        .ok_or_else(|| EngineError::UnknownAgent(agent_id.to_string()))?;
    let execution_id = request
        .execution_id
        .clone()
        .unwrap_or_else(|| format!("exec-{}", hex::encode(rand::random::<[u8; 8]>())));
    let llm = core.llm_for(agent).map_err(EngineError::Config)?;
    let input_hash = hash_request(agent_id, &request);
    let mut metadata = ExecuteMetadata {
        agent_id: agent_id.to_string(),
        execution_id,
        provider: llm.provider.name().to_string(),
        model: llm.model.clone(),
        usage: UsageTotals::default(),
        input_hash,
        cached: core.config.replay.mode == ReplayMode::Replay,
        error: None,
    };
    let outcome = |status,
                   content: String,
                   summary: String,
                   missing: Vec<String>,
                   metadata: ExecuteMetadata| ExecuteOutcome {
        status,
        content,
        summary,
        missing_inputs: missing,
        metadata,
        execution_time_ms: elapsed_ms(started),
    };

    let mut docs = BTreeMap::new();
    let mut missing = Vec::new();
    for (key, name) in core.required_documents(agent, &[]) {
        match supplied(&request.documents, &key, &name) {
            Some(content) => {
                docs.insert(key, content.clone());
            }
            None => missing.push(name),
        }
    }
    if !missing.is_empty() {
        let summary = format!("missing inputs: {}", missing.join(", "));
        return Ok(outcome(
            ExecuteStatus::NeedsInput,
            String::new(),
            summary,
            missing,
            metadata,
        ));
    }
    for (name, content) in &request.documents {
        docs.entry(name.clone()).or_insert_with(|| content.clone());
    }

    let memory = BTreeMap::new();
    let context = serde_json::Value::Object(request.context_data.clone());
    let inputs = RunInputs {
        input: &request.instruction,
        story_id: "",
        docs: &docs,
        memory: &memory,
        context: &context,
        steps: None,
        feedback: "",
    };
    let system = match core
        .prompt(agent_id)
        .and_then(|p| p.render(&inputs).map_err(|e| e.to_string()))
    {
        Ok(text) => text,
        Err(message) => {
            metadata.error = Some(message);
            return Ok(outcome(
                ExecuteStatus::Failed,
                String::new(),
                "the prompt could not be rendered".into(),
                Vec::new(),
                metadata,
            ));
        }
    };
    let first = format!(
        "{}\n\n{}",
        request.instruction.trim(),
        envelope_instructions(agent.output_schema.as_ref())
    );
    let llm_request = LlmRequest {
        model: llm.model.clone(),
        system: Some(system),
        messages: vec![Message::User(first)],
        temperature: llm.temperature,
        max_tokens: llm.max_tokens,
        tools: Vec::new(),
        json_output: true,
        output_schema: agent.output_schema.clone(),
    };

    let mut conversation =
        Conversation::new(core, &llm, &llm_request, Retries::InCall, agent_id, None);
    let reply = match conversation.exchange().await {
        Ok(text) => {
            conversation
                .structured_reply(&text, agent.output_schema.as_ref())
                .await
        }
        Err(error) => Err(error),
    };
    metadata.usage = conversation.usage;
    let (summary, error) = match reply {
        Ok(envelope) => {
            return Ok(outcome(
                ExecuteStatus::Completed,
                envelope.content,
                envelope.summary,
                Vec::new(),
                metadata,
            ));
        }
        Err(ConversationError::Llm(error)) => (
            format!("the LLM call failed: {}", error.code()),
            error.to_string(),
        ),
        Err(ConversationError::Truncated { cutoff, max_tokens }) => (
            "the reply was cut off before it was complete".to_string(),
            truncated_message(cutoff, max_tokens),
        ),
        Err(ConversationError::InvalidOutput { problem }) => (
            "the reply was not valid structured output after one repair attempt".to_string(),
            problem,
        ),
        // Stateless execute has no budget, so nothing stops its calls.
        Err(ConversationError::Stopped) => (
            "the call was stopped".to_string(),
            "the conversation was stopped before its next call".to_string(),
        ),
        // Execute offers no tools and answers headless: it never waits for a person.
        Err(ConversationError::Asked(asked)) => (
            "the model asked a person, which a stateless execute cannot wait for".to_string(),
            format!("ask_human: {}", asked.question.prompt),
        ),
        Err(ConversationError::ToolUnavailable(why)) => {
            ("a tool the model called is unavailable".to_string(), why)
        }
        Err(ConversationError::ToolLoopLimit) => (
            "the model kept calling tools".to_string(),
            format!("the model kept calling tools after {MAX_TOOL_ROUNDS} rounds"),
        ),
    };
    metadata.error = Some(error);
    Ok(outcome(
        ExecuteStatus::Failed,
        String::new(),
        summary,
        Vec::new(),
        metadata,
    ))
}

/// What a stateless answer is derived from, hashed canonically: the same
/// request with its `context_data` keys in another order hashes the same.
fn hash_request(agent_id: &str, request: &ExecuteRequest) -> String {
    canonical_hash(&serde_json::json!({
        "agent": agent_id,
        "instruction": request.instruction,
        "documents": request.documents,
        "context": request.context_data,
    }))
}

pub(crate) async fn readiness(
    core: &Core,
    agent_id: &str,
    story_id: &str,
) -> Result<Readiness, EngineError> {
    let agent = core
        .agent(agent_id)
        .ok_or_else(|| EngineError::UnknownAgent(agent_id.to_string()))?;
    let exists = |name: String| async move {
        let id = doc_id(story_id, &name).map_err(|e| EngineError::InvalidRequest {
            field: "story_id",
            message: e.to_string(),
        })?;
        Ok::<bool, EngineError>(core.docs.meta(&id).await?.is_some())
    };
    let mut missing_docs = Vec::new();
    for name in agent.requires.iter().chain(&agent.wait_for.docs) {
        if !exists(name.clone()).await? {
            missing_docs.push(name.clone());
        }
    }
    let mut missing_agents = Vec::new();
    for upstream in &agent.wait_for.agents {
        let outputs = core
            .agent(upstream)
            .map(|a| a.outputs())
            .unwrap_or_default();
        for name in outputs {
            if !exists(name).await? {
                missing_agents.push(upstream.clone());
                break;
            }
        }
    }
    // The latest status any run of this story recorded for the agent.
    let mut last_execution = None;
    for workflow in core.status.list().await? {
        if workflow.story_id.as_deref() != Some(story_id) || !workflow.agents.contains_key(agent_id)
        {
            continue;
        }
        if let Some(status) = core.status.get(&workflow.workflow_id).await? {
            let at = status
                .agent_statuses
                .get(agent_id)
                .and_then(|s| s.last_execution);
            last_execution = last_execution.max(at);
        }
    }
    Ok(Readiness {
        agent: agent_id.to_string(),
        ready: missing_docs.is_empty() && missing_agents.is_empty(),
        missing_docs,
        missing_agents,
        last_execution,
    })
}
