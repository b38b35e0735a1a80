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
    if !files.is_file(&rel) {
        return Vec::new();
    }
    let text = match files.text(&rel) {
        Ok(text) => text,
        Err(message) => {
            let why = format!("{message}: the catalogue names no owners");
            diags.warning("bmad-read", &rel, Pos::new(1, 1), why);
            return Vec::new();
        }
    };
    let Csv {
        records,
        unclosed_quote,
    } = parse_csv(text);
    if let Some(line) = unclosed_quote {
        diags.warning(
            "bmad-help-csv",
            &rel,
            Pos::new(line, 1),
            "a quoted field opened in this row is never closed: this row and those after it are not read",
        );
    }
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

/// What [`parse_csv`] read.
#[derive(Debug, PartialEq)]
struct Csv {
    /// The records with the line each starts on.
    records: Vec<(u32, Vec<String>)>,
    /// The line of the record whose quoted field never closes (left out of
    /// `records`: the rest of the file would be one field of it).
    unclosed_quote: Option<u32>,
}

/// CSV records: quoted fields may hold commas, doubled quotes and line
/// breaks; blank lines are skipped.
fn parse_csv(text: &str) -> Csv {
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
    if quoted {
        return Csv {
            records,
            unclosed_quote: Some(start),
        };
    }
    row.push(field);
    if row.iter().any(|f| !f.trim().is_empty()) {
        records.push((start, row));
    }
    Csv {
        records,
        unclosed_quote: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_fields_and_loose_rows() {
        let csv = parse_csv("a,b,\n\"x, \"\"y\"\"\",\"two\nlines\",z,extra\n\n1,2\n");
        assert_eq!(csv.unclosed_quote, None);
        assert_eq!(
            csv.records,
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

    #[test]
    fn an_unclosed_quote_stops_the_rows_at_its_own() {
        let csv = parse_csv("a,b\n1,2\n\"3,4\n5,6\n");
        assert_eq!(
            csv.records,
            vec![
                (1, vec!["a".into(), "b".into()]),
                (2, vec!["1".into(), "2".into()])
            ]
        );
        assert_eq!(csv.unclosed_quote, Some(3));
    }

    #[test]
    fn a_catalogue_that_cannot_be_read_says_so() -> Result<(), String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let broken: [(&str, &[u8]); 2] = [
            ("latin1", b"module,name,agent\nacme,G\xe9,core/master\n"),
            ("quote", b"module,name,agent\nacme,\"Go,core/master\n"),
        ];
        for (folder, bytes) in broken {
            std::fs::create_dir_all(dir.path().join(folder)).map_err(|e| e.to_string())?;
            std::fs::write(dir.path().join(folder).join(HELP_FILE), bytes)
                .map_err(|e| e.to_string())?;
        }
        let files = SourceSnapshot::load(dir.path());
        for (folder, code) in [("latin1", "bmad-read"), ("quote", "bmad-help-csv")] {
            let mut diags = Diagnostics::new();
            assert_eq!(read_help(&files, folder, "acme", &mut diags), []);
            let codes: Vec<&str> = diags.iter().map(|d| d.code).collect();
            assert_eq!(codes, [code], "{folder}");
        }
        Ok(())
    }
}
