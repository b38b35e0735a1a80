//! Questions a run asks a person (SPEC 8.3): what an agent's `ask_human`
//! call asks, the interrupt it becomes on the run, the answer a resume
//! gives and what the agent receives back, and the questions a headless
//! run answered on its own assumptions.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The builtin tool through which an agent asks a person.
pub const ASK_HUMAN: &str = "ask_human";

/// Most options of a `choose` question.
const MAX_OPTIONS: usize = 20;

/// What the engine answers an `ask_human` call in a headless run that
/// named no assumption of its own.
const HEADLESS_ANSWER: &str = "No person is available to answer (this run is headless). \
Proceed on your own assumptions, and state each assumption you make in your output.";

/// What kind of answer a question wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InterruptKind {
    /// Free text.
    Ask,
    /// Exactly one of the options.
    Choose,
    /// Approve or reject, with optional feedback.
    Approve,
}

/// Who raised an interrupt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InterruptSource {
    /// An agent's `ask_human` call.
    Tool,
    /// A workflow step's approval gate.
    Gate,
}

/// Where an interrupt is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InterruptStatus {
    Open,
    Answered,
    /// Its run was cancelled before it was answered.
    Cancelled,
    /// Open past `runs.interrupt_timeout_s`.
    Expired,
}

/// A question as an agent asked it: the arguments of `ask_human`, checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Question {
    pub kind: InterruptKind,
    pub prompt: String,
    pub options: Option<Vec<String>>,
    /// What the agent proceeds on when no person answers (headless runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assume: Option<String>,
}

impl Question {
    /// Reads the arguments of an `ask_human` call; the error is told to the
    /// model, which may ask again.
    pub fn from_arguments(arguments: &Value) -> Result<Self, String> {
        let kind = match arguments.get("kind").and_then(Value::as_str) {
            None => InterruptKind::Ask,
            Some("ask") => InterruptKind::Ask,
            Some("choose") => InterruptKind::Choose,
            Some("approve") => InterruptKind::Approve,
            Some(other) => {
                return Err(format!(
                    "`kind` must be \"ask\", \"choose\" or \"approve\", not {other:?}"
                ));
            }
        };
        let prompt = arguments
            .get("prompt")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .ok_or("`prompt` must be a non-empty string: the question to ask")?
            .to_string();
        let options = match (kind, arguments.get("options")) {
            (InterruptKind::Choose, Some(Value::Array(items))) => {
                let mut options = Vec::with_capacity(items.len());
                for item in items {
                    let option = item
                        .as_str()
                        .map(str::trim)
                        .filter(|o| !o.is_empty())
                        .ok_or("every option must be a non-empty string")?;
                    if options.iter().any(|o: &String| o == option) {
                        return Err(format!("the option {option:?} is listed twice"));
                    }
                    options.push(option.to_string());
                }
                if !(2..=MAX_OPTIONS).contains(&options.len()) {
                    return Err(format!(
                        "a `choose` question needs 2 to {MAX_OPTIONS} options, not {}",
                        options.len()
                    ));
                }
                Some(options)
            }
            (InterruptKind::Choose, _) => {
                return Err("a `choose` question needs `options`, an array of strings".into());
            }
            _ => None,
        };
        let assume = match arguments.get("assume") {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) => Some(text.trim().to_string()).filter(|t| !t.is_empty()),
            Some(_) => {
                return Err("`assume` must be a string: what you proceed on unanswered".into());
            }
        };
        Ok(Self {
            kind,
            prompt,
            options,
            assume,
        })
    }

    /// What the agent receives in a headless run, where nobody answers.
    pub fn headless_answer(&self) -> String {
        match &self.assume {
            Some(assume) => format!(
                "No person is available to answer (this run is headless). Proceed on your \
                 stated assumption: {assume}. State any other assumption you make in your output."
            ),
            None => HEADLESS_ANSWER.to_string(),
        }
    }
}

/// The definition of `ask_human` offered to the model.
pub(crate) fn ask_human_parameters() -> Value {
    serde_json::json!({
        "type": "object",
        "properties": {
            "kind": {"type": "string", "enum": ["ask", "choose", "approve"],
                     "description": "ask: free text; choose: one of `options`; approve: approve or reject"},
            "prompt": {"type": "string", "description": "The question, as the person will read it."},
            "options": {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": MAX_OPTIONS,
                        "description": "For `choose`: the options, distinct."},
            "assume": {"type": "string",
                       "description": "What you will proceed on if no person can answer: your best default."}
        },
        "required": ["prompt"]
    })
}

