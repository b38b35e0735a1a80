//! What the run tools answer: a run cut down to what a model acts on — its
//! status, the documents its agents wrote (name, summary, `doc://` URI), the
//! questions it waits on (to answer with `answer_question`), the questions a
//! headless run answered on assumptions, and what to do next.

use crate::documents::document_uri;
use bmad2pf_engine::outcome::{AgentRunStatus, RunStatus};
use bmad2pf_engine::runs::Run;
use bmad2pf_engine::runs::interrupts::{InterruptKind, OpenQuestion};
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Serialize)]
pub struct RunReport {
    pub run_id: String,
    pub flow: String,
    pub story_id: String,
    pub status: RunStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// The step running now, or the last one that ran.
    pub step: Option<String>,
    /// The documents the run's agents wrote, in agent order.
    pub documents: Vec<DocumentReport>,
    /// Questions waiting for a person's answer (`interrupted` runs).
    pub questions: Vec<QuestionReport>,
    /// Questions a headless run answered on its own assumptions.
    pub open_questions: Vec<OpenQuestion>,
    /// Documents the run waited for and did not find (`pending` runs).
    pub pending_docs: Vec<String>,
    /// Agent → why it failed.
    pub errors: BTreeMap<String, String>,
    /// What the caller can do now, in words.
    pub next: String,
}

#[derive(Debug, Serialize)]
pub struct DocumentReport {
    pub agent: String,
    pub agent_status: AgentRunStatus,
    /// Its name within the story.
    pub name: String,
    /// `doc://{story}/{name}`.
    pub uri: String,
    pub summary: String,
}

#[derive(Debug, Serialize)]
pub struct QuestionReport {
    /// Pass to `answer_question`.
    pub interrupt_id: String,
    pub agent: String,
    pub step: String,
    pub kind: InterruptKind,
    pub prompt: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub options: Option<Vec<String>>,
    /// For an approval after a step: the documents to review.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub documents: Option<Vec<String>>,
}

impl From<Run> for RunReport {
    fn from(run: Run) -> Self {
        let story = run.story_id;
        let documents = run
            .outcome
            .results
            .into_iter()
            .filter_map(|(agent, result)| {
                let id = result.document?;
                let name = id
                    .strip_prefix(&format!("{story}__"))
                    .unwrap_or(&id)
                    .to_string();
                Some(DocumentReport {
                    agent,
                    agent_status: result.status,
                    uri: document_uri(&story, &name),
                    name,
                    summary: result.summary,
                })
            })
            .collect();
        let questions: Vec<QuestionReport> = run
            .interrupts
            .into_iter()
            .filter(|i| i.is_open())
            .map(|i| QuestionReport {
                interrupt_id: i.id,
                agent: i.agent,
                step: i.step,
                kind: i.kind,
                prompt: i.prompt,
                options: i.options,
                documents: i.documents,
            })
            .collect();
        let status = run.outcome.status;
        let next = next_step(status, &run.outcome.run_id, !questions.is_empty());
        Self {
            run_id: run.outcome.run_id,
            flow: run.flow,
            story_id: story,
            status,
            error_code: run.outcome.error_code,
            step: run.step,
            documents,
            questions,
            open_questions: run.open_questions,
            pending_docs: run.outcome.pending_docs,
            errors: run.outcome.errors,
            next,
        }
    }
}

fn next_step(status: RunStatus, run_id: &str, asks: bool) -> String {
    match status {
        RunStatus::Queued | RunStatus::Running => format!(
            "The run is still going: call `get_run` with run_id `{run_id}` and `wait_s` to wait for it."
        ),
        RunStatus::Interrupted if asks => {
            "The run waits for a person: ask the user each question, \
            then call `answer_question` with its interrupt_id and the answer."
                .to_string()
        }
        RunStatus::Interrupted => format!("The run waits for a person: see `get_run` `{run_id}`."),
        RunStatus::Pending => "The run stopped because documents are missing (`pending_docs`): \
            write them, then run the flow again for the same story."
            .to_string(),
        RunStatus::Success => {
            "The run is done: read its documents with `read_document` or as resources.".to_string()
        }
        RunStatus::Error => "The run failed: see `error_code` and `errors`.".to_string(),
        RunStatus::Cancelled => "The run was cancelled; its documents are kept.".to_string(),
    }
}
