//! One agent as one PocketFlow node.
//!
//! - **prep** (store read-locked): skip the agent if the run has halted;
//!   gather its documents and render its prompt ([`super::inputs`]); read
//!   its memory from the run's cache; hash its inputs and skip it when its
//!   outputs exist and the hash matches the last run (unless `force`, and
//!   only on a step's first visit: a loop back to a step runs it again).
//! - **exec** (no lock): under a concurrency permit, the conversation with
//!   the model ([`crate::conversation`]: tool loop, structured reply and
//!   repair), or the agent's `sequence` of steps ([`super::sequence`]).
//!   Retryable LLM errors (429, 5xx, timeouts, network) are returned as
//!   errors so PocketFlow retries them; `wait` computes exponential backoff
//!   with jitter and honours `Retry-After`. Other failures end the agent at
//!   once. At its end exec writes the output documents (atomically): outside
//!   the run's lock, so the agents of a parallel step write concurrently.
//! - **exec_fallback**: the last failure becomes a failed result; what that
//!   means for the run (`stop`, `continue`, `fallback`) is decided in post.
//! - **post** (store write-locked): record the result, the memory entry
//!   (in the run's cache) and the orchestration status (queued to the
//!   run's status writer, in order), return the action.
//!
//! An agent that asks a person (`ask_human`, interactive runs) ends its
//! exec with its conversation so far; post turns it into an open
//! interrupt and keeps the conversation in the run's state for the
//! checkpoint ([`super::checkpoint`]). When the run resumes, prep finds the
//! answer in the run's state and exec continues the same conversation with
//! it. While a question is open, agents that come after the one that asked
//! do not start (parallel siblings already running carry on). A step
//! marked as waiting for a person (metadata `waits`, from a BMAD v6 step's
//! menus and asks, SPEC 1.7) offers `ask_human` to its agent even when the
//! agent does not list it: the step's own text tells the model to ask; a
//! flow with resources offers `read_resource` the same way.

use super::checkpoint::AgentCheckpoint;
use super::closing_report::{self, ReportStatus};
use super::graph::FlowShared;
use super::growing;
use super::inputs::{
    Documents, OwnedInputs, gather_documents, hash_inputs, user_message, uses_variable,
};
use super::sequence::{PreparedStep, SequenceRun, SequenceState, prepare_sequence};
use super::{Halt, RunContext, RunState, elapsed_ms};
use crate::conversation::{
    Asked, Asking, Conversation, ConversationError, MAX_TOOL_ROUNDS, Retries, ToolAccess,
    truncated_message,
};
use crate::core::{AgentLlm, Core, output_documents};
use crate::failure::{AgentErrorCode, FailureCode, HaltCode};
use crate::llm::{LlmError, LlmErrorCode, LlmRequest, Message, TokenSink};
use crate::outcome::{AgentResult, AgentRunStatus, ProgressStatus, RunEvent};
use crate::reply::{DEFAULT_ACTION, resolve_action, split_action, summarize};
use crate::runs::RunMode;
use crate::runs::interrupts::{
    ASK_HUMAN, Interrupt, InterruptKind, InterruptSource, OpenQuestion, Question,
};
use crate::store::{
    AgentRecord, AgentState, DocId, DocStore, MemoryKey, MemoryScope, doc_id, now_ms,
};
use crate::tools::{READ_RESOURCE, ToolContext};
use crate::usage::{CallRecord, UsageTotals};
use bmad2pf_compiler::bundle::{AgentSpec, ErrorHandling, StepSpec};
use pocketflow::{Action, Node, NodeError, Params};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The memory key an agent's last output is recorded under.
const LAST_OUTPUT_KEY: &str = "last_output";

/// The `prompt` of an assumption a skill's closing report lists without
/// a question (it is in `assumed`).
const UNASKED: &str = "(assumed without asking)";

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
    /// The tools offered in this step: the agent's, and `ask_human` where
    /// the step waits for a person.
    tools: Vec<String>,
    /// The flow's growing main document, when this step writes it
    /// ([`super::growing`]).
    grows: Option<String>,
    /// The files `read_resource` reads: the flow's and the agent's.
    resources: Arc<BTreeMap<String, String>>,
    /// Whether the flow is a skill with a headless contract.
    headless_contract: bool,
    /// Save the run's progress when this agent completes (a flow of several agents).
    saves_progress: bool,
}

