//! The conversation with a model: the one path by which an agent talks to
//! its LLM, used by the agents of a flow and by stateless execute.
//!
//! A [`Conversation`] holds the messages so far and the tokens they used.
//! [`Conversation::exchange`] sends them and runs the tools the model asks
//! for (up to [`MAX_TOOL_ROUNDS`] rounds) until it answers in text;
//! [`Conversation::structured_reply`] reads that answer as the envelope of
//! [`crate::reply`], checks it against the agent's `output_schema` and, when
//! it does not fit, asks once for a repaired reply. Every call that answers
//! becomes a [`CallRecord`] (priced from runtime.yaml's `pricing`), added to
//! the conversation's [`UsageTotals`], counted in the engine's counters and
//! handed to the [`CallSink`] the caller attached, if any; failed attempts
//! are counted by error code.
//!
//! The builtin `ask_human` tool is the conversation's own (SPEC 8.3): how
//! it is answered depends on [`Asking`]. Headless, the engine answers at
//! once that nobody is there; interactive, the exchange stops with
//! [`ConversationError::Asked`], and the caller keeps the messages so far
//! ([`Conversation::messages`]) to continue later with the person's answer
//! as the tool's result ([`Conversation::restore`], [`Conversation::answer`]).

use crate::core::{AgentLlm, Core};
use crate::llm::{
    Cutoff, LlmError, LlmRequest, LlmResponse, Message, TokenSink, Usage, complete_with_retry,
    complete_with_timeout,
};
use crate::reply::{Envelope, parse_envelope};
use crate::runs::interrupts::{ASK_HUMAN, Question};
use crate::store::now_ms;
use crate::tools::{ToolContext, ToolError};
use crate::usage::{CallRecord, CallSink, UsageTotals, call_cost};
use serde_json::Value;
use std::time::Duration;
use tokio::time::Instant;

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

/// Why an agent failed whose reply stopped at a limit ([`ConversationError::Truncated`]).
pub(crate) fn truncated_message(cutoff: Cutoff, max_tokens: u32) -> String {
    match cutoff {
        Cutoff::MaxTokens => format!(
            "the reply stopped at the token limit ({max_tokens} tokens) before it was complete; \
raise llm.max_tokens for this agent or in runtime.yaml"
        ),
        Cutoff::ContextWindow => "the reply stopped at the model's context window before it \
was complete: the prompt and the reply together fill it; give the agent fewer or shorter \
documents, or use a model with a larger window"
            .to_string(),
    }
}

/// Said once when the model answers nothing at all (no text, no tool
/// call), as happens after tool results: the same history again most
/// often ends the same way.
const EMPTY_REPLY_NUDGE: &str =
    "Your reply was empty. Go on: give your answer now, or call a tool if you need one.";

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
    /// The reply stopped at a limit, unfinished: `cutoff` says which
    /// (`max_tokens` is the request's).
    Truncated { cutoff: Cutoff, max_tokens: u32 },
    /// The caller's stop check said to start no more calls.
    Stopped,
    /// A tool the model called cannot be used (an MCP server that is down
    /// or does not answer); the message names it.
    ToolUnavailable(String),
    /// The model asked a person (interactive): the exchange stops here.
    Asked(Box<Asked>),
}

/// An `ask_human` call waiting for a person's answer.
#[derive(Debug, Clone)]
pub(crate) struct Asked {
    /// The model's id for the call, which the answer goes back under.
    pub call_id: String,
    pub question: Question,
}

/// Told each question a headless conversation answered on its own.
pub(crate) type QuestionSink = dyn Fn(&Question) + Send + Sync;

/// How the model's `ask_human` calls are answered.
#[derive(Clone, Copy)]
pub(crate) enum Asking<'a> {
    /// At once ([`Question::headless_answer`]); each question goes to the sink.
    Headless(Option<&'a QuestionSink>),
    /// By a person: the exchange stops with [`ConversationError::Asked`].
    Interactive,
}

/// What became of one `ask_human` call.
enum Ask {
    /// A person must answer it.
    Person(Question),
    /// Answered at once (headless): what the model receives.
    Answered(String),
}

