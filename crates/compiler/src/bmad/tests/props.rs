//! The BMAD parsers never panic and never report an error on arbitrary text:
//! whatever an agent file, workflow, template or team file holds, the result
//! is warnings at worst (SPEC 1.5, 1.6).

use super::support::read_files;
use crate::bmad::{agent, template, workflow};
use crate::diag::Diagnostics;
use proptest::prelude::*;

/// Arbitrary text, plain or wrapped so that it reaches the YAML stage.
fn agentish() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        any::<String>().prop_map(|s| format!("# x\n```yaml\n{s}\n```\n")),
        any::<String>().prop_map(|s| format!("```yml\nagent:\n  id: a\n{s}\n```")),
        "[a-z:\\-\\* \\n{}\\[\\]'\"#|>`]{0,200}"
            .prop_map(|s| format!("```yaml\nagent: {{id: a}}\ncommands:\n{s}\n```")),
        "[a-z:\\-\\* \\n{}\\[\\]'\"#]{0,200}"
            .prop_map(|s| format!("```yaml\nagent: {{id: a}}\ndependencies:\n  tasks:\n{s}\n```")),
    ]
}

fn workflowish() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-z_:\\- \\n(){}\\[\\]/,.]{0,300}"
            .prop_map(|s| format!("workflow:\n  id: w\n  sequence:\n{s}")),
        "[a-z_:\\- \\n(){}\\[\\]/,.]{0,300}".prop_map(|s| format!("workflow:\n  phases:\n{s}")),
        "[a-z_:\\- \\n(){}\\[\\]/,.]{0,300}".prop_map(|s| format!("steps:\n{s}")),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn agent_parser_never_panics_or_errors(text in agentish()) {
        let mut diags = Diagnostics::new();
        let _ = agent::parse_agent(&text, "agents/a.md", &mut diags);
        prop_assert!(!diags.has_errors(), "{:?}", diags);
    }

    #[test]
    fn workflow_parser_never_panics_or_errors(text in workflowish()) {
        let mut diags = Diagnostics::new();
        if let Some(draft) = workflow::parse_workflow(&text, "workflows/w.yaml", &mut diags) {
            let resolve = |name: &str| (name == "pm").then(|| "pm".to_string());
            for list in &draft.lists {
                let steps = workflow::build_steps(&list.entries, "workflows/w.yaml", &resolve, &mut diags);
                let mut ids: Vec<&str> = steps.iter().map(|s| s.id.as_str()).collect();
                ids.dedup();
                prop_assert_eq!(ids.len(), steps.len());
            }
        }
        prop_assert!(!diags.has_errors(), "{:?}", diags);
    }

    #[test]
    fn template_renderer_never_panics(text in any::<String>()) {
        let mut diags = Diagnostics::new();
        let _ = template::render_outline(&text, "templates/t-tmpl.yaml", &mut diags);
        prop_assert!(!diags.has_errors());
    }
}

proptest! {
    // Each case writes a real tree to disk: fewer cases, same guarantee end to end.
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn whole_tree_read_never_errors(agent_text in agentish(), flow_text in workflowish(), team_text in any::<String>()) {
        let (_, diags) = read_files(&[
            ("agents/a.md", agent_text.as_str()),
            ("agents/b.md", "```yaml\nagent: {id: b}\n```\n"),
            ("workflows/w.yaml", flow_text.as_str()),
            ("agent-teams/t.yaml", team_text.as_str()),
        ]);
        prop_assert!(!diags.has_errors(), "{:?}", diags);
    }
}
