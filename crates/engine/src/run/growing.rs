//! The main document of a BMAD step-file flow, which grows step by step
//! (SPEC 1.7): the first step's reply starts it, each later step's reply
//! is appended, and every step that finished is added to the document's
//! front-matter `stepsCompleted`. A rerun of the flow on the same story
//! skips the steps the document lists (unless forced, or on a loop back),
//! so it continues after the last completed one.
//!
//! Decisions: the front matter is edited line by line, not re-serialized,
//! so whatever else it holds (the template's keys, the model's) stays as
//! written; `stepsCompleted` is rewritten as a flow sequence. A reply's own
//! front matter counts only for the step that starts the document (a model
//! filling the template's front matter); later ones are dropped, since the
//! document's front matter is bmad2pf's. Entries are matched to steps as
//! BMAD writes them: the step id, the file name with `.md`, or the step's
//! number (`[1, 2]`).

const FENCE: &str = "---";
const KEY: &str = "stepsCompleted:";

/// `text` split into its front matter (the lines between the fences) and
/// its body; no front matter when it does not open with a fence that closes.
fn split(text: &str) -> (Option<&str>, &str) {
    let Some(rest) = text
        .strip_prefix(FENCE)
        .and_then(|r| r.strip_prefix('\n').or_else(|| r.strip_prefix("\r\n")))
    else {
        return (None, text);
    };
    let mut offset = 0;
    for line in rest.split_inclusive('\n') {
        if line.trim_end() == FENCE {
            return (Some(&rest[..offset]), &rest[offset + line.len()..]);
        }
        offset += line.len();
    }
    (None, text)
}

/// The `stepsCompleted` entries of front matter `front`, as written
/// (quotes removed), and its other lines.
fn read_completed(front: &str) -> (Vec<String>, Vec<&str>) {
    let mut completed = Vec::new();
    let mut others = Vec::new();
    let mut in_block = false;
    for line in front.lines() {
        if let Some(value) = line.strip_prefix(KEY) {
            let value = value.trim();
            in_block = value.is_empty();
            if let Some(items) = value.strip_prefix('[').and_then(|v| v.strip_suffix(']')) {
                completed.extend(items.split(',').map(unquote).filter(|i| !i.is_empty()));
            }
            continue;
        }
        if in_block && let Some(item) = line.trim_start().strip_prefix("- ") {
            completed.push(unquote(item));
            continue;
        }
        in_block = false;
        others.push(line);
    }
    (completed, others)
}

fn unquote(item: &str) -> String {
    item.trim().trim_matches(['"', '\'']).to_string()
}

/// Whether entry `entry` of `stepsCompleted` names step `step`.
fn names_step(entry: &str, step: &str) -> bool {
    if entry == step || entry.strip_suffix(".md") == Some(step) {
        return true;
    }
    let number = |id: &str| -> Option<u32> {
        let digits: String = id
            .strip_prefix("step-")?
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    };
    entry
        .parse::<u32>()
        .ok()
        .is_some_and(|n| number(step) == Some(n))
}

/// Whether document `text` lists `step` as completed.
pub(super) fn completed(text: &str, step: &str) -> bool {
    let (Some(front), _) = split(text) else {
        return false;
    };
    read_completed(front).0.iter().any(|e| names_step(e, step))
}

/// The document after `step` replied `reply` (its `ACTION:` line already
/// removed), given the document as it was (`None`: this step starts it).
pub(super) fn grow(existing: Option<&str>, reply: &str, step: &str) -> String {
    let (reply_front, reply_body) = split(reply);
    let (front, body) = match existing {
        None => (reply_front, reply_body.trim().to_string()),
        Some(text) => {
            let (front, body) = split(text);
            let body = format!("{}\n\n{}", body.trim_end(), reply_body.trim());
            (front, body.trim_start().to_string())
        }
    };
    let (mut completed, others) = read_completed(front.unwrap_or_default());
    if !completed.iter().any(|e| names_step(e, step)) {
        completed.push(step.to_string());
    }
    let mut out = String::from("---\n");
    for line in others {
        out.push_str(line);
        out.push('\n');
    }
    out.push_str(&format!("{KEY} [{}]\n---\n\n", completed.join(", ")));
    out.push_str(&body);
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_grows_and_records_each_step() {
        let first = grow(None, "# Menu\n\n12 guests", "step-01-guests");
        assert_eq!(
            first,
            "---\nstepsCompleted: [step-01-guests]\n---\n\n# Menu\n\n12 guests\n"
        );
        let second = grow(Some(&first), "## Dishes\nbrisket", "step-02-dishes");
        assert_eq!(
            second,
            "---\nstepsCompleted: [step-01-guests, step-02-dishes]\n---\n\n# Menu\n\n12 guests\n\n## Dishes\nbrisket\n"
        );
        assert!(completed(&second, "step-02-dishes"));
        assert!(!completed(&second, "step-03-review"));
        // The same step again (a loop) is listed once.
        let again = grow(Some(&second), "more", "step-02-dishes");
        assert!(again.starts_with("---\nstepsCompleted: [step-01-guests, step-02-dishes]\n"));
    }

    #[test]
    fn front_matter_is_kept_and_read_as_bmad_writes_it() {
        // The model filled the template's front matter: kept, the list set.
        let filled = "---\ntitle: Menu\nstepsCompleted: []\n---\n# Menu\n";
        assert_eq!(
            grow(None, filled, "step-01-guests"),
            "---\ntitle: Menu\nstepsCompleted: [step-01-guests]\n---\n\n# Menu\n"
        );
        // A block list, with names and numbers; a later reply's front matter is dropped.
        let block = "---\nstepsCompleted:\n  - 'step-01-guests.md'\n  - 2\nowner: sam\n---\nBody\n";
        assert!(completed(block, "step-01-guests"));
        assert!(completed(block, "step-02-dishes"));
        assert!(!completed(block, "step-03-review"));
        let grown = grow(Some(block), "---\nx: y\n---\nMore", "step-03-review");
        assert_eq!(
            grown,
            "---\nowner: sam\nstepsCompleted: [step-01-guests.md, 2, step-03-review]\n---\n\nBody\n\nMore\n"
        );
        // No front matter, or one that never closes: nothing completed.
        assert!(!completed("Body", "step-01-guests"));
        assert!(!completed("---\nstepsCompleted: [a]\nno end", "a"));
    }
}
