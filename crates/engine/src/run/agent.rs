//! One agent as one PocketFlow node.
//!
//! - **prep** (store read-locked): skip the agent if the run has halted;
//!   gather its required documents (`requires`, `wait_for.docs`, outputs of
//!   `wait_for.agents`, the step's own `requires`) and optional ones
//!   (`reads`, `updates`); apply `on_missing_doc`; read its memory from the
//!   run's cache; render its prompt; hash its inputs and skip it when its
//!   outputs exist and the hash matches the last run (unless `force`, and
//!   only on a step's first visit: a loop back to a step runs it again).
//! - **exec** (no lock): the LLM call under a concurrency permit, with the
//!   tool-call loop, or the agent's `sequence` of steps. Retryable LLM
//!   errors (429, 5xx, timeouts, network) are returned as errors so
//!   PocketFlow retries them; `wait` computes exponential backoff with jitter
//!   and honours `Retry-After`. Other failures end the agent at once.
//! - **exec_fallback**: the last failure becomes a failed result; what that
//!   means for the run (`stop`, `continue`, `fallback`) is decided in post.
//!   At its end exec writes the output documents (atomically): outside the
//!   run's lock, so the agents of a parallel step write concurrently.
//! - **post** (store write-locked): record the result, the memory entry
//!   (in the run's cache) and the orchestration status (queued to the
//!   run's status writer, in order), return the action.

use super::{Halt, RunContext, RunState, elapsed_ms};
use crate::canonical::canonical_hash;
use crate::core::{AgentLlm, Core, output_documents};
use crate::llm::{LlmError, LlmRequest, Message, complete_with_timeout};
use crate::outcome::{AgentResult, AgentRunStatus, ProgressStatus, RunEvent, TokenUsage};
use crate::reply::{DEFAULT_ACTION, parse_envelope, resolve_action, split_action, summarize};
use crate::store::{
    AgentRecord, AgentState, DocId, DocStore, MemoryKey, MemoryScope, doc_id, now_ms,
};
use crate::tools::ToolContext;
use bmad2pf_compiler::bundle::{AgentSpec, ErrorHandling, SequenceAction, StepSpec};
use bmad2pf_compiler::config::OnMissingDoc;
use bmad2pf_compiler::prompt::{self, RunInputs};
use pocketflow::{Action, Node, NodeError, Params};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Most rounds of "model calls tools, tools answer" in one LLM exchange.
const MAX_TOOL_ROUNDS: usize = 8;

/// The memory key an agent's last output is recorded under.
const LAST_OUTPUT_KEY: &str = "last_output";

/// The memory scope `agent` uses when working on `story_id`.
pub(crate) fn memory_scope(
    agent: &AgentSpec,
    story_id: &str,
) -> Result<MemoryScope, crate::store::IdError> {
    match &agent.memory_scope {
        bmad2pf_compiler::bundle::MemoryScope::Isolated => {
            MemoryScope::isolated(&agent.id, story_id)
        }
        bmad2pf_compiler::bundle::MemoryScope::Shared(ns) => MemoryScope::shared(ns),
    }
}

/// An agent of one step of one flow.
pub(crate) struct AgentNode {
    core: Arc<Core>,
    agent: AgentSpec,
    step: StepSpec,
    /// `step/agent`, for logs and errors.
    name: String,
    /// Whether the prompt template shows `input` itself (else the input is the user message).
    template_uses_input: bool,
}

/// What prep decided.
pub(crate) enum AgentPrep {
    /// The run already halted: do nothing.
    Halted,
    /// Outputs exist and inputs are unchanged.
    UpToDate {
        document: Option<String>,
    },
    /// Required documents are missing (`on_missing_doc: wait`).
    Waiting {
        missing: Vec<String>,
    },
    /// Could not even start (missing document with `on_missing_doc: error`, a prompt that does not render…).
    Failed {
        code: &'static str,
        message: String,
    },
    Run(Box<AgentCall>),
}

