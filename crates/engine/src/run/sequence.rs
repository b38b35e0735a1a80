//! The `sequence` interpreter: an agent whose work is a list of steps
//! (LLM calls, checklist reviews, tool calls, documents) in one conversation.
//!
//! Each step may have a condition and a template, rendered when the step
//! runs since they may read earlier steps' outputs (`steps.<name>`). The
//! latest draft of the agent's document is carried from step to step; a
//! step naming a `document` writes that document beside it. Where the
//! sequence stands is a [`SequenceState`], kept in the run's checkpoint
//! when a step asks a person, so the sequence continues from there.

use super::agent::CallError;
use super::inputs::OwnedInputs;
use crate::conversation::Conversation;
use crate::core::Core;
use crate::failure::AgentErrorCode;
use crate::reply::parse_envelope;
use crate::tools::ToolContext;
use bmad2pf_compiler::bundle::{AgentSpec, SequenceAction};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// A `sequence` step, ready to run.
pub(super) struct PreparedStep {
    name: String,
    action: SequenceAction,
    condition: Option<String>,
    template: Option<String>,
    tool: Option<String>,
    document: Option<String>,
    /// Checklist content for `checklist` steps.
    checklist: Option<String>,
}

/// The steps of `agent`'s sequence, with their checklists looked up.
pub(super) fn prepare_sequence(agent: &AgentSpec) -> Vec<PreparedStep> {
    agent
        .sequence
        .iter()
        .map(|step| PreparedStep {
            name: step.step.clone(),
            action: step.action,
            condition: step.condition.clone(),
            template: step.template.clone(),
            tool: step.tool.clone(),
            document: step.document.clone(),
            checklist: step.checklist.as_ref().and_then(|name| {
                agent
                    .checklists
                    .iter()
                    .find(|c| &c.name == name || c.path.ends_with(name.as_str()))
                    .map(|c| c.content.clone())
            }),
        })
        .collect()
}

/// What a sequence produced.
pub(super) struct SequenceOutput {
    /// The final draft of the agent's own document.
    pub draft: String,
    /// Documents written by `create_document` / `update_document` steps: name → content.
    pub documents: Vec<(String, String)>,
}

/// Where a sequence stands: kept in a checkpoint when a step asks a person.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct SequenceState {
    /// The step to run next (when `asking`, the step that asked).
    next: usize,
    /// The latest draft of the agent's document.
    draft: String,
    /// Each step's output, for `steps.<name>`.
    outputs: BTreeMap<String, String>,
    /// Documents written by `create_document` / `update_document` steps: name → content.
    documents: Vec<(String, String)>,
    /// Whether step `next` stopped mid-exchange to ask a person: it
    /// continues with the answer instead of starting over.
    asking: bool,
}

/// One agent's sequence, run against its inputs.
pub(super) struct SequenceRun<'a> {
    pub core: &'a Core,
    pub agent: &'a AgentSpec,
    pub inputs: &'a OwnedInputs,
    pub tool_ctx: &'a ToolContext,
}

