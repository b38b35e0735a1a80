//! The closing report of a skill with a headless contract (SPEC 1.7): run
//! headless, such a skill ends its reply with a JSON object
//! `{"status": "complete" | "partial" | "blocked", "assumptions": [...],
//! "open_questions": [...], "reason"?: "..."}`, bare or in a code fence.
//!
//! [`split`] finds that object at the end of the reply and returns the
//! reply without it (the report is for the engine, not part of the
//! document). A reply that does not end with such an object has no report
//! and is taken as it is.

use serde::Deserialize;

/// How the skill says its work went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum ReportStatus {
    Complete,
    /// Done as far as it could go: still a success.
    Partial,
    /// It could not do the work: the step fails with code `blocked`.
    Blocked,
}

/// The closing report, as the skill wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(super) struct ClosingReport {
    pub status: ReportStatus,
    #[serde(default)]
    pub assumptions: Vec<String>,
    #[serde(default)]
    pub open_questions: Vec<String>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// Most `{` tried as the start of the report, from the end of the reply:
/// a report is a small object, so the search need not cross a whole
/// document.
const MAX_STARTS: usize = 64;

/// The reply without its closing report, and the report; `None` when the
/// reply does not end with one.
pub(super) fn split(reply: &str) -> Option<(String, ClosingReport)> {
    let trimmed = reply.trim_end();
    let (before, json) = match trimmed.strip_suffix("```") {
        Some(fenced) => {
            let open = fenced.rfind("```")?;
            let info_and_body = &fenced[open + 3..];
            let body_start = info_and_body.find('\n')? + 1;
            let info = info_and_body[..body_start].trim();
            if !(info.is_empty() || info.eq_ignore_ascii_case("json")) {
                return None;
            }
            (&trimmed[..open], &info_and_body[body_start..])
        }
        None => {
            let start = trailing_object_start(trimmed)?;
            (&trimmed[..start], &trimmed[start..])
        }
    };
    let report: ClosingReport = serde_json::from_str(json.trim()).ok()?;
    Some((before.trim_end().to_string(), report))
}

/// Where the JSON object that ends `text` starts, trying each `{` from the
/// right until the rest of the text parses as one object.
fn trailing_object_start(text: &str) -> Option<usize> {
    if !text.ends_with('}') {
        return None;
    }
    text.match_indices('{')
        .rev()
        .take(MAX_STARTS)
        .map(|(at, _)| at)
        .find(|&at| {
            serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&text[at..])
                .is_ok_and(|object| object.contains_key("status"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fenced_report_is_read_and_cut_from_the_reply() {
        let reply = "# Water\n\nWater bed 2.\n\n```json\n{\"status\": \"partial\", \"assumptions\": [\"no rain\"], \"open_questions\": [\"Which bed is new?\"]}\n```\n";
        let (body, report) = split(reply).expect("a report");
        assert_eq!(body, "# Water\n\nWater bed 2.");
        assert_eq!(report.status, ReportStatus::Partial);
        assert_eq!(report.assumptions, ["no rain"]);
        assert_eq!(report.open_questions, ["Which bed is new?"]);
    }

    #[test]
    fn a_bare_report_with_nested_braces_is_read() {
        let reply = "Text with {braces}.\n{\"status\": \"blocked\", \"reason\": \"no {sensor} data\", \"extra\": {\"a\": 1}}";
        let (body, report) = split(reply).expect("a report");
        assert_eq!(body, "Text with {braces}.");
        assert_eq!(report.status, ReportStatus::Blocked);
        assert_eq!(report.reason.as_deref(), Some("no {sensor} data"));
    }

    #[test]
    fn replies_without_a_report_are_left_alone() {
        for reply in [
            "Just a document.",
            "Ends with an object {\"a\": 1}",
            "{\"status\": \"unknown\"}",
            "```rust\nfn main() {}\n```",
            "```json\n{\"status\": \"complete\"",
            "}",
            "",
        ] {
            assert_eq!(split(reply), None, "{reply:?}");
        }
    }
}