/// A question waiting for (or answered by) a person, as the run lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Interrupt {
    /// `int-` and 16 hex digits.
    pub id: String,
    pub agent: String,
    pub step: String,
    pub kind: InterruptKind,
    pub prompt: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<Vec<String>>,
    /// For a gate after a step: the documents its agents wrote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub documents: Option<Vec<String>>,
    pub source: InterruptSource,
    pub status: InterruptStatus,
    /// Unix ms.
    pub created_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_at: Option<u64>,
    /// What the agent received: the text, the option, `approved` or
    /// `rejected: <feedback>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
}

impl Interrupt {
    /// A new open interrupt of `agent` in `step`.
    pub(crate) fn open(
        agent: &str,
        step: &str,
        question: Question,
        source: InterruptSource,
    ) -> Self {
        Self {
            id: format!("int-{}", hex::encode(rand::random::<[u8; 8]>())),
            agent: agent.to_string(),
            step: step.to_string(),
            kind: question.kind,
            prompt: question.prompt,
            options: question.options,
            documents: None,
            source,
            status: InterruptStatus::Open,
            created_at: crate::store::now_ms(),
            answered_at: None,
            answer: None,
        }
    }

    pub fn is_open(&self) -> bool {
        self.status == InterruptStatus::Open
    }

    /// What the agent receives for `answer`, or why the answer does not fit
    /// this question (`invalid_answer`).
    pub fn reply_to(&self, answer: &Answer) -> Result<String, AnswerError> {
        let text = answer
            .answer
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty());
        match self.kind {
            InterruptKind::Ask => text.map(str::to_string).ok_or_else(|| {
                AnswerError::new("this question wants `answer`, a non-empty string")
            }),
            InterruptKind::Choose => {
                let options = self.options.clone().unwrap_or_default();
                match text {
                    Some(choice) if options.iter().any(|o| o == choice) => Ok(choice.to_string()),
                    _ => Err(AnswerError {
                        message: "`answer` must be exactly one of the options".into(),
                        options: Some(options),
                    }),
                }
            }
            InterruptKind::Approve => match answer.decision {
                Some(Decision::Approve) => Ok("approved".into()),
                Some(Decision::Reject) => Ok(match answer.feedback.as_deref().map(str::trim) {
                    Some(feedback) if !feedback.is_empty() => format!("rejected: {feedback}"),
                    _ => "rejected".into(),
                }),
                None => Err(AnswerError::new(
                    "this question wants `decision`: \"approve\" or \"reject\"",
                )),
            },
        }
    }
}

impl Interrupt {
    /// The decision an answered `approve` question holds, read back from
    /// its stored answer (the form [`reply_to`](Self::reply_to) gives it):
    /// approved, or rejected with the feedback given (may be empty).
    pub(crate) fn decision(&self) -> Option<(Decision, String)> {
        let answer = self.answer.as_deref()?;
        if answer == "approved" {
            return Some((Decision::Approve, String::new()));
        }
        let feedback = answer.strip_prefix("rejected")?;
        let feedback = feedback.strip_prefix(": ").unwrap_or(feedback);
        Some((Decision::Reject, feedback.to_string()))
    }
}

/// A person's decision on an `approve` question.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Approve,
    Reject,
}

/// An answer to one interrupt (`POST /runs/{id}/resume`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Answer {
    /// Which interrupt this answers.
    pub interrupt_id: String,
    /// For `ask` and `choose`.
    #[serde(default)]
    pub answer: Option<String>,
    /// For `approve`.
    #[serde(default)]
    pub decision: Option<Decision>,
    /// For `approve`, with a rejection.
    #[serde(default)]
    pub feedback: Option<String>,
}

/// Why an answer does not fit its question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerError {
    pub message: String,
    /// For a `choose` question, the options.
    pub options: Option<Vec<String>>,
}

impl AnswerError {
    fn new(message: &str) -> Self {
        Self {
            message: message.to_string(),
            options: None,
        }
    }
}