/// Everything exec needs for the LLM work, prepared under the read lock.
pub(crate) struct AgentCall {
    ctx: Arc<RunContext>,
    llm: AgentLlm,
    /// System prompt, first user message, tools, model settings.
    request: LlmRequest,
    sequence: Vec<PreparedStep>,
    outputs: Vec<DocId>,
    input_hash: String,
    /// What the sequence templates are rendered with.
    inputs: OwnedInputs,
    tool_ctx: ToolContext,
    started: Instant,
    /// The `started` progress event goes out once, not once per attempt.
    announced: AtomicBool,
}

/// A `sequence` step, ready to run. Its template and condition are rendered
/// when the step runs, since they may read earlier steps' outputs (`steps`).
struct PreparedStep {
    name: String,
    action: SequenceAction,
    condition: Option<String>,
    template: Option<String>,
    tool: Option<String>,
    document: Option<String>,
    /// Checklist content for `checklist` steps.
    checklist: Option<String>,
}

/// The run inputs of one agent execution, owned so exec can render with them.
struct OwnedInputs {
    input: String,
    story_id: String,
    docs: BTreeMap<String, String>,
    memory: BTreeMap<String, Value>,
}

impl OwnedInputs {
    fn view<'a>(
        &'a self,
        context: &'a Value,
        steps: Option<&'a BTreeMap<String, String>>,
    ) -> RunInputs<'a> {
        RunInputs {
            input: &self.input,
            story_id: &self.story_id,
            docs: &self.docs,
            memory: &self.memory,
            context,
            steps,
        }
    }
}

/// What exec produced.
pub(crate) enum AgentExec {
    NotRun,
    Done(Delivered),
    Failed { code: &'static str, message: String },
}

/// A finished agent's output, already written to the document store.
pub(crate) struct Delivered {
    /// The document text (without the `ACTION:` line).
    content: String,
    action: String,
    usage: TokenUsage,
}

pub(crate) struct Reply {
    text: String,
    /// An action named by a structured reply (free text carries it in an `ACTION:` line).
    action: Option<String>,
    /// Documents written by `create_document` / `update_document` steps: name → content.
    extra_docs: Vec<(String, String)>,
    usage: TokenUsage,
}

/// Why an exchange with the model failed: LLM errors may be retried, others not.
enum CallError {
    Llm(LlmError),
    Other { code: &'static str, message: String },
}

impl AgentNode {
    pub fn new(core: Arc<Core>, agent: AgentSpec, step: StepSpec) -> Self {
        let name = format!("{}/{}", step.id, agent.id);
        let template_uses_input = uses_variable(&agent.prompt_template, "input");
        Self {
            core,
            agent,
            step,
            name,
            template_uses_input,
        }
    }

    /// Document names the agent writes: `creates` and `updates` (its own and
    /// the step's), else its default output.
    fn output_names(&self) -> Vec<String> {
        output_documents(&self.agent, Some(&self.step))
    }

