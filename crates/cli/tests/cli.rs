//! Black-box tests of the `bmad2pf` binary: generate, validate, graph,
//! --check, --help and --version, run as real processes on temp dirs.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn bmad2pf(args: &[&str]) -> Result<Output, std::io::Error> {
    Command::new(env!("CARGO_BIN_EXE_bmad2pf"))
        .args(args)
        .output()
}

fn code(output: &Output) -> Option<i32> {
    output.status.code()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap_or_default()
}

/// The planning example shipped with the repository.
fn planning_example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/planning")
}

/// A small preprocessing tree: analyst, then pm and architect in parallel,
/// then a review loop; two flows.
fn write_sources(src: &Path) -> TestResult {
    let files: [(&str, &str); 5] = [
        (
            "agents/analyst.md",
            "---\nid: analyst\ndescription: Writes the brief.\ncreates: [brief.md]\n---\nIdea: {input}\n",
        ),
        (
            "agents/pm.md",
            "---\nid: pm\ndescription: Writes the PRD.\nrequires: [brief.md]\ncreates: [prd.md]\nparallel: true\n---\nBrief: {{ docs[\"brief.md\"] }}\n",
        ),
        (
            "agents/architect.md",
            "---\nid: architect\ndescription: Designs.\nrequires: [brief.md]\ncreates: [architecture.md]\nparallel: true\n---\nStory {story_id}.\n",
        ),
        (
            "agents/po.md",
            "---\nid: po\ndescription: Reviews.\nrequires: [prd.md]\ncommands:\n  - \"*approve\": accept\n  - \"*revise\": send back\n---\nReview {{ docs[\"prd.md\"] }}\n",
        ),
        (
            "workflow.yaml",
            "flows:\n  planning:\n    steps:\n      - agents: [analyst]\n      - id: design\n        agents: [pm, architect]\n      - id: review\n        agent: po\n        next: {\"*revise\": design, \"*approve\": end}\n  brief:\n    steps:\n      - agent: analyst\n",
        ),
    ];
    for (rel, text) in files {
        let path = src.join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(path, text)?;
    }
    Ok(())
}

/// Every file under `dir`: relative path → bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in fs::read_dir(&current).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if let (Ok(rel), Ok(bytes)) = (path.strip_prefix(dir), fs::read(&path)) {
                files.insert(rel.to_string_lossy().replace('\\', "/"), bytes);
            }
        }
    }
    files
}

fn generate(src: &Path, out: &Path, extra: &[&str]) -> Result<Output, std::io::Error> {
    let mut args = vec!["generate", "--src", path_str(src), "--out", path_str(out)];
    args.extend_from_slice(extra);
    bmad2pf(&args)
}

#[test]
fn generating_twice_gives_identical_bytes() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (first, second) = (tmp.path().join("first"), tmp.path().join("second"));
    let example = planning_example();
    assert_eq!(code(&generate(&example, &first, &[])?), Some(0));
    let before = snapshot(&first);
    assert_eq!(code(&generate(&example, &first, &[])?), Some(0));
    assert_eq!(snapshot(&first), before, "a rerun changed the bundle");
    assert_eq!(code(&generate(&example, &second, &[])?), Some(0));
    assert_eq!(snapshot(&second), before, "another output dir differs");

    for expected in [
        "bundle.json",
        "bundle.schema.json",
        "graph.mmd",
        "manifest.json",
        "runtime.yaml",
        "prompts/analyst.md",
        "prompts/po.md",
    ] {
        assert!(before.contains_key(expected), "missing {expected}");
    }
    // The source runtime.yaml is copied when the output has none.
    assert_eq!(
        before["runtime.yaml"],
        fs::read(example.join("runtime.yaml"))?
    );
    Ok(())
}

#[test]
fn short_form_is_generate() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let src = tmp.path().join("src");
    write_sources(&src)?;
    let (long, short) = (tmp.path().join("long"), tmp.path().join("short"));
    assert_eq!(code(&generate(&src, &long, &["-q"])?), Some(0));
    let output = bmad2pf(&["--src", path_str(&src), "--out", path_str(&short), "-q"])?;
    assert_eq!(code(&output), Some(0), "{}", stderr(&output));
    assert_eq!(snapshot(&short), snapshot(&long));
    Ok(())
}