/// What prep decided.
pub(crate) enum AgentPrep {
    /// The run already halted: do nothing.
    Halted,
    /// Nothing to do in this pass: the agent is done in this visit of its
    /// step, waits for a person, or comes after an agent that does.
    Idle,
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
        code: FailureCode,
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
    /// Attempts of exec so far: the `started` progress event goes out on the
    /// first only, and each call record says which attempt made it.
    attempts: AtomicU32,
    /// The model calls of every attempt so far, those of failed attempts
    /// too (they were paid for): the agent's result reports them all.
    usage: Arc<Mutex<UsageTotals>>,
    /// Set when the agent continues a conversation that asked a person.
    resume: Option<Resume>,
}

/// A conversation to continue with a person's answer.
pub(crate) struct Resume {
    pub checkpoint: AgentCheckpoint,
    /// What the agent receives as the result of its `ask_human` call.
    pub answer: String,
}

impl AgentCall {
    /// How long the agent has worked, earlier runs of it included, in ms.
    fn duration_ms(&self) -> u64 {
        let earlier = self.resume.as_ref().map_or(0, |r| r.checkpoint.duration_ms);
        earlier.saturating_add(elapsed_ms(self.started))
    }
}

impl AgentCall {
    /// The calls made so far, in all attempts.
    fn usage(&self) -> UsageTotals {
        self.usage.lock().map(|u| *u).unwrap_or_default()
    }
}

/// What exec produced.
pub(crate) enum AgentExec {
    NotRun,
    Done(Delivered),
    Failed {
        code: FailureCode,
        message: String,
    },
    /// The agent asked a person: its question, and where its conversation stopped.
    Asked {
        question: Question,
        checkpoint: Box<AgentCheckpoint>,
    },
}

/// A finished agent's output, already written to the document store.
pub(crate) struct Delivered {
    /// The document text (without the `ACTION:` line).
    content: String,
    action: String,
}

pub(crate) struct Reply {
    text: String,
    /// An action named by a structured reply (free text carries it in an `ACTION:` line).
    action: Option<String>,
    /// Documents written by `create_document` / `update_document` steps: name → content.
    extra_docs: Vec<(String, String)>,
}

/// Why an agent's work with the model stopped: LLM errors may be retried,
/// others not; a question for a person suspends it.
pub(super) enum CallError {
    Llm(LlmError),
    Other { code: FailureCode, message: String },
    Asked(Box<Suspended>),
}

/// An agent's work stopped by an `ask_human` call.
pub(super) struct Suspended {
    pub asked: Asked,
    /// Where its sequence stood, for an agent that has one.
    pub sequence: Option<SequenceState>,
    /// The conversation so far.
    pub messages: Vec<Message>,
}

impl From<ConversationError> for CallError {
    fn from(error: ConversationError) -> Self {
        match error {
            ConversationError::Llm(error) => Self::Llm(error),
            ConversationError::Asked(asked) => Self::Asked(Box::new(Suspended {
                asked: *asked,
                sequence: None,
                messages: Vec::new(),
            })),
            ConversationError::Stopped => Self::Other {
                code: AgentErrorCode::BudgetExceeded.into(),
                message: "the run's budget is used up; no further LLM call was made".into(),
            },
            ConversationError::ToolUnavailable(message) => Self::Other {
                code: AgentErrorCode::ToolFailed.into(),
                message,
            },
            ConversationError::ToolLoopLimit => Self::Other {
                code: AgentErrorCode::ToolLoopLimit.into(),
                message: format!("the model kept calling tools after {MAX_TOOL_ROUNDS} rounds"),
            },
            ConversationError::Truncated { cutoff, max_tokens } => Self::Other {
                code: AgentErrorCode::OutputTruncated.into(),
                message: truncated_message(cutoff, max_tokens),
            },
            ConversationError::InvalidOutput { problem } => Self::Other {
                code: AgentErrorCode::InvalidOutput.into(),
                message: format!(
                    "the reply did not match the output schema after one repair attempt: {problem}"
                ),
            },
        }
    }
}