    async fn prepare(&self, state: &RunState) -> AgentPrep {
        let ctx = &state.ctx;
        let failed = |code, message: String| AgentPrep::Failed { code, message };
        let story = ctx.story_id.as_str();

        let mut docs: BTreeMap<String, String> = BTreeMap::new();
        let mut missing = Vec::new();
        for (key, name) in self
            .core
            .required_documents(&self.agent, &self.step.requires)
        {
            let id = match doc_id(story, &name) {
                Ok(id) => id,
                Err(e) => return failed("invalid_document_name", e.to_string()),
            };
            match ctx.docs.get(&id).await {
                Ok(Some(doc)) => {
                    docs.insert(key, doc.content);
                }
                Ok(None) => match self.core.config.on_missing_doc {
                    OnMissingDoc::Skip => {
                        docs.insert(key, String::new());
                    }
                    OnMissingDoc::Wait | OnMissingDoc::Error => missing.push(name),
                },
                Err(e) => return failed(e.code(), e.to_string()),
            }
        }
        if !missing.is_empty() {
            return match self.core.config.on_missing_doc {
                OnMissingDoc::Error => failed(
                    "dependency_missing",
                    format!("missing required documents: {}", missing.join(", ")),
                ),
                _ => AgentPrep::Waiting { missing },
            };
        }
        for name in self
            .agent
            .reads
            .iter()
            .chain(&self.agent.updates)
            .chain(&self.step.updates)
        {
            let Ok(id) = doc_id(story, name) else {
                continue;
            };
            match ctx.docs.get(&id).await {
                Ok(Some(doc)) => {
                    docs.insert(name.clone(), doc.content);
                }
                Ok(None) => {}
                Err(e) => return failed(e.code(), e.to_string()),
            }
        }

        let scope = match memory_scope(&self.agent, story) {
            Ok(scope) => scope,
            Err(e) => return failed("invalid_memory_scope", e.to_string()),
        };
        let inputs = OwnedInputs {
            input: ctx.input.clone(),
            story_id: story.to_string(),
            docs,
            memory: state.memory.view(&scope),
        };
        let no_context = Value::Null;
        let system = match self.core.prompt(&self.agent.id).and_then(|p| {
            p.render(&inputs.view(&no_context, None))
                .map_err(|e| e.to_string())
        }) {
            Ok(text) => text,
            Err(message) => return failed("prompt_render_error", message),
        };
        let sequence = self.prepare_sequence();
        let llm = match self.core.llm_for(&self.agent) {
            Ok(llm) => llm,
            Err(message) => return failed("llm_config", message),
        };
        let request = LlmRequest {
            model: llm.model.clone(),
            system: Some(system),
            messages: vec![Message::User(self.user_message(&ctx.input))],
            temperature: llm.temperature,
            max_tokens: llm.max_tokens,
            tools: self.core.tools.definitions(&self.agent.tools),
            json_output: self.agent.output_schema.is_some(),
            output_schema: self.agent.output_schema.clone(),
        };
        let input_hash = hash_inputs(llm.provider.name(), &request, &inputs, !sequence.is_empty());
        let mut outputs = Vec::new();
        for name in self.output_names() {
            match doc_id(story, &name) {
                Ok(id) => outputs.push(id),
                Err(e) => return failed("invalid_document_name", e.to_string()),
            }
        }

        // Resuming skips work done by earlier runs; a step revisited in a
        // loop within this run is asked again, whatever its inputs.
        let first_visit = state.visits.get(&self.step.id).copied().unwrap_or(0) <= 1;
        if !ctx.force && first_visit && self.outputs_current(state, &input_hash, &outputs).await {
            return AgentPrep::UpToDate {
                document: outputs.first().map(|d| d.to_string()),
            };
        }
        AgentPrep::Run(Box::new(AgentCall {
            ctx: ctx.clone(),
            llm,
            request,
            sequence,
            outputs,
            input_hash,
            inputs,
            tool_ctx: ToolContext {
                story_id: story.to_string(),
                memory_scope: scope,
                docs: ctx.docs.clone(),
                memory: self.core.memory.clone(),
                writer: ctx.writer(&self.agent.id),
            },
            started: Instant::now(),
            announced: AtomicBool::new(false),
        }))
    }

    /// The first user message: the run's input (when the template does not
    /// already show it) and how to name the next action.
    fn user_message(&self, input: &str) -> String {
        let mut text = String::new();
        if !self.template_uses_input && !input.trim().is_empty() {
            text.push_str(input.trim());
            text.push_str("\n\n");
        }
        if self.agent.output_schema.is_some() {
            text.push_str(ENVELOPE_INSTRUCTIONS);
            if let Some(schema) = &self.agent.output_schema {
                text.push_str(&format!(
                    "\n`data` must match this JSON Schema:\n{schema}\n"
                ));
            }
        } else if !self.agent.commands.is_empty() {
            let names: Vec<&str> = self
                .agent
                .commands
                .iter()
                .map(|c| c.name.as_str())
                .collect();
            text.push_str(&format!(
                "Write your output as a Markdown document. If one of your commands applies as the next step, end with a line `ACTION: <command>`, one of: {}.",
                names.join(", ")
            ));
        } else {
            text.push_str("Write your output as a Markdown document.");
        }
        text
    }

