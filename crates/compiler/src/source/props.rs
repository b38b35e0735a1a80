//! Property tests: the source parsers never panic, whatever they are fed
//! (SPEC 1.5: "Parsers never panic on any input"). Arbitrary text, and
//! front matter assembled from real field names with odd values.

use super::agent::{AgentContext, V1_FIELDS, V2_ONLY_FIELDS, parse_agent};
use super::parse_runtime;
use super::template::convert_legacy;
use super::tools::parse_tools;
use super::workflow::{AgentIndex, parse_workflow};
use crate::bundle::{AgentSpec, ToolSpec};
use crate::diag::Diagnostics;
use crate::sourcefs::SourceSnapshot;
use crate::yaml;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Every front matter key of both formats, and a misspelt one.
fn fields() -> Vec<&'static str> {
    let mut fields: Vec<&str> = V1_FIELDS.iter().chain(&V2_ONLY_FIELDS).copied().collect();
    fields.push("tols");
    fields
}

const VALUES: &[&str] = &[
    "",
    "null",
    "~",
    "pm",
    "9x",
    "\"*go\"",
    "[a, b]",
    "[\"*a\", {\"*b\": c}]",
    "{docs: [x], agents: [y]}",
    "{provider: mock, temperature: 9}",
    "shared:",
    "shared:ns",
    "-1",
    "99999999999999999999",
    "1.0",
    "2",
    "true",
    "[{step: s, action: tool_call}]",
    "[{step: s, action: checklist, checklist: q}]",
    "{type: object}",
    "schema.json",
    "[[[]]]",
    "&a [*a]",
    "{a: {b: {c: [d]}}}",
    "'{{ input }}'",
    "|\n  multi\n  line",
    "[../../etc/passwd]",
    "x.yaml",
    "[word_count, nope]",
    "\"\\u0000\"",
];

const BODIES: &[&str] = &[
    "",
    "{input}",
    "{{ input }}",
    "{% if %}",
    "{{ docs[\"a\"] }}",
    "{\"json\": {\"x\": 1}}",
    "{{",
    "}}",
    "{%",
    "{# c",
    "{{ nope }}",
    "{% for d in docs %}{{ d }}{% endfor %}",
    "é™😀\u{2011}",
    "\r\n",
];

fn front_matter() -> impl Strategy<Value = String> {
    let entry = (
        prop::sample::select(fields()),
        prop_oneof![
            prop::sample::select(VALUES).prop_map(str::to_string),
            ".{0,20}"
        ],
    );
    (
        prop::collection::vec(entry, 0..8),
        prop::collection::vec(prop::sample::select(BODIES), 0..4),
    )
        .prop_map(|(entries, body)| {
            let mut text = String::from("---\n");
            for (key, value) in entries {
                text.push_str(&format!("{key}: {value}\n"));
            }
            text.push_str("---\n");
            text.push_str(&body.concat());
            text
        })
}

fn parse_agent_text(text: &str) {
    let tools: BTreeMap<String, ToolSpec> = BTreeMap::new();
    let files = SourceSnapshot::load(Path::new("/nonexistent-bmad2pf-src"));
    let mut ctx = AgentContext::new(&files, &tools);
    let mut d = Diagnostics::new();
    let _ = parse_agent(&mut ctx, "agents/a.md", text, &mut d);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn agent_parser_never_panics_on_text(text in "\\PC{0,400}") {
        parse_agent_text(&text);
        parse_agent_text(&format!("---\n{text}\n---\n{text}"));
    }

    #[test]
    fn agent_parser_never_panics_on_front_matter(text in front_matter()) {
        parse_agent_text(&text);
    }

    #[test]
    fn workflow_and_tools_parsers_never_panic(text in "\\PC{0,400}", value in prop::sample::select(VALUES)) {
        let agents: BTreeMap<String, AgentSpec> = BTreeMap::new();
        let unreadable = BTreeSet::new();
        let index = AgentIndex { agents: &agents, unreadable: &unreadable };
        let mut d = Diagnostics::new();
        let _ = parse_workflow(&text, "workflow.yaml", index, &mut d);
        let structured = format!("flows:\n  f:\n    steps:\n      - agent: {value}\n        next: {value}\n        id: {value}\n    max_visits: {value}\n");
        let _ = parse_workflow(&structured, "workflow.yaml", index, &mut d);
        let _ = parse_tools(&text, "tools.yaml", &SourceSnapshot::default(), &mut d);
        let tool = format!("tools:\n  t:\n    kind: http\n    url: {value}\n    parameters: {value}\n    method: {value}\n");
        let _ = parse_tools(&tool, "tools.yaml", &SourceSnapshot::default(), &mut d);
        let _ = parse_runtime(&text, "runtime.yaml", &mut d);
        let _ = parse_runtime(&format!("llm: {value}\nserver: {{port: {value}}}\n"), "runtime.yaml", &mut d);
    }

    #[test]
    fn yaml_parser_never_panics(text in "\\PC{0,400}", offset in 0u32..1000) {
        let mut d = Diagnostics::new();
        let _ = yaml::parse(&text, "f.yaml", offset, &mut d);
    }

    #[test]
    fn legacy_conversion_only_adds_braces(text in "[{}a-z_ \"]{0,80}") {
        let converted = convert_legacy(&text);
        prop_assert!(converted.len() >= text.len());
        if !text.contains('{') {
            prop_assert_eq!(converted, text);
        }
    }
}