impl AgentNode {
    pub fn new(core: Arc<Core>, agent: AgentSpec, step: StepSpec, flow: &FlowShared) -> Self {
        let name = format!("{}/{}", step.id, agent.id);
        let template_uses_input = uses_variable(&agent.prompt_template, "input");
        let mut tools = agent.tools.clone();
        let waits = step
            .metadata
            .get("waits")
            .and_then(Value::as_array)
            .is_some_and(|waits| !waits.is_empty());
        let mut offer = |tool: &str, offered: bool| {
            if offered && !tools.iter().any(|t| t == tool) {
                tools.push(tool.to_string());
            }
        };
        offer(ASK_HUMAN, waits);
        // The flow's files, and the agent's own (its sidecar folder, the
        // files its menu and instructions name).
        let own = super::graph::resources_of(&agent.metadata);
        let resources = if own.is_empty() {
            flow.resources.clone()
        } else {
            let mut all = (*flow.resources).clone();
            all.extend(own);
            Arc::new(all)
        };
        offer(READ_RESOURCE, !resources.is_empty());
        let grows = flow
            .growing
            .clone()
            .filter(|name| output_documents(&agent, Some(&step)).contains(name));
        Self {
            core,
            agent,
            step,
            name,
            template_uses_input,
            tools,
            grows,
            resources,
            headless_contract: flow.headless_contract,
            saves_progress: flow.several_agents,
        }
    }

    /// Document names the agent writes: `creates` and `updates` (its own and
    /// the step's), else its default output.
    fn output_names(&self) -> Vec<String> {
        output_documents(&self.agent, Some(&self.step))
    }

