//! The conversation with a model: the one path by which an agent talks to
//! its LLM, used by the agents of a flow and by stateless execute.
//!
//! A [`Conversation`] holds the messages so far and the tokens they used.
//! [`Conversation::exchange`] sends them and runs the tools the model asks
//! for (up to [`MAX_TOOL_ROUNDS`] rounds) until it answers in text;
//! [`Conversation::structured_reply`] reads that answer as the envelope of
//! [`crate::reply`], checks it against the agent's `output_schema` and, when
//! it does not fit, asks once for a repaired reply. Every call is counted in
//! the engine's counters.

use crate::core::{AgentLlm, Core};
use crate::llm::{
    LlmError, LlmRequest, LlmResponse, Message, TokenSink, complete_with_retry,
    complete_with_timeout,
};
use crate::outcome::TokenUsage;
use crate::reply::{Envelope, parse_envelope};
use crate::tools::ToolContext;
use serde_json::Value;

/// Most rounds of "model calls tools, tools answer" in one exchange.
pub(crate) const MAX_TOOL_ROUNDS: usize = 8;

/// Told to a structured agent in its first message (see [`crate::reply`]).
const ENVELOPE_INSTRUCTIONS: &str = "Reply with one JSON object and nothing else: \
{\"content\": \"<your output, Markdown>\", \"summary\": \"<one line>\", \"action\": \"<one of your commands, optional>\", \"data\": <structured result>}.";

/// How to answer in a structured envelope, and the schema `data` must match.
pub(crate) fn envelope_instructions(schema: Option<&Value>) -> String {
    let mut text = ENVELOPE_INSTRUCTIONS.to_string();
    if let Some(schema) = schema {
        text.push_str(&format!(
            "\n`data` must match this JSON Schema:\n{schema}\n"
        ));
    }
    text
}

fn repair_message(problem: &str) -> String {
    format!(
        "Your reply could not be used: {problem}. Reply again with only the corrected JSON object."
    )
}

/// Who retries a model call that failed with a retryable error.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Retries {
    /// One attempt per call: a flow's agent is a PocketFlow node, and the
    /// node retries the whole agent.
    ByCaller,
    /// The call retries itself per the provider's policy: stateless execute
    /// has no node around it.
    InCall,
}

/// Why a conversation ended without a usable reply.
#[derive(Debug)]
pub(crate) enum ConversationError {
    /// The model call failed (after its retries, with [`Retries::InCall`]).
    Llm(LlmError),
    /// The model kept calling tools past [`MAX_TOOL_ROUNDS`].
    ToolLoopLimit,
    /// The reply did not fit the envelope or schema, also after one repair.
    InvalidOutput { problem: String },
}

/// The tools a conversation may run for the model.
pub(crate) struct ToolAccess<'a> {
    /// Names of the tools the agent was given; other names are refused.
    pub allowed: &'a [String],
    pub ctx: &'a ToolContext,
}

/// One conversation with the model of one agent.
pub(crate) struct Conversation<'a> {
    core: &'a Core,
    llm: &'a AgentLlm,
    /// Model, system prompt, tools and settings; the messages sent are this
    /// conversation's own.
    request: &'a LlmRequest,
    tools: Option<ToolAccess<'a>>,
    on_token: Option<&'a TokenSink>,
    retries: Retries,
    messages: Vec<Message>,
    /// Tokens of every call so far, failed repairs included.
    pub usage: TokenUsage,
}

impl<'a> Conversation<'a> {
    /// A conversation that starts with the messages of `request`.
    pub fn new(
        core: &'a Core,
        llm: &'a AgentLlm,
        request: &'a LlmRequest,
        retries: Retries,
    ) -> Self {
        Self {
            core,
            llm,
            request,
            tools: None,
            on_token: None,
            retries,
            messages: request.messages.clone(),
            usage: TokenUsage::default(),
        }
    }

    /// Lets the model call `tools`.
    pub fn with_tools(mut self, tools: ToolAccess<'a>) -> Self {
        self.tools = Some(tools);
        self
    }

    /// Sends the reply's tokens to `on_token` as they arrive.
    pub fn streaming_to(mut self, on_token: Option<&'a TokenSink>) -> Self {
        self.on_token = on_token;
        self
    }

    /// Adds a user message.
    pub fn say(&mut self, text: String) {
        self.messages.push(Message::User(text));
    }

    /// Whether the last message is the user's (the model has not answered it yet).
    pub fn awaits_reply(&self) -> bool {
        matches!(self.messages.last(), Some(Message::User(_)))
    }

    /// One exchange with the model, running the tools it calls, until it answers in text.
    pub async fn exchange(&mut self) -> Result<String, ConversationError> {
        for _ in 0..=MAX_TOOL_ROUNDS {
            let request = LlmRequest {
                messages: self.messages.clone(),
                ..self.request.clone()
            };
            let response = self
                .complete(&request)
                .await
                .map_err(ConversationError::Llm)?;
            self.usage.add(TokenUsage {
                input_tokens: response.usage.input_tokens,
                output_tokens: response.usage.output_tokens,
            });
            self.messages.push(Message::Assistant {
                text: response.text.clone(),
                tool_calls: response.tool_calls.clone(),
            });
            if response.tool_calls.is_empty() {
                return Ok(response.text);
            }
            for tool_call in &response.tool_calls {
                let content = match &self.tools {
                    Some(tools) if tools.allowed.contains(&tool_call.name) => match self
                        .core
                        .tools
                        .call(&tool_call.name, &tool_call.arguments, tools.ctx)
                        .await
                    {
                        Ok(output) => output,
                        Err(e) => format!("error: {e}"),
                    },
                    _ => format!(
                        "error: tool `{}` is not available to this agent",
                        tool_call.name
                    ),
                };
                self.messages.push(Message::ToolResult {
                    call_id: tool_call.id.clone(),
                    name: tool_call.name.clone(),
                    content,
                });
            }
        }
        Err(ConversationError::ToolLoopLimit)
    }

    /// Reads `reply` (the text of the last exchange) as an envelope that fits
    /// `schema`; when it does not, asks once for a corrected reply.
    pub async fn structured_reply(
        &mut self,
        reply: &str,
        schema: Option<&Value>,
    ) -> Result<Envelope, ConversationError> {
        match parse_envelope(reply, schema) {
            Ok(envelope) => Ok(envelope),
            Err(problem) => {
                self.say(repair_message(&problem));
                let retry = self.exchange().await?;
                parse_envelope(&retry, schema)
                    .map_err(|problem| ConversationError::InvalidOutput { problem })
            }
        }
    }

    /// One model call, counted in the engine's counters.
    async fn complete(&self, request: &LlmRequest) -> Result<LlmResponse, LlmError> {
        let provider = self.llm.provider.as_ref();
        let counters = &self.core.counters;
        let result = match self.retries {
            Retries::ByCaller => {
                complete_with_timeout(
                    provider,
                    request,
                    self.on_token,
                    self.llm.policy.attempt_timeout,
                )
                .await
            }
            Retries::InCall => {
                complete_with_retry(provider, request, self.on_token, &self.llm.policy)
                    .await
                    .map(|(response, attempts)| {
                        for failure in &attempts.failures {
                            counters.llm_call(Err(failure.code()));
                        }
                        response
                    })
            }
        };
        match &result {
            Ok(response) => counters.llm_call(Ok((
                response.usage.input_tokens,
                response.usage.output_tokens,
            ))),
            Err(error) => counters.llm_call(Err(error.code())),
        }
        result
    }
}
