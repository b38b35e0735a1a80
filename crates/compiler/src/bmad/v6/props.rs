//! Property tests: arbitrary bytes in the files the v6 / skills importer
//! reads (SKILL.md, step files, customize.toml, agent YAML) never panic.

use super::layout::detect;
use crate::config::BmadConfig;
use crate::diag::Diagnostics;
use crate::sourcefs::SourceSnapshot;
use proptest::prelude::*;

/// Text that looks enough like BMAD files to reach the deeper readers.
fn bmad_text() -> impl Strategy<Value = String> {
    let pieces = prop::collection::vec(
        prop_oneof![
            Just("---\n".to_string()),
            Just("name: x\n".to_string()),
            Just("nextStepFile: './step-02-b.md'\n".to_string()),
            Just("altStepFile: ../step-01-a.md\n".to_string()),
            Just("load ./step-03-c.md\n".to_string()),
            Just("[C] Continue {output_folder} {{x}} {\n".to_string()),
            Just("[agent]\nrole = 'r'\n[[agent.menu]]\ncode = 'A'\nskill = 'b'\n".to_string()),
            Just("agent:\n  menu:\n    - trigger: X\n      exec: a.md\n".to_string()),
            Just("'\\''\n".to_string()),
            "\\PC{0,20}",
        ],
        0..12,
    );
    pieces.prop_map(|p| p.concat())
}

fn compile_tree(files: &[(&str, Vec<u8>)]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
    for (rel, bytes) in files {
        let path = dir.path().join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| TestCaseError::fail(e.to_string()))?;
        }
        std::fs::write(&path, bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
    }
    let snapshot = SourceSnapshot::load(dir.path());
    let layout = detect(&snapshot).ok_or_else(|| TestCaseError::fail("no layout"))?;
    let mut diags = Diagnostics::new();
    let _ = super::read(&snapshot, &layout, &BmadConfig::default(), &mut diags);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn skill_files_never_panic(skill in bmad_text(), step in bmad_text(), toml in bmad_text(), raw in prop::collection::vec(any::<u8>(), 0..200)) {
        compile_tree(&[
            ("s/SKILL.md", skill.into_bytes()),
            ("s/step-01-a.md", step.clone().into_bytes()),
            ("s/step-02-b.md", raw.clone()),
            ("s/customize.toml", toml.into_bytes()),
            ("t/SKILL.md", raw),
            ("t/step-01-a.md", step.into_bytes()),
        ])?;
    }

    #[test]
    fn module_files_never_panic(agent in bmad_text(), workflow in bmad_text(), step in bmad_text(), module in bmad_text()) {
        compile_tree(&[
            ("m/module.yaml", module.into_bytes()),
            ("m/agents/a.agent.yaml", agent.into_bytes()),
            ("m/workflows/w/workflow.md", workflow.clone().into_bytes()),
            ("m/workflows/w/steps/step-01-a.md", step.clone().into_bytes()),
            ("m/workflows/w/steps/step-02-b.md", workflow.into_bytes()),
            ("m/workflows/y/workflow.yaml", step.into_bytes()),
        ])?;
    }
}
