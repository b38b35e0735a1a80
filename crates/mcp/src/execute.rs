//! `execute_<agent>`: one agent executed statelessly (SPEC 5, `POST
//! /agent/{id}/execute`) on the documents the call supplies; nothing is
//! stored, and questions the agent asks are answered on assumptions
//! (stateless execute is always headless).

use crate::arguments::Arguments;
use crate::errors::refused;
use bmad2pf_engine::Engine;
use bmad2pf_engine::outcome::{ExecuteRequest, ExecuteStatus};
use rmcp::ErrorData as McpError;
use rmcp::model::CallToolResult;
use serde::Deserialize;
use std::collections::BTreeMap;

/// Arguments of `execute_<agent>`.
#[derive(Debug, Deserialize)]
struct ExecuteArguments {
    instruction: String,
    #[serde(default)]
    documents: BTreeMap<String, String>,
    #[serde(default)]
    context_data: serde_json::Map<String, serde_json::Value>,
}

pub async fn execute_agent(
    engine: &Engine,
    agent: &str,
    arguments: Arguments,
) -> Result<CallToolResult, McpError> {
    let arguments: ExecuteArguments = arguments.read()?;
    let request = ExecuteRequest {
        instruction: arguments.instruction,
        documents: arguments.documents,
        context_data: arguments.context_data,
        execution_id: None,
    };
    let outcome = match engine.execute(agent, request).await {
        Ok(outcome) => outcome,
        Err(error) => return refused(error),
    };
    let failed = outcome.status == ExecuteStatus::Failed;
    let value = serde_json::to_value(&outcome).map_err(|e| {
        McpError::internal_error(format!("the answer could not be encoded: {e}"), None)
    })?;
    // A failed execution is the tool failing, which the model should see.
    Ok(if failed {
        CallToolResult::structured_error(value)
    } else {
        CallToolResult::structured(value)
    })
}
