//! `module-help.csv`: a module's help catalogue, read for one thing — which
//! agent runs each workflow (SPEC 1.7, "Owner": a flow runs as the `agent`
//! of its row). Rows name their flow by `command` (`bmad-bbq-plan-menu`)
//! or `workflow-file`. The file is metadata otherwise, and loose: a trailing
//! empty header column and rows one field too long are read as they come.

use crate::diag::{Diagnostics, Pos};
use crate::sourcefs::SourceSnapshot;

/// The catalogue's file name in a module folder.
pub const HELP_FILE: &str = "module-help.csv";

/// One row that names an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelpRow {
    /// The module whose catalogue it is (names resolve there first).
    pub module: String,
    pub file: String,
    pub line: u32,
    pub agent: String,
    /// `command` value, when the row has one.
    pub command: Option<String>,
    /// `workflow-file` value, when the row has one.
    pub workflow_file: Option<String>,
}

/// The rows with an `agent` of `<dir>/module-help.csv`, if there is one.
pub fn read_help(
    files: &SourceSnapshot,
    dir: &str,
    module: &str,
    diags: &mut Diagnostics,
) -> Vec<HelpRow> {
    let rel = crate::sourcefs::join_rel(dir, HELP_FILE);
    let Ok(text) = files.text(&rel) else {
        return Vec::new();
    };
    let records = parse_csv(text);
    let Some((_, header)) = records.first() else {
        return Vec::new();
    };
    let column = |name: &str| header.iter().position(|h| h.trim() == name);
    let Some(agent_col) = column("agent") else {
        diags.warning(
            "bmad-help-csv",
            &rel,
            Pos::new(1, 1),
            "no `agent` column: the catalogue names no owners",
        );
        return Vec::new();
    };
    let command_col = column("command");
    let file_col = column("workflow-file");
    let cell = |row: &[String], col: Option<usize>| {
        col.and_then(|c| row.get(c))
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    records[1..]
        .iter()
        .filter_map(|(line, row)| {
            Some(HelpRow {
                module: module.to_string(),
                file: rel.clone(),
                line: *line,
                agent: cell(row, Some(agent_col))?,
                command: cell(row, command_col),
                workflow_file: cell(row, file_col),
            })
        })
        .collect()
}

/// CSV records with the line each starts on: quoted fields may hold commas,
/// doubled quotes and line breaks; blank lines are skipped.
fn parse_csv(text: &str) -> Vec<(u32, Vec<String>)> {
    let mut records = Vec::new();
    let mut row: Vec<String> = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut line: u32 = 1;
    let mut start = 1;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => row.push(std::mem::take(&mut field)),
            '\r' if !quoted => {}
            '\n' if !quoted => {
                row.push(std::mem::take(&mut field));
                if row.iter().any(|f| !f.trim().is_empty()) {
                    records.push((start, std::mem::take(&mut row)));
                }
                row.clear();
                line += 1;
                start = line;
            }
            c => {
                if c == '\n' {
                    line += 1;
                }
                field.push(c);
            }
        }
    }
    row.push(field);
    if row.iter().any(|f| !f.trim().is_empty()) {
        records.push((start, row));
    }
    records
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_fields_and_loose_rows() {
        let records = parse_csv("a,b,\n\"x, \"\"y\"\"\",\"two\nlines\",z,extra\n\n1,2\n");
        assert_eq!(
            records,
            vec![
                (1, vec!["a".into(), "b".into(), String::new()]),
                (
                    2,
                    vec![
                        "x, \"y\"".into(),
                        "two\nlines".into(),
                        "z".into(),
                        "extra".into()
                    ]
                ),
                (5, vec!["1".into(), "2".into()]),
            ]
        );
    }
}