    /// Gathers what the agent's work needs; `resume` continues a
    /// conversation that asked a person (its system prompt and input hash
    /// are those it started with).
    async fn prepare(&self, state: &RunState, resume: Option<Resume>) -> AgentPrep {
        let ctx = &state.ctx;
        let failed = |code: FailureCode, message: String| AgentPrep::Failed { code, message };
        let story = ctx.story_id.as_str();

        let docs = match gather_documents(&self.core, &self.agent, &self.step, ctx).await {
            Documents::Ready(docs) => docs,
            Documents::Waiting(missing) => return AgentPrep::Waiting { missing },
            Documents::Failed { code, message } => return failed(code, message),
        };

        let scope = match memory_scope(&self.agent, story) {
            Ok(scope) => scope,
            Err(e) => return failed(AgentErrorCode::InvalidMemoryScope.into(), e.to_string()),
        };
        let inputs = OwnedInputs {
            input: ctx.input.clone(),
            story_id: story.to_string(),
            docs,
            memory: state.memory.view(&scope),
            feedback: state.gates.feedback.get(&self.step.id).cloned(),
        };
        let no_context = Value::Null;
        let system = match self.core.prompt(&self.agent.id).and_then(|p| {
            p.render(&inputs.view(&no_context, None))
                .map_err(|e| e.to_string())
        }) {
            Ok(text) => text,
            Err(message) => return failed(AgentErrorCode::PromptRenderError.into(), message),
        };
        let sequence = prepare_sequence(&self.agent);
        let llm = match self.core.llm_for(&self.agent) {
            Ok(llm) => llm,
            Err(message) => return failed(FailureCode::Llm(LlmErrorCode::Config), message),
        };
        let tools = match self.core.tools.definitions(&self.tools).await {
            Ok(tools) => tools,
            Err(e) => return failed(AgentErrorCode::ToolFailed.into(), e.to_string()),
        };
        let request = LlmRequest {
            model: llm.model.clone(),
            system: match &resume {
                Some(resume) => resume.checkpoint.system.clone(),
                None => Some(system),
            },
            messages: vec![Message::User(user_message(
                &self.agent,
                &self.step,
                self.template_uses_input,
                &ctx.input,
                self.reports_closing(ctx),
                inputs.feedback.as_deref(),
            ))],
            temperature: llm.temperature,
            max_tokens: llm.max_tokens,
            tools,
            json_output: self.agent.output_schema.is_some(),
            output_schema: self.agent.output_schema.clone(),
        };
        let input_hash = match &resume {
            Some(resume) => resume.checkpoint.input_hash.clone(),
            None => hash_inputs(llm.provider.name(), &request, &inputs, !sequence.is_empty()),
        };
        let mut outputs = Vec::new();
        for name in self.output_names() {
            match doc_id(story, &name) {
                Ok(id) => outputs.push(id),
                Err(e) => {
                    return failed(AgentErrorCode::InvalidDocumentName.into(), e.to_string());
                }
            }
        }

        // Resuming skips work done by earlier runs; a step revisited in a
        // loop within this run is asked again, whatever its inputs.
        let first_visit = state.visits.get(&self.step.id).copied().unwrap_or(0) <= 1;
        if resume.is_none()
            && !ctx.force
            && first_visit
            && (self.outputs_current(state, &input_hash, &outputs).await
                || self.step_completed(ctx, story).await)
        {
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
                resources: self.resources.clone(),
            },
            started: Instant::now(),
            attempts: AtomicU32::new(0),
            usage: Arc::new(Mutex::new(
                resume
                    .as_ref()
                    .map(|r| r.checkpoint.usage)
                    .unwrap_or_default(),
            )),
            resume,
        }))
    }

    /// Whether the flow's growing document lists this step as completed.
    async fn step_completed(&self, ctx: &RunContext, story: &str) -> bool {
        let Some(id) = self
            .grows
            .as_ref()
            .and_then(|name| doc_id(story, name).ok())
        else {
            return false;
        };
        matches!(ctx.docs.get(&id).await, Ok(Some(doc)) if growing::completed(&doc.content, &self.step.id))
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

    /// Runs the agent's LLM work (attempt `attempt` of exec): one exchange,
    /// or its sequence; from where it asked a person, when it resumes.
    async fn call(&self, call: &AgentCall, attempt: u32) -> Result<Reply, CallError> {
        let agent = self.agent.id.clone();
        let ctx = call.ctx.clone();
        let sink = move |delta: &str| {
            ctx.emit(RunEvent::Token {
                agent: agent.clone(),
                delta: delta.to_string(),
            });
        };
        let on_token: Option<&TokenSink> = if call.ctx.streaming() {
            Some(&sink)
        } else {
            None
        };
        let tally = call.usage.clone();
        let run = call.ctx.clone();
        let on_call = move |record: &CallRecord| {
            if let Ok(mut usage) = tally.lock() {
                usage.add(record);
            }
            run.record_call(record);
        };
        let run = call.ctx.clone();
        let over_budget = move || run.over_budget();
        let run = call.ctx.clone();
        let (agent, step) = (self.agent.id.clone(), self.step.id.clone());
        let assumed = move |question: &Question| {
            run.assumed(OpenQuestion {
                agent: agent.clone(),
                step: Some(step.clone()),
                kind: question.kind,
                prompt: question.prompt.clone(),
                options: question.options.clone(),
                assumed: question.assume.clone(),
            });
        };
        let asking = match call.ctx.mode {
            RunMode::Interactive => Asking::Interactive,
            RunMode::Headless => Asking::Headless(Some(&assumed)),
        };
        let mut conversation = Conversation::new(
            &self.core,
            &call.llm,
            &call.request,
            Retries::ByCaller,
            &self.agent.id,
            Some(&self.step.id),
        )
        .at_attempt(attempt)
        .with_tools(ToolAccess {
            allowed: &self.tools,
            ctx: &call.tool_ctx,
        })
        .streaming_to(on_token)
        .recording_to(Some(&on_call))
        .stopping_when(Some(&over_budget))
        .asking(asking);
        let mut sequence_from = SequenceState::default();
        if let Some(resume) = &call.resume {
            conversation = conversation.restore(resume.checkpoint.messages.clone());
            conversation.answer(resume.checkpoint.call_id.clone(), resume.answer.clone());
            sequence_from = resume.checkpoint.sequence.clone().unwrap_or_default();
        }
        match self.converse(call, &mut conversation, sequence_from).await {
            Err(CallError::Asked(mut suspended)) => {
                suspended.messages = conversation.messages().to_vec();
                Err(CallError::Asked(suspended))
            }
            other => other,
        }
    }

    /// The agent's exchanges with the model, up to its reply.
    async fn converse(
        &self,
        call: &AgentCall,
        conversation: &mut Conversation<'_>,
        sequence_from: SequenceState,
    ) -> Result<Reply, CallError> {
        let (text, extra_docs) = if call.sequence.is_empty() {
            (conversation.exchange().await?, Vec::new())
        } else {
            let sequence = SequenceRun {
                core: &self.core,
                agent: &self.agent,
                inputs: &call.inputs,
                tool_ctx: &call.tool_ctx,
            };
            let output = sequence
                .run(&call.sequence, conversation, sequence_from)
                .await?;
            (output.draft, output.documents)
        };
        let mut reply = self.finish_reply(conversation, text).await?;
        reply.extra_docs = extra_docs;
        if self.reports_closing(&call.ctx) {
            reply.text = self.read_closing_report(&call.ctx, reply.text)?;
        }
        Ok(reply)
    }

    /// Whether this run of the step ends with a skill's closing report:
    /// a skill with a headless contract, run headless.
    fn reports_closing(&self, ctx: &RunContext) -> bool {
        self.headless_contract && ctx.mode == RunMode::Headless
    }

    /// Reads the closing report off `text` (SPEC 1.7): its open questions
    /// and assumptions join the run's `open_questions`, `blocked` fails the
    /// step with its reason; the rest of the text is the step's output. A
    /// reply without a report is taken as it is.
    fn read_closing_report(&self, ctx: &RunContext, text: String) -> Result<String, CallError> {
        let Some((body, report)) = closing_report::split(&text) else {
            return Ok(text);
        };
        let listed = |prompt: String, assumed: Option<String>| OpenQuestion {
            agent: self.agent.id.clone(),
            step: Some(self.step.id.clone()),
            kind: InterruptKind::Ask,
            prompt,
            options: None,
            assumed,
        };
        for question in report.open_questions {
            ctx.assumed(listed(question, None));
        }
        for assumption in report.assumptions {
            ctx.assumed(listed(UNASKED.to_string(), Some(assumption)));
        }
        match report.status {
            ReportStatus::Blocked => Err(CallError::Other {
                code: AgentErrorCode::Blocked.into(),
                message: report
                    .reason
                    .filter(|r| !r.trim().is_empty())
                    .unwrap_or_else(|| "the skill reported it is blocked, giving no reason".into()),
            }),
            ReportStatus::Complete | ReportStatus::Partial => Ok(body),
        }
    }

    /// Turns the final text into a reply; structured agents get their
    /// envelope parsed and validated, with one repair attempt.
    async fn finish_reply(
        &self,
        conversation: &mut Conversation<'_>,
        text: String,
    ) -> Result<Reply, CallError> {
        let Some(schema) = &self.agent.output_schema else {
            return Ok(Reply {
                text,
                action: None,
                extra_docs: Vec::new(),
            });
        };
        let envelope = conversation.structured_reply(&text, Some(schema)).await?;
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
        })
    }

    /// Records a failure and applies `error_handling`.
    async fn record_failure(
        &self,
        state: &mut RunState,
        code: FailureCode,
        message: String,
        started: Option<Instant>,
        outputs: &[DocId],
        usage: UsageTotals,
    ) {
        let id = self.agent.id.clone();
        let duration_ms = started.map_or(0, elapsed_ms);
        let mut status = AgentRunStatus::Failed;
        let mut document = None;
        match self.agent.error_handling {
            ErrorHandling::Stop => {
                state.halted = Some(Halt::new(
                    HaltCode::AgentFailed,
                    format!("agent `{id}` failed ({code}): {message}"),
                ));
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
        tracing::warn!(run_id = state.ctx.run_id, agent = id, %code, %message, "agent failed");
        state
            .errors
            .insert(id.clone(), format!("{code}: {message}"));
        let result = AgentResult {
            status,
            document,
            summary: String::new(),
            duration_ms,
            usage,
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
            step: self.step.id.clone(),
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
        if progress != ProgressStatus::Interrupted {
            state.step_done.insert(id.clone());
        }
        ctx.report_status(id, status, summary);
    }

    /// Records that the agent asked a person: an open interrupt, its
    /// conversation kept for the checkpoint.
    async fn interrupted(
        &self,
        state: &mut RunState,
        question: Question,
        mut checkpoint: Box<AgentCheckpoint>,
    ) {
        let interrupt = Interrupt::open(
            &self.agent.id,
            &self.step.id,
            question,
            InterruptSource::Tool,
        );
        checkpoint.interrupt_id = interrupt.id.clone();
        self.core.counters.interrupt_opened(interrupt.kind);
        let result = AgentResult {
            status: AgentRunStatus::Interrupted,
            document: None,
            summary: interrupt.prompt.clone(),
            duration_ms: checkpoint.duration_ms,
            usage: checkpoint.usage,
        };
        state
            .ctx
            .emit(RunEvent::Interrupt(Box::new(interrupt.clone())));
        let prompt = interrupt.prompt.clone();
        state.interrupts.push(interrupt);
        state.waiting.insert(self.agent.id.clone(), *checkpoint);
        self.finish(
            state,
            result,
            ProgressStatus::Interrupted,
            AgentState::NeedsInput,
            Some(prompt),
        )
        .await;
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
                        code: AgentErrorCode::InvalidDocumentName.into(),
                        message: e.to_string(),
                    };
                }
            }
        }
        let grown = match self.grown(call, &content).await {
            Ok(grown) => grown,
            Err(e) => {
                return AgentExec::Failed {
                    code: (&e).into(),
                    message: e.to_string(),
                };
            }
        };
        if let Some((grown_doc, grown_text)) = &grown {
            for (doc, text) in &mut writes {
                if doc == grown_doc {
                    *text = grown_text.as_str();
                }
            }
        }
        for (doc, text) in &writes {
            let writer = call.ctx.writer(&self.agent.id);
            if let Err(e) = call.ctx.docs.put(doc, text, writer).await {
                return AgentExec::Failed {
                    code: (&e).into(),
                    message: e.to_string(),
                };
            }
        }
        AgentExec::Done(Delivered { content, action })
    }

    /// The flow's growing document with this step's reply added, when the
    /// step writes it; the step that creates it starts it afresh (a forced
    /// rerun does not append to the last run's document).
    async fn grown(
        &self,
        call: &AgentCall,
        reply: &str,
    ) -> Result<Option<(DocId, String)>, crate::store::StoreError> {
        let Some(name) = &self.grows else {
            return Ok(None);
        };
        let Ok(id) = doc_id(&call.ctx.story_id, name) else {
            return Ok(None);
        };
        let existing = match self.step.creates.contains(name) {
            true => None,
            false => call.ctx.docs.get(&id).await?,
        };
        let text = growing::grow(
            existing.as_ref().map(|d| d.content.as_str()),
            reply,
            &self.step.id,
        );
        Ok(Some((id, text)))
    }

    /// Records a delivered output in the run: memory, run record, result.
    async fn complete(
        &self,
        state: &mut RunState,
        call: Box<AgentCall>,
        delivered: Delivered,
    ) -> Action {
        let id = self.agent.id.clone();
        let Delivered { content, action } = delivered;
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
        if self.saves_progress {
            super::save_progress(&self.core, state).await;
        }
        let result = AgentResult {
            status: AgentRunStatus::Completed,
            document: call.outputs.first().map(|d| d.to_string()),
            summary: summary.clone(),
            duration_ms: call.duration_ms(),
            usage: call.usage(),
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
        if state.halted.is_some() || state.ctx.over_budget() {
            return Ok(AgentPrep::Halted);
        }
        let id = &self.agent.id;
        if let Some((checkpoint, answer)) = state.resuming.get(id) {
            let resume = Resume {
                checkpoint: checkpoint.clone(),
                answer: answer.clone(),
            };
            return Ok(self.prepare(state, Some(resume)).await);
        }
        // A sequential agent after one that asked needs its answer first;
        // parallel siblings were started with it and carry on.
        let behind_a_question = !state.waiting.is_empty() && !self.agent.parallel;
        if state.waiting.contains_key(id) || state.step_done.contains(id) || behind_a_question {
            return Ok(AgentPrep::Idle);
        }
        Ok(self.prepare(state, None).await)
    }

    async fn exec(&self, prep: &AgentPrep) -> Result<AgentExec, NodeError> {
        let AgentPrep::Run(call) = prep else {
            return Ok(AgentExec::NotRun);
        };
        let attempt = call.attempts.fetch_add(1, Ordering::Relaxed) + 1;
        if attempt == 1 {
            call.ctx.emit(RunEvent::Progress {
                agent: self.agent.id.clone(),
                step: self.step.id.clone(),
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
        match self.call(call, attempt).await {
            Ok(reply) => Ok(self.deliver(call, reply).await),
            // Only LLM errors that may pass are worth another attempt.
            Err(CallError::Llm(error)) if error.is_retryable() => Err(Box::new(error)),
            Err(CallError::Llm(error)) => Ok(AgentExec::Failed {
                code: (&error).into(),
                message: error.to_string(),
            }),
            Err(CallError::Other { code, message }) => Ok(AgentExec::Failed { code, message }),
            Err(CallError::Asked(suspended)) => {
                let Suspended {
                    asked,
                    sequence,
                    messages,
                } = *suspended;
                Ok(AgentExec::Asked {
                    question: asked.question,
                    checkpoint: Box::new(AgentCheckpoint {
                        interrupt_id: String::new(),
                        call_id: asked.call_id,
                        system: call.request.system.clone(),
                        messages,
                        input_hash: call.input_hash.clone(),
                        sequence,
                        usage: call.usage(),
                        duration_ms: call.duration_ms(),
                    }),
                })
            }
        }
    }

    async fn exec_fallback(
        &self,
        _prep: &AgentPrep,
        error: NodeError,
    ) -> Result<AgentExec, NodeError> {
        let code = error
            .downcast_ref::<LlmError>()
            .map_or(AgentErrorCode::AgentFailed.into(), FailureCode::from);
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
        if matches!(prep, AgentPrep::Idle) {
            // Its result and action, if any, stand.
            return Ok(Action::DEFAULT);
        }
        state.resuming.remove(&id);
        state.actions.insert(id.clone(), DEFAULT_ACTION.to_string());
        let action = match (prep, exec) {
            (AgentPrep::Halted | AgentPrep::Idle, _) => Action::DEFAULT,
            (AgentPrep::UpToDate { document }, _) => {
                let result = AgentResult {
                    status: AgentRunStatus::Skipped,
                    document,
                    summary: "outputs are up to date; not run again".into(),
                    duration_ms: 0,
                    usage: UsageTotals::default(),
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
                    usage: UsageTotals::default(),
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
                self.record_failure(state, code, message, None, &outputs, UsageTotals::default())
                    .await;
                Action::DEFAULT
            }
            (AgentPrep::Run(call), AgentExec::Done(reply)) => {
                self.complete(state, call, reply).await
            }
            (
                AgentPrep::Run(_),
                AgentExec::Asked {
                    question,
                    checkpoint,
                },
            ) => {
                self.interrupted(state, question, checkpoint).await;
                Action::DEFAULT
            }
            (AgentPrep::Run(call), AgentExec::Failed { code, message }) => {
                self.record_failure(
                    state,
                    code,
                    message,
                    Some(call.started),
                    &call.outputs,
                    call.usage(),
                )
                .await;
                Action::DEFAULT
            }
            (AgentPrep::Run(call), AgentExec::NotRun) => {
                self.record_failure(
                    state,
                    AgentErrorCode::Internal.into(),
                    "the agent did not run".into(),
                    Some(call.started),
                    &[],
                    call.usage(),
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