#[test]
fn progress_quiet_and_verbose() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let src = tmp.path().join("src");
    write_sources(&src)?;
    let out = tmp.path().join("out");

    let normal = generate(&src, &out, &[])?;
    let text = stderr(&normal);
    assert!(text.contains("read "), "{text}");
    assert!(text.contains("write "), "{text}");
    assert!(text.contains("compiled 4 agents, 2 flows in "), "{text}");
    assert!(stdout(&normal).is_empty());

    let verbose = generate(&src, &out, &["-v"])?;
    let detail = stderr(&verbose);
    assert!(detail.contains("  bundle.json ("), "{detail}");
    assert!(
        detail.contains("unchanged since the previous bundle"),
        "{detail}"
    );
    assert!(detail.contains("kept runtime.yaml"), "{detail}");

    let quiet = generate(&src, &out, &["-q"])?;
    assert_eq!(code(&quiet), Some(0));
    assert_eq!(stderr(&quiet), "");
    Ok(())
}

#[test]
fn stale_files_are_removed() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let src = tmp.path().join("src");
    write_sources(&src)?;
    let out = tmp.path().join("out");
    assert_eq!(code(&generate(&src, &out, &["-q"])?), Some(0));
    assert!(out.join("prompts/architect.md").is_file());
    fs::write(out.join("prompts/leftover.md"), "from an older run")?;

    fs::remove_file(src.join("agents/architect.md"))?;
    let workflow = fs::read_to_string(src.join("workflow.yaml"))?;
    fs::write(
        src.join("workflow.yaml"),
        workflow.replace("[pm, architect]", "[pm]"),
    )?;
    let output = generate(&src, &out, &["-q"])?;
    assert_eq!(code(&output), Some(0), "{}", stderr(&output));
    assert!(!out.join("prompts/architect.md").exists());
    assert!(!out.join("prompts/leftover.md").exists());
    assert!(!String::from_utf8(fs::read(out.join("manifest.json"))?)?.contains("architect"));
    Ok(())
}

#[test]
fn runtime_yaml_in_the_output_is_never_overwritten() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let src = tmp.path().join("src");
    write_sources(&src)?;
    let out = tmp.path().join("out");
    assert_eq!(code(&generate(&src, &out, &["-q"])?), Some(0));
    // No runtime.yaml in the sources: the commented defaults are written.
    let defaults = fs::read_to_string(out.join("runtime.yaml"))?;
    assert!(defaults.contains("provider: mock"), "{defaults}");

    let edited = "llm:\n  provider: openai\n";
    fs::write(out.join("runtime.yaml"), edited)?;
    fs::write(src.join("runtime.yaml"), "llm: {provider: anthropic}\n")?;
    assert_eq!(code(&generate(&src, &out, &["-q"])?), Some(0));
    assert_eq!(fs::read_to_string(out.join("runtime.yaml"))?, edited);
    Ok(())
}

#[test]
fn failing_sources_leave_the_previous_bundle_and_write_nothing() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let src = tmp.path().join("src");
    write_sources(&src)?;
    let out = tmp.path().join("out");
    assert_eq!(code(&generate(&src, &out, &["-q"])?), Some(0));
    let before = snapshot(&out);

    let pm = fs::read_to_string(src.join("agents/pm.md"))?;
    fs::write(
        src.join("agents/pm.md"),
        pm.replace("parallel:", "paralel:"),
    )?;
    let output = generate(&src, &out, &[])?;
    assert_eq!(code(&output), Some(1));
    let text = stderr(&output);
    assert!(text.contains("agents/pm.md:"), "{text}");
    assert!(text.contains("error[unknown-key]"), "{text}");
    assert!(text.contains("error: 1 error"), "{text}");
    assert_eq!(snapshot(&out), before);
    let entries = fs::read_dir(tmp.path())?.count();
    assert_eq!(entries, 2, "something besides src/ and out/ was written");

    let fresh = tmp.path().join("fresh");
    assert_eq!(code(&generate(&src, &fresh, &["-q"])?), Some(1));
    assert!(!fresh.exists());
    Ok(())
}

#[test]
fn refuses_to_replace_a_directory_that_is_not_a_bundle() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let src = tmp.path().join("src");
    write_sources(&src)?;
    let out = tmp.path().join("home");
    fs::create_dir(&out)?;
    fs::write(out.join("notes.txt"), "mine")?;
    let output = generate(&src, &out, &["-q"])?;
    assert_eq!(code(&output), Some(2));
    assert!(
        stderr(&output).contains("refusing to replace it"),
        "{}",
        stderr(&output)
    );
    assert_eq!(fs::read_to_string(out.join("notes.txt"))?, "mine");
    Ok(())
}