impl SequenceRun<'_> {
    /// Runs `steps` in `conversation` from `state` (the start, or where a
    /// step asked a person), each step adding to it. A step that asks
    /// again stops the sequence with [`CallError::Asked`], carrying where
    /// it stands.
    pub async fn run(
        &self,
        steps: &[PreparedStep],
        conversation: &mut Conversation<'_>,
        mut state: SequenceState,
    ) -> Result<SequenceOutput, CallError> {
        while let Some(step) = steps.get(state.next) {
            let resumed = std::mem::take(&mut state.asking);
            match self.run_step(step, conversation, &mut state, resumed).await {
                Ok(Some(output)) => {
                    state.outputs.insert(step.name.clone(), output);
                }
                Ok(None) => {}
                Err(CallError::Asked(mut suspended)) => {
                    state.asking = true;
                    suspended.sequence = Some(state);
                    return Err(CallError::Asked(suspended));
                }
                Err(error) => return Err(error),
            }
            state.next += 1;
        }
        Ok(SequenceOutput {
            draft: state.draft,
            documents: state.documents,
        })
    }

    /// Runs one step; its output, or `None` when its condition is false.
    /// A `resumed` step was asking a person: the answer is already in the
    /// conversation, so it only continues the exchange.
    async fn run_step(
        &self,
        step: &PreparedStep,
        conversation: &mut Conversation<'_>,
        state: &mut SequenceState,
        resumed: bool,
    ) -> Result<Option<String>, CallError> {
        if resumed {
            let reply = conversation.exchange().await?;
            if step.action == SequenceAction::LlmCall {
                state.draft = reply;
                return Ok(Some(self.readable(&state.draft)));
            }
            return Ok(Some(reply));
        }
        if let Some(condition) = &step.condition {
            let probe = format!("{{% if {condition} %}}yes{{% endif %}}");
            if self.render(&step.name, &probe, &state.outputs)?.trim() != "yes" {
                return Ok(None);
            }
        }
        let text = match &step.template {
            Some(template) => Some(self.render(&step.name, template, &state.outputs)?),
            None => None,
        };
        let output = match step.action {
            SequenceAction::LlmCall => {
                match text {
                    Some(text) => conversation.say(text),
                    None if !conversation.awaits_reply() => {
                        conversation.say(format!("Continue with step `{}`.", step.name));
                    }
                    None => {}
                }
                state.draft = conversation.exchange().await?;
                self.readable(&state.draft)
            }
            SequenceAction::Checklist => {
                let checklist = step.checklist.clone().or(text).unwrap_or_default();
                conversation.say(format!(
                    "Review the work so far against this checklist and list what is missing or wrong.\n\n{checklist}"
                ));
                conversation.exchange().await?
            }
            SequenceAction::ToolCall => {
                let tool = step.tool.as_deref().unwrap_or(&step.name);
                let args: Value = match &text {
                    Some(text) => serde_json::from_str(text).map_err(|e| CallError::Other {
                        code: AgentErrorCode::ToolArguments.into(),
                        message: format!(
                            "sequence step `{}`: tool arguments are not JSON: {e}",
                            step.name
                        ),
                    })?,
                    None => json!({}),
                };
                let output = self
                    .core
                    .tools
                    .call(tool, &args, self.tool_ctx)
                    .await
                    .map_err(|e| CallError::Other {
                        code: AgentErrorCode::ToolFailed.into(),
                        message: format!("sequence step `{}`: tool `{tool}`: {e}", step.name),
                    })?;
                conversation.say(format!("Result of tool `{tool}`:\n{output}"));
                output
            }
            SequenceAction::CreateDocument | SequenceAction::UpdateDocument => {
                let content = text.unwrap_or_else(|| self.readable(&state.draft));
                match &step.document {
                    Some(name) => state.documents.push((name.clone(), content.clone())),
                    None => state.draft = content.clone(),
                }
                content
            }
        };
        Ok(Some(output))
    }

    /// Renders a step's template or condition with the outputs of the steps before it.
    fn render(
        &self,
        step: &str,
        template: &str,
        outputs: &BTreeMap<String, String>,
    ) -> Result<String, CallError> {
        let no_context = Value::Null;
        self.core
            .prompt(&self.agent.id)
            .and_then(|p| {
                p.render_str(template, &self.inputs.view(&no_context, Some(outputs)))
                    .map_err(|e| e.to_string())
            })
            .map_err(|message| CallError::Other {
                code: AgentErrorCode::PromptRenderError.into(),
                message: format!("sequence step `{step}`: {message}"),
            })
    }

    /// What a step's reply says: for a structured agent the envelope's
    /// `content` (when the reply parses), else the reply itself.
    fn readable(&self, reply: &str) -> String {
        match &self.agent.output_schema {
            Some(_) => {
                parse_envelope(reply, None).map_or_else(|_| reply.to_string(), |e| e.content)
            }
            None => reply.to_string(),
        }
    }
}