/// A question a headless run answered on its own assumptions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OpenQuestion {
    pub agent: String,
    /// The flow step (absent for stateless execute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    pub kind: InterruptKind,
    pub prompt: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<Vec<String>>,
    /// What the run proceeded on: the assumption the agent named when it
    /// asked (`approved` for a gate); absent when the agent named none and
    /// stated its assumptions in its output instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assumed: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn questions_are_checked_as_the_model_asks_them() {
        let ask = Question::from_arguments(&json!({"prompt": "  Which market? "}));
        assert_eq!(
            ask,
            Ok(Question {
                kind: InterruptKind::Ask,
                prompt: "Which market?".into(),
                options: None,
                assume: None,
            })
        );
        let assuming = Question::from_arguments(
            &json!({"prompt": "Which market?", "assume": " Europe first "}),
        );
        assert_eq!(
            assuming.as_ref().map(|q| q.assume.as_deref()),
            Ok(Some("Europe first"))
        );
        assert!(
            assuming
                .map(|q| q.headless_answer())
                .is_ok_and(|answer| answer.contains("stated assumption: Europe first"))
        );
        let choose = Question::from_arguments(
            &json!({"kind": "choose", "prompt": "Stack?", "options": ["Rust", "Go"]}),
        );
        assert_eq!(
            choose.map(|q| q.options),
            Ok(Some(vec!["Rust".into(), "Go".into()]))
        );
        for bad in [
            json!({}),
            json!({"prompt": ""}),
            json!({"kind": "poll", "prompt": "x"}),
            json!({"kind": "choose", "prompt": "x"}),
            json!({"kind": "choose", "prompt": "x", "options": ["a"]}),
            json!({"kind": "choose", "prompt": "x", "options": ["a", "a"]}),
            json!({"kind": "choose", "prompt": "x", "options": ["a", 3]}),
            json!({"prompt": "x", "assume": 3}),
            json!({"kind": "choose", "prompt": "x", "options": (0..21).map(|i| i.to_string()).collect::<Vec<_>>()}),
        ] {
            assert!(Question::from_arguments(&bad).is_err(), "{bad}");
        }
    }

    fn interrupt(arguments: Value) -> Result<Interrupt, String> {
        let question = Question::from_arguments(&arguments)?;
        Ok(Interrupt::open(
            "pm",
            "plan",
            question,
            InterruptSource::Tool,
        ))
    }

    #[test]
    fn answers_must_fit_their_question() -> Result<(), String> {
        let answer = |answer: Option<&str>, decision, feedback: Option<&str>| Answer {
            interrupt_id: String::new(),
            answer: answer.map(str::to_string),
            decision,
            feedback: feedback.map(str::to_string),
        };
        let ask = interrupt(json!({"prompt": "Who?"}))?;
        assert_eq!(
            ask.reply_to(&answer(Some("me"), None, None)),
            Ok("me".into())
        );
        assert!(ask.reply_to(&answer(Some("  "), None, None)).is_err());
        assert!(ask.id.starts_with("int-") && ask.id.len() == 20);

        let choose = interrupt(json!({"kind": "choose", "prompt": "?", "options": ["a", "b"]}))?;
        assert_eq!(
            choose.reply_to(&answer(Some("b"), None, None)),
            Ok("b".into())
        );
        let refused = choose.reply_to(&answer(Some("c"), None, None));
        assert_eq!(
            refused.map_err(|e| e.options),
            Err(Some(vec!["a".into(), "b".into()]))
        );

        let approve = interrupt(json!({"kind": "approve", "prompt": "Ship?"}))?;
        assert_eq!(
            approve.reply_to(&answer(None, Some(Decision::Approve), None)),
            Ok("approved".into())
        );
        assert_eq!(
            approve.reply_to(&answer(None, Some(Decision::Reject), Some("too vague"))),
            Ok("rejected: too vague".into())
        );
        assert!(approve.reply_to(&answer(Some("yes"), None, None)).is_err());

        // A stored answer gives its decision back (a run taken over after
        // its answer, before it ran again, goes on with it).
        let answered = |decision, feedback: Option<&str>| -> Result<_, String> {
            let mut answered = approve.clone();
            answered.answer = Some(
                approve
                    .reply_to(&answer(None, Some(decision), feedback))
                    .map_err(|e| e.message)?,
            );
            Ok(answered.decision())
        };
        assert_eq!(
            answered(Decision::Approve, None)?,
            Some((Decision::Approve, String::new()))
        );
        assert_eq!(
            answered(Decision::Reject, Some("too vague"))?,
            Some((Decision::Reject, "too vague".into()))
        );
        assert_eq!(
            answered(Decision::Reject, None)?,
            Some((Decision::Reject, String::new()))
        );
        assert_eq!(approve.decision(), None);
        Ok(())
    }
}