#[test]
fn check_reports_up_to_date_and_differences() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let src = tmp.path().join("src");
    write_sources(&src)?;
    let out = tmp.path().join("out");

    let missing = generate(&src, &out, &["--check", "-q"])?;
    assert_eq!(code(&missing), Some(1));
    assert!(stdout(&missing).contains("missing  bundle.json"));
    assert!(!out.exists(), "--check wrote something");

    assert_eq!(code(&generate(&src, &out, &["-q"])?), Some(0));
    let fresh = generate(&src, &out, &["--check", "-q"])?;
    assert_eq!(code(&fresh), Some(0));
    assert_eq!(stdout(&fresh), "up to date\n");

    let po = fs::read_to_string(src.join("agents/po.md"))?;
    fs::write(
        src.join("agents/po.md"),
        po.replace("Reviews.", "Reviews it all."),
    )?;
    fs::write(out.join("prompts/old.md"), "stale")?;
    let before = snapshot(&out);
    let changed = generate(&src, &out, &["--check", "-q"])?;
    assert_eq!(code(&changed), Some(1));
    let lines = stdout(&changed);
    assert!(lines.contains("changed  bundle.json\n"), "{lines}");
    assert!(lines.contains("changed  manifest.json\n"), "{lines}");
    assert!(lines.contains("stale    prompts/old.md\n"), "{lines}");
    assert_eq!(snapshot(&out), before, "--check wrote something");

    let json = generate(&src, &out, &["--check", "--format", "json", "-q"])?;
    assert_eq!(code(&json), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&json.stdout)?;
    assert_eq!(report["ok"], false);
    assert_eq!(report["check"]["up_to_date"], false);
    let differences = report["check"]["differences"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        differences.contains(&serde_json::json!({"path": "prompts/old.md", "status": "stale"}))
    );
    Ok(())
}

#[test]
fn output_and_state_inside_the_sources_are_not_sources() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let src = tmp.path().join("src");
    write_sources(&src)?;
    let out = src.join("bundle");
    assert_eq!(code(&generate(&src, &out, &["-q"])?), Some(0));
    let first = fs::read_to_string(out.join("bundle.json"))?;
    // State a run leaves when started from inside the source folder.
    fs::create_dir_all(src.join(".bmad2pf/docs"))?;
    fs::write(src.join(".bmad2pf/bmad2pf.db"), "state")?;
    fs::write(src.join(".bmad2pf/docs/s__prd.md"), "# PRD")?;
    let check = generate(&src, &out, &["--check", "-q"])?;
    assert_eq!(
        (code(&check), stdout(&check)),
        (Some(0), "up to date\n".into())
    );
    assert_eq!(code(&generate(&src, &out, &["-q"])?), Some(0));
    assert_eq!(fs::read_to_string(out.join("bundle.json"))?, first);
    Ok(())
}

#[test]
fn generate_json_reports_the_written_files() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let src = tmp.path().join("src");
    write_sources(&src)?;
    let out = tmp.path().join("out");
    let output = generate(&src, &out, &["--format", "json", "-q"])?;
    assert_eq!(code(&output), Some(0));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    assert_eq!(report["ok"], true);
    assert_eq!(report["summary"]["agents"], 4);
    assert_eq!(report["summary"]["flows"], 2);
    assert_eq!(report["output"]["runtime_yaml"], "written");
    let files = report["output"]["files"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let size = fs::metadata(out.join("bundle.json"))?.len();
    assert!(files.contains(&serde_json::json!({"path": "bundle.json", "size": size})));
    Ok(())
}

#[test]
fn validate_exit_codes_and_json() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let src = tmp.path().join("src");
    write_sources(&src)?;

    let valid = bmad2pf(&["validate", "--src", path_str(&src)])?;
    assert_eq!(code(&valid), Some(0), "{}", stderr(&valid));
    assert_eq!(stdout(&valid), "valid: 4 agents, 2 flows\n");

    let json = bmad2pf(&["validate", "--src", path_str(&src), "--format", "json"])?;
    assert_eq!(code(&json), Some(0));
    let report: serde_json::Value = serde_json::from_slice(&json.stdout)?;
    assert_eq!(report["ok"], true);
    assert_eq!(report["summary"]["errors"], 0);
    assert_eq!(report["diagnostics"], serde_json::json!([]));

    fs::write(
        src.join("workflow.yaml"),
        "flows:\n  planning:\n    steps:\n      - agent: ghost\n",
    )?;
    let invalid = bmad2pf(&["validate", "--src", path_str(&src)])?;
    assert_eq!(code(&invalid), Some(1));
    assert!(
        stderr(&invalid).contains("workflow.yaml:"),
        "{}",
        stderr(&invalid)
    );
    assert!(stdout(&invalid).is_empty());

    let json = bmad2pf(&["validate", "--src", path_str(&src), "--format", "json"])?;
    assert_eq!(code(&json), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&json.stdout)?;
    assert_eq!(report["ok"], false);
    let first = &report["diagnostics"][0];
    assert_eq!(first["severity"], "error");
    assert_eq!(first["file"], "workflow.yaml");
    assert!(first["line"].as_u64().is_some_and(|line| line > 0));
    assert!(report["summary"]["errors"].as_u64().is_some_and(|n| n >= 1));

    let absent = tmp.path().join("absent");
    let missing = bmad2pf(&["validate", "--src", path_str(&absent)])?;
    assert_eq!(code(&missing), Some(2));
    assert!(stderr(&missing).contains("does not exist"));

    let usage = bmad2pf(&["validate", "--src", path_str(&src), "--bogus"])?;
    assert_eq!(code(&usage), Some(2));
    Ok(())
}