    fn prepare_sequence(&self) -> Vec<PreparedStep> {
        self.agent
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
                    self.agent
                        .checklists
                        .iter()
                        .find(|c| &c.name == name || c.path.ends_with(name.as_str()))
                        .map(|c| c.content.clone())
                }),
            })
            .collect()
    }

    /// Renders a sequence step's template or condition with the outputs of the steps before it.
    fn render_step(
        &self,
        call: &AgentCall,
        step: &str,
        template: &str,
        outputs: &BTreeMap<String, String>,
    ) -> Result<String, CallError> {
        let no_context = Value::Null;
        self.core
            .prompt(&self.agent.id)
            .and_then(|p| {
                p.render_str(template, &call.inputs.view(&no_context, Some(outputs)))
                    .map_err(|e| e.to_string())
            })
            .map_err(|message| CallError::Other {
                code: "prompt_render_error",
                message: format!("sequence step `{step}`: {message}"),
            })
    }

    async fn outputs_current(&self, state: &RunState, input_hash: &str, outputs: &[DocId]) -> bool {
        let Some(record) = state.record.agents.get(&self.agent.id) else {
            return false;
        };
        if record.input_hash != input_hash {
            return false;
        }
        for id in outputs {
            if !matches!(state.ctx.docs.meta(id).await, Ok(Some(_))) {
                return false;
            }
        }
        true
    }

    /// Runs the agent's LLM work: one exchange, or its sequence.
    async fn call(&self, call: &AgentCall) -> Result<Reply, CallError> {
        let mut usage = TokenUsage::default();
        let mut messages = call.request.messages.clone();
        if call.sequence.is_empty() {
            let text = self.exchange(call, &mut messages, &mut usage).await?;
            return self.finish_reply(call, text, messages, usage).await;
        }
        // A sequence: each step adds to one conversation; `current` is the
        // latest draft; `outputs` holds each step's output for `steps.<name>`.
        let mut current = String::new();
        let mut outputs: BTreeMap<String, String> = BTreeMap::new();
        let mut extra_docs = Vec::new();
        for step in &call.sequence {
            if let Some(condition) = &step.condition {
                let probe = format!("{{% if {condition} %}}yes{{% endif %}}");
                if self.render_step(call, &step.name, &probe, &outputs)?.trim() != "yes" {
                    continue;
                }
            }
            let text = match &step.template {
                Some(template) => Some(self.render_step(call, &step.name, template, &outputs)?),
                None => None,
            };
            let output = match step.action {
                SequenceAction::LlmCall => {
                    match text {
                        Some(text) => messages.push(Message::User(text)),
                        None if !matches!(messages.last(), Some(Message::User(_))) => {
                            messages.push(Message::User(format!(
                                "Continue with step `{}`.",
                                step.name
                            )));
                        }
                        None => {}
                    }
                    current = self.exchange(call, &mut messages, &mut usage).await?;
                    self.readable(&current)
                }
                SequenceAction::Checklist => {
                    let checklist = step.checklist.clone().or(text).unwrap_or_default();
                    messages.push(Message::User(format!(
                        "Review the work so far against this checklist and list what is missing or wrong.\n\n{checklist}"
                    )));
                    self.exchange(call, &mut messages, &mut usage).await?
                }
                SequenceAction::ToolCall => {
                    let tool = step.tool.as_deref().unwrap_or(&step.name);
                    let args: Value = match &text {
                        Some(text) => serde_json::from_str(text).map_err(|e| CallError::Other {
                            code: "tool_arguments",
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
                        .call(tool, &args, &call.tool_ctx)
                        .await
                        .map_err(|e| CallError::Other {
                            code: "tool_failed",
                            message: format!("sequence step `{}`: tool `{tool}`: {e}", step.name),
                        })?;
                    messages.push(Message::User(format!("Result of tool `{tool}`:\n{output}")));
                    output
                }
                SequenceAction::CreateDocument | SequenceAction::UpdateDocument => {
                    let content = text.unwrap_or_else(|| self.readable(&current));
                    match &step.document {
                        Some(name) => extra_docs.push((name.clone(), content.clone())),
                        None => current = content.clone(),
                    }
                    content
                }
            };
            outputs.insert(step.name.clone(), output);
        }
        let mut reply = self.finish_reply(call, current, messages, usage).await?;
        reply.extra_docs = extra_docs;
        Ok(reply)
    }

    /// What a sequence step's reply says: for a structured agent the
    /// envelope's `content` (when the reply parses), else the reply itself.
    fn readable(&self, reply: &str) -> String {
        match &self.agent.output_schema {
            Some(_) => {
                parse_envelope(reply, None).map_or_else(|_| reply.to_string(), |e| e.content)
            }
            None => reply.to_string(),
        }
    }

    /// Turns the final text into a reply; structured agents get their
    /// envelope parsed and validated, with one repair attempt.
    async fn finish_reply(
        &self,
        call: &AgentCall,
        text: String,
        mut messages: Vec<Message>,
        mut usage: TokenUsage,
    ) -> Result<Reply, CallError> {
        let Some(schema) = &self.agent.output_schema else {
            return Ok(Reply {
                text,
                action: None,
                extra_docs: Vec::new(),
                usage,
            });
        };
        let envelope = match parse_envelope(&text, Some(schema)) {
            Ok(envelope) => envelope,
            Err(problem) => {
                messages.push(Message::User(repair_message(&problem)));
                let retry = self.exchange(call, &mut messages, &mut usage).await?;
                parse_envelope(&retry, Some(schema)).map_err(|problem| CallError::Other {
                    code: "invalid_output",
                    message: format!("the reply did not match the output schema after one repair attempt: {problem}"),
                })?
            }
        };
        // The action may sit in the envelope or, per the agent's schema, in its data.
        let action = envelope.action.clone().or_else(|| {
            envelope
                .data
                .as_ref()
                .and_then(|d| d.get("action"))
                .and_then(Value::as_str)
                .map(str::to_string)
        });
        Ok(Reply {
            text: envelope.content,
            action,
            extra_docs: Vec::new(),
            usage,
        })
    }

    /// One exchange with the model, running the tools it calls, until it answers in text.
    async fn exchange(
        &self,
        call: &AgentCall,
        messages: &mut Vec<Message>,
        usage: &mut TokenUsage,
    ) -> Result<String, CallError> {
        let agent = self.agent.id.clone();
        let ctx = call.ctx.clone();
        let sink = move |delta: &str| {
            ctx.emit(RunEvent::Token {
                agent: agent.clone(),
                delta: delta.to_string(),
            });
        };
        let on_token: Option<&crate::llm::TokenSink> = if call.ctx.streaming() {
            Some(&sink)
        } else {
            None
        };
        for _ in 0..=MAX_TOOL_ROUNDS {
            let request = LlmRequest {
                messages: messages.clone(),
                ..call.request.clone()
            };
            let response = complete_with_timeout(
                call.llm.provider.as_ref(),
                &request,
                on_token,
                call.llm.policy.attempt_timeout,
            )
            .await;
            let response = match response {
                Ok(response) => {
                    self.core.counters.llm_call(Ok((
                        response.usage.input_tokens,
                        response.usage.output_tokens,
                    )));
                    response
                }
                Err(error) => {
                    self.core.counters.llm_call(Err(error.code()));
                    return Err(CallError::Llm(error));
                }
            };
            usage.add(TokenUsage {
                input_tokens: response.usage.input_tokens,
                output_tokens: response.usage.output_tokens,
            });
            if response.tool_calls.is_empty() {
                messages.push(Message::Assistant {
                    text: response.text.clone(),
                    tool_calls: Vec::new(),
                });
                return Ok(response.text);
            }
            messages.push(Message::Assistant {
                text: response.text.clone(),
                tool_calls: response.tool_calls.clone(),
            });
            for tool_call in &response.tool_calls {
                let content = if self.agent.tools.contains(&tool_call.name) {
                    match self
                        .core
                        .tools
                        .call(&tool_call.name, &tool_call.arguments, &call.tool_ctx)
                        .await
                    {
                        Ok(output) => output,
                        Err(e) => format!("error: {e}"),
                    }
                } else {
                    format!(
                        "error: tool `{}` is not available to this agent",
                        tool_call.name
                    )
                };
                messages.push(Message::ToolResult {
                    call_id: tool_call.id.clone(),
                    name: tool_call.name.clone(),
                    content,
                });
            }
        }
        Err(CallError::Other {
            code: "tool_loop_limit",
            message: format!("the model kept calling tools after {MAX_TOOL_ROUNDS} rounds"),
        })
    }

    /// Records a failure and applies `error_handling`.
    async fn record_failure(
        &self,
        state: &mut RunState,
        code: &'static str,
        message: String,
        started: Option<Instant>,
        outputs: &[DocId],
    ) {
        let id = self.agent.id.clone();
        let duration_ms = started.map_or(0, elapsed_ms);
        let mut status = AgentRunStatus::Failed;
        let mut document = None;
        match self.agent.error_handling {
            ErrorHandling::Stop => {
                state.halted = Some(Halt {
                    code: "agent_failed",
                    message: format!("agent `{id}` failed ({code}): {message}"),
                });
            }
            ErrorHandling::Continue => {}
            ErrorHandling::Fallback => {
                let placeholder = format!(
                    "<!-- bmad2pf: fallback placeholder; agent `{id}` failed ({code}) -->\n# {id}: no output\n\nThis document is a fallback placeholder: the agent failed with `{code}`: {message}\n"
                );
                let mut wrote_all = true;
                for doc in outputs {
                    let writer = state.ctx.writer(&id);
                    if let Err(e) = state.ctx.docs.put(doc, &placeholder, writer).await {
                        tracing::error!(agent = id, %e, "writing the fallback placeholder failed");
                        wrote_all = false;
                    }
                }
                if wrote_all {
                    status = AgentRunStatus::Fallback;
                    document = outputs.first().map(|d| d.to_string());
                }
            }
        }
        tracing::warn!(run_id = state.ctx.run_id, agent = id, code, %message, "agent failed");
        state
            .errors
            .insert(id.clone(), format!("{code}: {message}"));
        let result = AgentResult {
            status,
            document,
            summary: String::new(),
            duration_ms,
            usage: TokenUsage::default(),
        };
        self.finish(
            state,
            result,
            ProgressStatus::Failed,
            AgentState::Failed,
            Some(format!("{code}: {message}")),
        )
        .await;
    }

    /// Records the result, tells streaming callers, updates the orchestration status.
    async fn finish(
        &self,
        state: &mut RunState,
        result: AgentResult,
        progress: ProgressStatus,
        status: AgentState,
        summary: Option<String>,
    ) {
        let id = self.agent.id.clone();
        self.core.counters.agent_finished(result.status);
        let ctx = state.ctx.clone();
        ctx.emit(RunEvent::Progress {
            agent: id.clone(),
            status: progress,
            duration_ms: Some(result.duration_ms),
            timestamp: now_ms(),
        });
        if matches!(progress, ProgressStatus::Completed | ProgressStatus::Failed) {
            ctx.emit(RunEvent::Result {
                agent: id.clone(),
                data: result.clone(),
            });
        }
        state.results.insert(id.clone(), result);
        ctx.report_status(id, status, summary);
    }

    /// Writes the agent's documents: done at the end of exec, outside the
    /// run's lock, so the agents of a parallel step write concurrently.
    async fn deliver(&self, call: &AgentCall, reply: Reply) -> AgentExec {
        let (content, action) = match &reply.action {
            Some(named) => (
                reply.text.clone(),
                resolve_action(named, &self.agent.commands),
            ),
            None => split_action(&reply.text, &self.agent.commands),
        };
        let mut writes: Vec<(DocId, &str)> = call
            .outputs
            .iter()
            .map(|d| (d.clone(), content.as_str()))
            .collect();
        for (name, text) in &reply.extra_docs {
            match doc_id(&call.ctx.story_id, name) {
                Ok(doc) => writes.push((doc, text.as_str())),
                Err(e) => {
                    return AgentExec::Failed {
                        code: "invalid_document_name",
                        message: e.to_string(),
                    };
                }
            }
        }
        for (doc, text) in &writes {
            let writer = call.ctx.writer(&self.agent.id);
            if let Err(e) = call.ctx.docs.put(doc, text, writer).await {
                return AgentExec::Failed {
                    code: e.code(),
                    message: e.to_string(),
                };
            }
        }
        AgentExec::Done(Delivered {
            content,
            action,
            usage: reply.usage,
        })
    }

    /// Records a delivered output in the run: memory, run record, result.
    async fn complete(
        &self,
        state: &mut RunState,
        call: Box<AgentCall>,
        delivered: Delivered,
    ) -> Action {
        let id = self.agent.id.clone();
        let Delivered {
            content,
            action,
            usage,
        } = delivered;
        let summary = summarize(&content);
        if let Ok(key) = MemoryKey::parse(&format!(
            "{}.{LAST_OUTPUT_KEY}",
            self.agent.default_output()
        )) {
            state.memory.set(
                &call.tool_ctx.memory_scope,
                key,
                json!({
                    "run_id": state.ctx.run_id,
                    "summary": summary,
                    "documents": call.outputs.iter().map(|d| d.as_str()).collect::<Vec<_>>(),
                    "at": now_ms(),
                }),
            );
        }
        state.record.agents.insert(
            id.clone(),
            AgentRecord {
                input_hash: call.input_hash.clone(),
                outputs: call.outputs.iter().map(|d| d.to_string()).collect(),
                finished_at: now_ms(),
            },
        );
        let result = AgentResult {
            status: AgentRunStatus::Completed,
            document: call.outputs.first().map(|d| d.to_string()),
            summary: summary.clone(),
            duration_ms: elapsed_ms(call.started),
            usage,
        };
        self.finish(
            state,
            result,
            ProgressStatus::Completed,
            AgentState::Completed,
            Some(summary),
        )
        .await;
        state.actions.insert(id, action.clone());
        Action::new(action)
    }
}

impl Node<RunState> for AgentNode {
    type Prep = AgentPrep;
    type Exec = AgentExec;

    fn name(&self) -> &str {
        &self.name
    }

    fn max_retries(&self) -> u32 {
        let retries = self
            .agent
            .retry_count
            .unwrap_or(self.core.config.llm.max_retries);
        retries.saturating_add(1)
    }

    fn wait(&self, failed_attempt: u32, error: &NodeError) -> Duration {
        let policy = self
            .core
            .llm_for(&self.agent)
            .map(|l| l.policy)
            .unwrap_or_default();
        let retry = failed_attempt.saturating_sub(1);
        match error.downcast_ref::<LlmError>() {
            Some(llm_error) => policy.delay_before_retry(retry, llm_error),
            None => policy.backoff(retry),
        }
    }

    async fn prep(&self, state: &RunState, _params: &Params) -> Result<AgentPrep, NodeError> {
        if state.halted.is_some() {
            return Ok(AgentPrep::Halted);
        }
        Ok(self.prepare(state).await)
    }

    async fn exec(&self, prep: &AgentPrep) -> Result<AgentExec, NodeError> {
        let AgentPrep::Run(call) = prep else {
            return Ok(AgentExec::NotRun);
        };
        if !call.announced.swap(true, Ordering::Relaxed) {
            call.ctx.emit(RunEvent::Progress {
                agent: self.agent.id.clone(),
                status: ProgressStatus::Started,
                duration_ms: None,
                timestamp: now_ms(),
            });
        }
        let _permit = self
            .core
            .agent_permits
            .acquire()
            .await
            .map_err(|_| NodeError::from("the engine is shutting down"))?;
        match self.call(call).await {
            Ok(reply) => Ok(self.deliver(call, reply).await),
            // Only LLM errors that may pass are worth another attempt.
            Err(CallError::Llm(error)) if error.is_retryable() => Err(Box::new(error)),
            Err(CallError::Llm(error)) => Ok(AgentExec::Failed {
                code: error.code(),
                message: error.to_string(),
            }),
            Err(CallError::Other { code, message }) => Ok(AgentExec::Failed { code, message }),
        }
    }

    async fn exec_fallback(
        &self,
        _prep: &AgentPrep,
        error: NodeError,
    ) -> Result<AgentExec, NodeError> {
        let code = error
            .downcast_ref::<LlmError>()
            .map_or("agent_failed", LlmError::code);
        Ok(AgentExec::Failed {
            code,
            message: format!("{error} (after {} attempts)", self.max_retries()),
        })
    }

    async fn post(
        &self,
        state: &mut RunState,
        _params: &Params,
        prep: AgentPrep,
        exec: AgentExec,
    ) -> Result<Action, NodeError> {
        let id = self.agent.id.clone();
        state.actions.insert(id.clone(), DEFAULT_ACTION.to_string());
        let action = match (prep, exec) {
            (AgentPrep::Halted, _) => Action::DEFAULT,
            (AgentPrep::UpToDate { document }, _) => {
                let result = AgentResult {
                    status: AgentRunStatus::Skipped,
                    document,
                    summary: "outputs are up to date; not run again".into(),
                    duration_ms: 0,
                    usage: TokenUsage::default(),
                };
                self.finish(
                    state,
                    result,
                    ProgressStatus::Skipped,
                    AgentState::Skipped,
                    None,
                )
                .await;
                Action::DEFAULT
            }
            (AgentPrep::Waiting { missing }, _) => {
                let summary = format!("waiting for: {}", missing.join(", "));
                state.pending_docs.extend(missing);
                let result = AgentResult {
                    status: AgentRunStatus::Waiting,
                    document: None,
                    summary: summary.clone(),
                    duration_ms: 0,
                    usage: TokenUsage::default(),
                };
                self.finish(
                    state,
                    result,
                    ProgressStatus::Waiting,
                    AgentState::NeedsInput,
                    Some(summary),
                )
                .await;
                Action::DEFAULT
            }
            (AgentPrep::Failed { code, message }, _) => {
                let outputs = self.fallback_outputs(&state.ctx.story_id);
                self.record_failure(state, code, message, None, &outputs)
                    .await;
                Action::DEFAULT
            }
            (AgentPrep::Run(call), AgentExec::Done(reply)) => {
                self.complete(state, call, reply).await
            }
            (AgentPrep::Run(call), AgentExec::Failed { code, message }) => {
                self.record_failure(state, code, message, Some(call.started), &call.outputs)
                    .await;
                Action::DEFAULT
            }
            (AgentPrep::Run(call), AgentExec::NotRun) => {
                self.record_failure(
                    state,
                    "internal_error",
                    "the agent did not run".into(),
                    Some(call.started),
                    &[],
                )
                .await;
                Action::DEFAULT
            }
        };
        Ok(action)
    }
}

impl AgentNode {
    fn fallback_outputs(&self, story: &str) -> Vec<DocId> {
        self.output_names()
            .iter()
            .filter_map(|n| doc_id(story, n).ok())
            .collect()
    }
}

/// Told to a structured agent in its first message (see [`crate::reply`]).
pub(crate) const ENVELOPE_INSTRUCTIONS: &str = "Reply with one JSON object and nothing else: \
{\"content\": \"<your output, Markdown>\", \"summary\": \"<one line>\", \"action\": \"<one of your commands, optional>\", \"data\": <structured result>}.";

pub(crate) fn repair_message(problem: &str) -> String {
    format!(
        "Your reply could not be used: {problem}. Reply again with only the corrected JSON object."
    )
}

/// Whether `template` reads variable `name` (a template that does not parse reads nothing).
fn uses_variable(template: &str, name: &str) -> bool {
    let env = prompt::environment();
    env.template_from_str(template)
        .map(|t| t.undeclared_variables(false).contains(name))
        .unwrap_or(false)
}

/// sha256 over what the agent's output is derived from: the request
/// (rendered prompt, model settings, tools) and, for a sequence, the
/// documents its step templates may read when they run. (Memory is not
/// hashed: every run writes the agent's own `last_output`, which would make
/// every agent look changed.)
fn hash_inputs(
    provider: &str,
    request: &LlmRequest,
    inputs: &OwnedInputs,
    has_sequence: bool,
) -> String {
    let docs = if has_sequence {
        json!(inputs.docs)
    } else {
        Value::Null
    };
    canonical_hash(&json!({
        "provider": provider,
        "request": request,
        "docs": docs,
    }))
}
