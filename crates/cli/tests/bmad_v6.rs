//! Black-box tests of BMAD v6 and skills sources (SPEC 1.7) through the
//! binary: `validate`'s summary line names the layout, and a step-file flow
//! runs end to end on the mock LLM, one document growing step by step.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name)
}

/// Runs the binary in `cwd` (where relative store paths land).
fn bmad2pf(cwd: &Path, args: &[&str]) -> std::io::Result<Output> {
    Command::new(env!("CARGO_BIN_EXE_bmad2pf"))
        .current_dir(cwd)
        .args(args)
        .output()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn validate_names_the_layout() -> TestResult {
    let dir = tempfile::tempdir()?;
    for (name, line) in [
        (
            "bmad-v6",
            "valid: 3 agents, 3 flows (BMAD v6 module tree: 2 modules, 0 skills, 7 steps)\n",
        ),
        (
            "bmad-skills",
            "valid: 1 agent, 2 flows (BMAD skills: 2 modules, 3 skills, 5 steps)\n",
        ),
    ] {
        let src = example(name);
        let out = bmad2pf(
            dir.path(),
            &["validate", "--src", src.to_str().unwrap_or_default()],
        )?;
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout), line);
        let json = bmad2pf(
            dir.path(),
            &[
                "validate",
                "--src",
                src.to_str().unwrap_or_default(),
                "--format",
                "json",
            ],
        )?;
        let report: serde_json::Value = serde_json::from_slice(&json.stdout)?;
        assert!(line.contains(report["summary"]["layout"].as_str().unwrap_or("none")));
    }
    Ok(())
}

#[test]
fn a_step_file_flow_runs_on_the_mock() -> TestResult {
    let dir = tempfile::tempdir()?;
    let src = example("bmad-v6");
    let out = bmad2pf(
        dir.path(),
        &[
            "run",
            "bbq/plan-menu",
            "--story",
            "s1",
            "--input",
            "a garden party for 12",
            "--src",
            src.to_str().unwrap_or_default(),
            "--json",
            "--headless",
        ],
    )?;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let outcome: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(outcome["status"], "success");
    // The steps that wait for a person were offered `ask_human`; the mock
    // asks once in each, and headless each question is answered on
    // assumptions and listed.
    let asked: Vec<&str> = outcome["open_questions"]
        .as_array()
        .map(|q| q.iter().filter_map(|q| q["step"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        asked,
        ["step-01-guests", "step-02-dishes", "step-03-review"],
        "{outcome}"
    );
    assert_eq!(outcome["results"]["bbq/pitmaster"]["status"], "completed");
    assert_eq!(
        outcome["results"]["bbq/pitmaster"]["document"],
        "s1__menu-plan"
    );
    // Every step of the chain ran (the mock never returns a route action).
    let progress = text(&out.stderr);
    assert_eq!(progress.matches("completed").count(), 4, "{progress}");
    // Each step's task (the runtime note, then the step file's text) is
    // the model's message: the mock echoes its start. The document grew
    // by one reply per step, and lists every step that ran.
    let document = std::fs::read_to_string(dir.path().join(".bmad2pf/docs/s1__menu-plan.md"))?;
    assert!(
        document.starts_with("---\nstepsCompleted: [step-01-guests, step-02-dishes, step-03-review, step-04-done]\n---\n"),
        "{document}"
    );
    assert_eq!(
        document
            .matches("You are running one step of a BMAD workflow")
            .count(),
        4,
        "{document}"
    );
    Ok(())
}

#[test]
fn a_step_that_waits_for_a_person_asks_and_its_answer_resumes_the_flow() -> TestResult {
    let dir = tempfile::tempdir()?;
    let src = example("bmad-v6");
    let src = src.to_str().unwrap_or_default();
    let run = |args: &[&str]| bmad2pf(dir.path(), args);
    let out = run(&[
        "run",
        "bbq/plan-menu",
        "--story",
        "s2",
        "--src",
        src,
        "--json",
    ])?;
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    let waiting: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let question = &waiting["interrupts"][0];
    assert_eq!(question["step"], "step-01-guests", "{waiting}");
    assert_eq!(question["agent"], "bbq/pitmaster");
    let run_id = waiting["run_id"].as_str().ok_or("a run id")?;

    // The answer continues the first step; the next step that waits asks.
    let out = run(&[
        "resume",
        run_id,
        "--answer",
        "12 guests, two vegetarians",
        "--src",
        src,
        "--json",
    ])?;
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    let next: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let open: Vec<&str> = next["interrupts"]
        .as_array()
        .map(|all| {
            all.iter()
                .filter(|i| i["status"] == "open")
                .filter_map(|i| i["step"].as_str())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(open, ["step-02-dishes"], "{next}");
    // Open questions are listed first.
    assert_eq!(next["interrupts"][0]["status"], "open");
    assert_eq!(
        next["interrupts"][1]["answer"],
        "12 guests, two vegetarians"
    );

    // Stopped there and run again: the first step is in the document's
    // stepsCompleted, so the rerun continues with the second.
    let out = run(&["cancel", run_id, "--src", src])?;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let document = std::fs::read_to_string(dir.path().join(".bmad2pf/docs/s2__menu-plan.md"))?;
    assert!(
        document.starts_with("---\nstepsCompleted: [step-01-guests]\n"),
        "{document}"
    );
    let out = run(&[
        "run",
        "bbq/plan-menu",
        "--story",
        "s2",
        "--src",
        src,
        "--headless",
    ])?;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let progress = text(&out.stderr);
    assert_eq!(progress.matches("started").count(), 3, "{progress}");
    let document = std::fs::read_to_string(dir.path().join(".bmad2pf/docs/s2__menu-plan.md"))?;
    assert!(
        document.starts_with(
            "---\nstepsCompleted: [step-01-guests, step-02-dishes, step-03-review, step-04-done]\n"
        ),
        "{document}"
    );
    Ok(())
}