/// Asked before each call of a conversation; `true` starts no more.
pub(crate) type StopCheck = dyn Fn() -> bool + Send + Sync;

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
    /// Told about every call that answers, as it answers.
    on_call: Option<&'a CallSink>,
    /// Asked before each call: `true` starts no more (a run over budget).
    stop: Option<&'a StopCheck>,
    retries: Retries,
    asking: Asking<'a>,
    /// The agent talking, for the call records.
    agent: &'a str,
    /// The flow step it runs in (`None` for stateless execute), for the call records.
    step: Option<&'a str>,
    /// The caller's attempt at this agent (a flow's node retries the whole
    /// conversation), for the call records of [`Retries::ByCaller`].
    attempt: u32,
    messages: Vec<Message>,
    /// Every call so far, failed repairs included.
    pub usage: UsageTotals,
}

impl<'a> Conversation<'a> {
    /// A conversation of `agent` (in flow step `step`, if any) that starts
    /// with the messages of `request`.
    pub fn new(
        core: &'a Core,
        llm: &'a AgentLlm,
        request: &'a LlmRequest,
        retries: Retries,
        agent: &'a str,
        step: Option<&'a str>,
    ) -> Self {
        Self {
            core,
            llm,
            request,
            tools: None,
            on_token: None,
            on_call: None,
            stop: None,
            retries,
            asking: Asking::Headless(None),
            agent,
            step,
            attempt: 1,
            messages: request.messages.clone(),
            usage: UsageTotals::default(),
        }
    }