#[test]
fn running_sources_with_many_warnings_counts_them_instead_of_listing_them() -> TestResult {
    let dir = tempfile::tempdir()?;
    let src = dir.path().join("src");
    write_sources(&src)?;
    // An agent without a prompt body warns: twelve of them.
    for i in 0..12 {
        fs::write(
            src.join(format!("agents/quiet{i}.md")),
            format!("---\nid: quiet{i}\n---\n"),
        )?;
    }
    let validate = bmad2pf(&["validate", "--src", path_str(&src)])?;
    assert_eq!(
        stderr(&validate).matches("warning[empty-prompt]").count(),
        12
    );
    let run = Command::new(env!("CARGO_BIN_EXE_bmad2pf"))
        .current_dir(dir.path())
        .args(["run", "brief", "--story", "s1", "--input", "x"])
        .args(["--src", path_str(&src)])
        .output()?;
    let err = stderr(&run);
    assert_eq!(code(&run), Some(0), "{err}");
    assert!(!err.contains("warning[empty-prompt]"), "{err}");
    assert!(
        err.contains("warning: 12 warnings in the sources; `bmad2pf validate --src"),
        "{err}"
    );
    Ok(())
}

#[test]
fn graph_prints_every_flow_or_one() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let src = tmp.path().join("src");
    write_sources(&src)?;

    let all = bmad2pf(&["graph", "--src", path_str(&src)])?;
    assert_eq!(code(&all), Some(0), "{}", stderr(&all));
    let text = stdout(&all);
    assert!(text.starts_with("flowchart TD\n"));
    assert!(text.contains("subgraph f_planning["), "{text}");
    assert!(text.contains("subgraph f_brief["), "{text}");
    assert!(
        text.contains("subgraph f_planning__design[\"design · parallel\"]"),
        "{text}"
    );
    assert!(
        text.contains("f_planning__review -->|\"*approve\"| f_planning___end"),
        "{text}"
    );

    let one = bmad2pf(&["graph", "--src", path_str(&src), "--flow", "brief"])?;
    assert_eq!(code(&one), Some(0));
    assert!(stdout(&one).contains("subgraph f_brief["));
    assert!(!stdout(&one).contains("f_planning"));

    let unknown = bmad2pf(&["graph", "--src", path_str(&src), "--flow", "nope"])?;
    assert_eq!(code(&unknown), Some(2));
    assert!(stderr(&unknown).contains("unknown flow `nope`; flows: brief, planning"));

    // The bundle's graph.mmd is the same diagram.
    let out = tmp.path().join("out");
    assert_eq!(code(&generate(&src, &out, &["-q"])?), Some(0));
    assert_eq!(fs::read_to_string(out.join("graph.mmd"))?, text);
    Ok(())
}

#[test]
fn help_and_version() -> TestResult {
    let help = bmad2pf(&["--help"])?;
    assert_eq!(code(&help), Some(0));
    let text = stdout(&help);
    for command in [
        "generate", "validate", "graph", "run", "exec", "serve", "--src", "--out", "--check",
    ] {
        assert!(text.contains(command), "--help lacks {command}:\n{text}");
    }

    let version = bmad2pf(&["--version"])?;
    assert_eq!(code(&version), Some(0));
    assert_eq!(
        stdout(&version),
        format!("bmad2pf {}\n", env!("CARGO_PKG_VERSION"))
    );

    let nothing = bmad2pf(&[])?;
    assert_eq!(code(&nothing), Some(2));
    assert!(stderr(&nothing).contains("Usage:"));
    Ok(())
}