    /// Says which attempt of the caller this is (1 when not called).
    pub fn at_attempt(mut self, attempt: u32) -> Self {
        self.attempt = attempt;
        self
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

    /// Starts no more calls once `stop` says so ([`ConversationError::Stopped`]).
    pub fn stopping_when(mut self, stop: Option<&'a StopCheck>) -> Self {
        self.stop = stop;
        self
    }

    /// Says how `ask_human` calls are answered (headless unless told).
    pub fn asking(mut self, asking: Asking<'a>) -> Self {
        self.asking = asking;
        self
    }

    /// Continues a conversation that stopped: `messages` are its messages
    /// so far, in place of the request's.
    pub fn restore(mut self, messages: Vec<Message>) -> Self {
        self.messages = messages;
        self
    }

    /// The messages so far.
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// Gives a person's answer to the `ask_human` call `call_id`.
    pub fn answer(&mut self, call_id: String, answer: String) {
        self.messages.push(Message::ToolResult {
            call_id,
            name: ASK_HUMAN.to_string(),
            content: answer,
            is_error: false,
        });
    }

    /// Hands the record of each call that answers to `on_call`, as it answers.
    pub fn recording_to(mut self, on_call: Option<&'a CallSink>) -> Self {
        self.on_call = on_call;
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

    /// One exchange with the model, running the tools it calls, until it
    /// answers in text. An empty reply is met once with [`EMPTY_REPLY_NUDGE`].
    pub async fn exchange(&mut self) -> Result<String, ConversationError> {
        let mut nudged = false;
        for _ in 0..=MAX_TOOL_ROUNDS {
            if self.stop.is_some_and(|stop| stop()) {
                return Err(ConversationError::Stopped);
            }
            let request = LlmRequest {
                messages: self.messages.clone(),
                ..self.request.clone()
            };
            let response = match self.complete(&request).await {
                Err(LlmError::EmptyReply { .. }) if !nudged => {
                    nudged = true;
                    self.say(EMPTY_REPLY_NUDGE.to_string());
                    continue;
                }
                answered => answered.map_err(ConversationError::Llm)?,
            };
            self.messages.push(Message::Assistant {
                text: response.text.clone(),
                tool_calls: response.tool_calls.clone(),
            });
            if response.tool_calls.is_empty() {
                // A reply cut off at the limit would become a document that
                // ends mid-sentence, reported as a success.
                if let Some(cutoff) = response.cutoff() {
                    return Err(ConversationError::Truncated {
                        cutoff,
                        max_tokens: request.max_tokens,
                    });
                }
                return Ok(response.text);
            }
            let mut asked = None;
            for tool_call in &response.tool_calls {
                let result: Result<String, String> = match &self.tools {
                    Some(tools)
                        if tool_call.name == ASK_HUMAN
                            && tools.allowed.contains(&tool_call.name) =>
                    {
                        match self.ask(tool_call, asked.is_some()) {
                            Ok(Ask::Person(question)) => {
                                asked = Some(Asked {
                                    call_id: tool_call.id.clone(),
                                    question,
                                });
                                continue;
                            }
                            Ok(Ask::Answered(answer)) => Ok(answer),
                            Err(problem) => Err(problem),
                        }
                    }
                    Some(tools) if self.core.tools.allows(tools.allowed, &tool_call.name) => {
                        match self
                            .core
                            .tools
                            .call(&tool_call.name, &tool_call.arguments, tools.ctx)
                            .await
                        {
                            Ok(output) => Ok(output),
                            Err(ToolError::Unavailable(why)) => {
                                return Err(ConversationError::ToolUnavailable(why));
                            }
                            Err(e) => Err(e.to_string()),
                        }
                    }
                    _ => Err(format!(
                        "tool `{}` is not available to this agent",
                        tool_call.name
                    )),
                };
                // The text says it failed too: OpenAI has no mark for it.
                let (content, is_error) = match result {
                    Ok(output) => (output, false),
                    Err(problem) => (format!("error: {problem}"), true),
                };
                self.messages.push(Message::ToolResult {
                    call_id: tool_call.id.clone(),
                    name: tool_call.name.clone(),
                    content,
                    is_error,
                });
            }
            if let Some(asked) = asked {
                return Err(ConversationError::Asked(Box::new(asked)));
            }
        }
        Err(ConversationError::ToolLoopLimit)
    }

    /// Reads an `ask_human` call: the question when a person must answer
    /// it, or the answer a headless run gives at once (the question went to
    /// the sink); an error for the model when the call cannot be asked.
    fn ask(&self, call: &crate::llm::ToolCall, already_asking: bool) -> Result<Ask, String> {
        if already_asking {
            return Err("ask one question at a time; this one was not asked".into());
        }
        let question = Question::from_arguments(&call.arguments)?;
        match self.asking {
            Asking::Interactive => Ok(Ask::Person(question)),
            Asking::Headless(sink) => {
                if let Some(sink) = sink {
                    sink(&question);
                }
                Ok(Ask::Answered(question.headless_answer()))
            }
        }
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

    /// One model call: recorded when it answers, counted in the engine's
    /// counters either way.
    async fn complete(&mut self, request: &LlmRequest) -> Result<LlmResponse, LlmError> {
        let (core, llm) = (self.core, self.llm);
        let (provider, counters) = (llm.provider.as_ref(), &core.counters);
        let answered = match self.retries {
            Retries::ByCaller => {
                let started = Instant::now();
                complete_with_timeout(provider, request, self.on_token, llm.policy.attempt_timeout)
                    .await
                    .map(|response| (response, self.attempt, started.elapsed()))
            }
            Retries::InCall => complete_with_retry(provider, request, self.on_token, &llm.policy)
                .await
                .map(|(response, attempts)| {
                    for failure in &attempts.failures {
                        counters.llm_failed(failure.code());
                    }
                    (response, attempts.count, attempts.latency)
                }),
        };
        match answered {
            Ok((response, attempt, latency)) => {
                self.record(&response.usage, attempt, latency);
                Ok(response)
            }
            Err(error) => {
                counters.llm_failed(error.code());
                Err(error)
            }
        }
    }

    /// Makes the record of a call that answered, and hands it on.
    fn record(&mut self, usage: &Usage, attempt: u32, latency: Duration) {
        let model = &self.llm.model;
        let record = CallRecord {
            agent: self.agent.to_string(),
            step: self.step.map(str::to_string),
            provider: self.llm.provider.name().to_string(),
            model: model.clone(),
            attempt,
            input_tokens: usage.input_tokens,
            output_tokens: usage.output_tokens,
            cache_read_tokens: usage.cache_read_tokens,
            cache_write_tokens: usage.cache_write_tokens,
            reasoning_tokens: usage.reasoning_tokens,
            latency_ms: u64::try_from(latency.as_millis()).unwrap_or(u64::MAX),
            estimated: usage.estimated,
            cost_usd: call_cost(&self.core.config.pricing, model, usage),
            at: now_ms(),
        };
        self.usage.add(&record);
        self.core.counters.llm_answered(&record);
        if let Some(on_call) = self.on_call {
            on_call(&record);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Stores;
    use crate::llm::{LlmProvider, RetryPolicy, ToolCall};
    use crate::stats::Counters;
    use crate::tools::ToolBox;
    use async_trait::async_trait;
    use bmad2pf_compiler::bundle::{Bundle, SCHEMA_VERSION, SourceLayout};
    use bmad2pf_compiler::config::{ModelPrice, RuntimeConfig};
    use std::collections::{BTreeMap, VecDeque};
    use std::path::Path;
    use std::sync::{Arc, Mutex};

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    /// Answers with its script, one entry per call.
    struct Scripted(Mutex<VecDeque<Result<LlmResponse, LlmError>>>);

    #[async_trait]
    impl LlmProvider for Scripted {
        fn name(&self) -> &str {
            "anthropic"
        }

        async fn complete(
            &self,
            _request: &LlmRequest,
            _on_token: Option<&TokenSink>,
        ) -> Result<LlmResponse, LlmError> {
            let next = self.0.lock().ok().and_then(|mut s| s.pop_front());
            next.unwrap_or_else(|| Err(LlmError::Config("the script is over".into())))
        }
    }

    /// A reply with `tool_calls` that used `[input, output, cache read, cache write]` tokens.
    fn answer(
        text: &str,
        tool_calls: Vec<ToolCall>,
        [input, output, cache_read, cache_write]: [u64; 4],
    ) -> Result<LlmResponse, LlmError> {
        Ok(LlmResponse {
            text: text.into(),
            tool_calls,
            usage: Usage {
                input_tokens: input,
                output_tokens: output,
                cache_read_tokens: cache_read,
                cache_write_tokens: cache_write,
                ..Usage::default()
            },
            model: "claude-sonnet-4-5-20250929".into(),
            finish_reason: Some("end_turn".into()),
        })
    }

    /// A core with no agents on an embedded store in `dir`, pricing `claude`.
    async fn core(dir: &Path) -> Result<Core, Box<dyn std::error::Error>> {
        let mut config = RuntimeConfig::default();
        config.memory.path = dir.join("data").display().to_string();
        config.docs.path = dir.join("docs").display().to_string();
        config.pricing.insert(
            "claude".into(),
            ModelPrice {
                input_per_mtok: 3.0,
                output_per_mtok: 15.0,
                cache_read_per_mtok: Some(0.3),
                cache_write_per_mtok: Some(3.75),
            },
        );
        let stores = Stores::open(&config).await?;
        Ok(Core {
            bundle: Arc::new(Bundle {
                schema_version: SCHEMA_VERSION,
                generator: "test".into(),
                source_hash: String::new(),
                layout: SourceLayout::Preprocessing,
                agents: BTreeMap::new(),
                flows: BTreeMap::new(),
                tools: BTreeMap::new(),
            }),
            config,
            docs: stores.docs,
            memory: stores.memory,
            status: stores.status,
            runs: stores.runs,
            providers: BTreeMap::new(),
            tools: ToolBox::new(&BTreeMap::new(), &|_| None).unwrap_or_else(|e| panic!("{e}")),
            prompts: BTreeMap::new(),
            agent_permits: tokio::sync::Semaphore::new(1),
            counters: Counters::default(),
        })
    }

    fn llm(model: &str, script: Vec<Result<LlmResponse, LlmError>>) -> AgentLlm {
        AgentLlm {
            provider: Arc::new(Scripted(Mutex::new(script.into()))),
            model: model.into(),
            temperature: Some(0.0),
            max_tokens: 100,
            policy: RetryPolicy {
                max_retries: 2,
                base_delay: Duration::from_millis(1),
                max_delay: Duration::from_millis(1),
                attempt_timeout: Duration::from_secs(5),
            },
        }
    }

    #[tokio::test]
    async fn tool_rounds_and_repairs_are_each_recorded_priced_and_observed() -> TestResult {
        let dir = tempfile::tempdir()?;
        let core = core(dir.path()).await?;
        let lookup = ToolCall {
            id: "toolu_1".into(),
            name: "lookup".into(),
            arguments: serde_json::json!({}),
            signature: None,
        };
        let llm = llm(
            "claude",
            vec![
                answer("", vec![lookup], [2_000, 50, 1_500, 400]),
                answer("not json", Vec::new(), [2_100, 20, 1_900, 0]),
                answer(
                    r#"{"content": "Done.", "summary": "done"}"#,
                    Vec::new(),
                    [2_200, 30, 2_000, 0],
                ),
            ],
        );
        let request = LlmRequest::new("claude", "Plan it");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let observer = move |record: &CallRecord| {
            if let Ok(mut log) = log.lock() {
                log.push(record.clone());
            }
        };
        let mut conversation = Conversation::new(
            &core,
            &llm,
            &request,
            Retries::ByCaller,
            "pm",
            Some("write"),
        )
        .at_attempt(2)
        .recording_to(Some(&observer));
        let text = conversation
            .exchange()
            .await
            .map_err(|e| format!("{e:?}"))?;
        let envelope = conversation
            .structured_reply(&text, None)
            .await
            .map_err(|e| format!("{e:?}"))?;
        assert_eq!(envelope.content, "Done.");

        let records = seen.lock().map(|s| s.clone()).unwrap_or_default();
        assert_eq!(records.len(), 3, "a tool round, the answer, the repair");
        for record in &records {
            assert_eq!(record.agent, "pm");
            assert_eq!(record.step.as_deref(), Some("write"));
            assert_eq!(record.provider, "anthropic");
            assert_eq!(record.model, "claude", "the model as configured");
            assert_eq!(record.attempt, 2);
            assert!(!record.estimated);
            assert!(record.at > 0);
        }
        let first = &records[0];
        assert_eq!(
            (
                first.input_tokens,
                first.output_tokens,
                first.cache_read_tokens,
                first.cache_write_tokens
            ),
            (2_000, 50, 1_500, 400)
        );
        let expected = (100.0 * 3.0 + 1_500.0 * 0.3 + 400.0 * 3.75 + 50.0 * 15.0) / 1e6;
        assert!(
            first.cost_usd.is_some_and(|c| (c - expected).abs() < 1e-12),
            "{first:?}"
        );

        let totals = conversation.usage;
        assert_eq!(totals.calls, 3);
        assert_eq!(totals.input_tokens, 6_300);
        assert_eq!(totals.output_tokens, 100);
        assert_eq!(totals.cache_read_tokens, 5_400);
        assert_eq!(totals.unpriced_calls, 0);
        let sum: f64 = records.iter().filter_map(|r| r.cost_usd).sum();
        assert!(totals.cost_usd.is_some_and(|c| (c - sum).abs() < 1e-12));

        let stats = core.counters.snapshot();
        assert_eq!(stats.llm_calls, 3);
        assert_eq!(stats.llm_usage["anthropic"]["claude"], totals);
        assert_eq!((stats.tokens_in, stats.tokens_out), (6_300, 100));
        Ok(())
    }

    #[tokio::test]
    async fn a_call_that_retries_itself_records_the_attempt_that_answered() -> TestResult {
        let dir = tempfile::tempdir()?;
        let core = core(dir.path()).await?;
        let overloaded = LlmError::Server {
            provider: "anthropic".into(),
            status: 529,
            retry_after: None,
            message: "Overloaded".into(),
        };
        let llm = llm(
            "unlisted-model",
            vec![
                Err(overloaded),
                answer(
                    r#"{"content": "ok", "summary": "ok"}"#,
                    Vec::new(),
                    [10, 5, 0, 0],
                ),
            ],
        );
        let request = LlmRequest::new("unlisted-model", "hi");
        let seen = Arc::new(Mutex::new(None));
        let log = seen.clone();
        let observer = move |record: &CallRecord| {
            if let Ok(mut log) = log.lock() {
                *log = Some((record.attempt, record.step.clone()));
            }
        };
        let mut conversation =
            Conversation::new(&core, &llm, &request, Retries::InCall, "analyst", None)
                .recording_to(Some(&observer));
        conversation
            .exchange()
            .await
            .map_err(|e| format!("{e:?}"))?;
        let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
        assert_eq!(
            seen,
            Some((2, None)),
            "the second attempt answered; no step"
        );

        let totals = conversation.usage;
        assert_eq!(
            (totals.calls, totals.input_tokens, totals.output_tokens),
            (1, 10, 5)
        );
        assert_eq!(totals.cost_usd, None, "the model has no price");
        assert_eq!(totals.unpriced_calls, 1);
        let stats = core.counters.snapshot();
        assert_eq!(stats.llm_calls, 2, "both attempts count as calls");
        assert_eq!(stats.llm_errors.get("llm_server_error"), Some(&1));
        assert_eq!(stats.llm_usage["anthropic"]["unlisted-model"].calls, 1);
        Ok(())
    }
}
