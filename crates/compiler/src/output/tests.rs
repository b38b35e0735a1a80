//! Tests of the bundle writer on hand-built bundles and real temp directories.

use super::*;
use crate::bundle::{
    AgentSpec, Command, ErrorHandling, FlowSpec, LlmOverride, MemoryScope, SCHEMA_VERSION,
    SourceLayout, StepSpec, WaitFor,
};
use std::fs;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn agent(id: &str, parallel: bool) -> AgentSpec {
    AgentSpec {
        id: id.into(),
        format_version: "2.0".into(),
        source: format!("agents/{id}.md"),
        description: format!("The {id}"),
        persona: None,
        tasks: Vec::new(),
        checklists: Vec::new(),
        templates: Vec::new(),
        data: Vec::new(),
        commands: vec![Command {
            name: "*approve".into(),
            description: String::new(),
        }],
        tools: Vec::new(),
        memory_scope: MemoryScope::Shared("default".into()),
        wait_for: WaitFor::default(),
        creates: Vec::new(),
        requires: Vec::new(),
        reads: Vec::new(),
        updates: Vec::new(),
        parallel,
        sequence: Vec::new(),
        timeout_s: None,
        retry_count: None,
        error_handling: ErrorHandling::Stop,
        llm: LlmOverride::default(),
        output_schema: None,
        prompt_template: "You are {{ agent.id }}.".into(),
        metadata: BTreeMap::new(),
    }
}

fn step(id: &str, agents: &[&str], next: &[(&str, &str)]) -> StepSpec {
    StepSpec {
        id: id.into(),
        agents: agents.iter().map(|a| a.to_string()).collect(),
        next: next
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        creates: Vec::new(),
        requires: Vec::new(),
        updates: Vec::new(),
        gate: None,
        metadata: BTreeMap::new(),
    }
}

/// analyst → (pm ∥ architect) → review by po, which loops back to a fix step.
fn sample_bundle() -> Bundle {
    let agents = [
        agent("analyst", false),
        agent("pm", true),
        agent("architect", true),
        agent("po", false),
        agent("pack/dev", false),
    ];
    let flow = FlowSpec {
        name: "default".into(),
        description: "Greenfield \"planning\"".into(),
        source: "workflow.yaml".into(),
        steps: vec![
            step("step-1", &["analyst"], &[]),
            step("step-2", &["pm", "architect"], &[]),
            step(
                "review",
                &["po"],
                &[("*revise", "pm_fix"), ("*approve", "end")],
            ),
            step("pm_fix", &["pm"], &[("default", "review")]),
        ],
        max_visits: 10,
        metadata: BTreeMap::new(),
    };
    let dev = FlowSpec {
        name: "dev".into(),
        description: String::new(),
        source: "workflow.yaml".into(),
        steps: vec![step("build", &["pack/dev"], &[])],
        max_visits: 10,
        metadata: BTreeMap::new(),
    };
    Bundle {
        schema_version: SCHEMA_VERSION,
        generator: "bmad2pf 0.0.0-test".into(),
        source_hash: "abc123".into(),
        layout: SourceLayout::Preprocessing,
        agents: agents.into_iter().map(|a| (a.id.clone(), a)).collect(),
        flows: [("default".to_string(), flow), ("dev".to_string(), dev)].into(),
        tools: BTreeMap::new(),
    }
}

fn prompts_for(bundle: &Bundle) -> BTreeMap<String, String> {
    bundle
        .agents
        .keys()
        .map(|id| (id.clone(), format!("# {id}\n\nYou are {id}.")))
        .collect()
}

fn contents<'a>(bundle: &'a Bundle, prompts: &'a BTreeMap<String, String>) -> BundleContents<'a> {
    BundleContents {
        bundle,
        prompts,
        runtime_yaml: None,
        openapi: None,
    }
}

#[test]
fn json_files_are_pretty_sorted_and_end_with_a_newline() -> TestResult {
    let bundle = sample_bundle();
    let prompts = prompts_for(&bundle);
    let rendered = render(&contents(&bundle, &prompts))?;
    let text = String::from_utf8(rendered.files[BUNDLE_FILE].to_vec())?;
    assert!(text.starts_with("{\n  \"agents\": {"), "{}", &text[..40]);
    assert!(text.ends_with("}\n"));
    let keys: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("  \"") && !l.starts_with("   "))
        .map(|l| l.trim_start().split('"').nth(1).unwrap_or(""))
        .collect();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    assert_eq!(keys, sorted);
    assert_eq!(Bundle::from_json(&text)?, bundle);
    Ok(())
}

#[test]
fn rendering_is_deterministic() -> TestResult {
    let bundle = sample_bundle();
    let prompts = prompts_for(&bundle);
    let first = render(&contents(&bundle, &prompts))?;
    let (bundle_copy, prompts_copy) = (bundle.clone(), prompts.clone());
    let second = render(&contents(&bundle_copy, &prompts_copy))?;
    assert_eq!(first, second);
    Ok(())
}

#[test]
fn schema_accepts_the_bundle_and_rejects_unknown_fields() -> TestResult {
    let bundle = sample_bundle();
    let prompts = prompts_for(&bundle);
    let rendered = render(&contents(&bundle, &prompts))?;
    let schema: serde_json::Value = serde_json::from_slice(&rendered.files[SCHEMA_FILE].to_vec())?;
    let mut instance: serde_json::Value =
        serde_json::from_slice(&rendered.files[BUNDLE_FILE].to_vec())?;
    let validator = jsonschema::validator_for(&schema)?;
    assert!(validator.is_valid(&instance));
    instance["agents"]["pm"]["tols"] = serde_json::json!([]);
    assert!(!validator.is_valid(&instance));
    Ok(())
}

#[test]
fn manifest_lists_every_other_file_with_its_digest() -> TestResult {
    let bundle = sample_bundle();
    let prompts = prompts_for(&bundle);
    let openapi = serde_json::json!({"openapi": "3.1.0"});
    let rendered = render(&BundleContents {
        openapi: Some(&openapi),
        ..contents(&bundle, &prompts)
    })?;
    let manifest: Manifest = serde_json::from_slice(&rendered.files[MANIFEST_FILE].to_vec())?;
    let listed: Vec<&String> = manifest.files.keys().collect();
    let produced: Vec<&String> = rendered
        .files
        .keys()
        .filter(|p| *p != MANIFEST_FILE)
        .collect();
    assert_eq!(listed, produced);
    assert!(manifest.files.contains_key(OPENAPI_FILE));
    assert!(manifest.files.contains_key("prompts/pack/dev.md"));
    let graph_entry = &manifest.files[GRAPH_FILE];
    let graph_bytes = &rendered.files[GRAPH_FILE];
    assert_eq!(graph_entry.size, graph_bytes.len() as u64);
    assert_eq!(
        graph_entry.sha256,
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(graph_bytes.to_vec()))
    );
    assert_eq!(manifest.source_hash, "abc123");
    Ok(())
}

#[test]
fn prompts_must_match_the_agents() {
    let bundle = sample_bundle();
    let mut prompts = prompts_for(&bundle);
    prompts.remove("pm");
    prompts.insert("ghost".into(), String::new());
    let err = render(&contents(&bundle, &prompts))
        .err()
        .map(|e| e.to_string());
    assert_eq!(
        err.as_deref(),
        Some(
            "prompt previews do not match the agents: no prompt for pm; prompt for unknown agent ghost"
        )
    );
}

#[test]
fn prompt_paths_are_safe_and_one_to_one() {
    assert_eq!(prompt_path("pm"), "prompts/pm.md");
    assert_eq!(prompt_path("game-pack/pm"), "prompts/game-pack/pm.md");
    assert_eq!(prompt_path(".bmad-core/pm"), "prompts/%2Ebmad-core/pm.md");
    assert_eq!(prompt_path("../x"), "prompts/%2E./x.md");
    assert_eq!(prompt_path("a b%"), "prompts/a%20b%25.md");
    assert_eq!(prompt_path("/a"), "prompts/%2F/a.md");
    assert_ne!(prompt_path("a%2Fb"), prompt_path("a/b"));
}

#[test]
fn graph_shows_parallel_steps_actions_and_end() {
    let text = graph(&sample_bundle());
    let expected_lines = [
        "flowchart TD",
        "    subgraph f_default[\"default: Greenfield #quot;planning#quot;\"]",
        "        f_default___start([\"start\"])",
        "        f_default__step_2d_1[\"step-1 · analyst\"]",
        "        subgraph f_default__step_2d_2[\"step-2 · parallel\"]",
        "            f_default__step_2d_2__pm[\"pm\"]",
        "            f_default__step_2d_2__architect[\"architect\"]",
        "        f_default___start --> f_default__step_2d_1",
        "        f_default__step_2d_2 --> f_default__review",
        "        f_default__review -->|\"*approve\"| f_default___end",
        "        f_default__review -->|\"*revise\"| f_default__pm_5f_fix",
        "        f_default__review --> f_default__pm_5f_fix",
        "        f_default__pm_5f_fix --> f_default__review",
        "    subgraph f_dev[\"dev\"]",
        "        f_dev__build[\"build · pack/dev\"]",
        "        f_dev__build --> f_dev___end",
    ];
    for expected in expected_lines {
        assert!(
            text.lines().any(|l| l == expected),
            "missing {expected:?} in\n{text}"
        );
    }
    // Parallel agents stand side by side: no edge between them.
    assert!(!text.contains("f_default__step_2d_2__pm --> f_default__step_2d_2__architect"));
}

#[test]
fn graph_chains_agents_that_are_not_parallel() {
    let mut bundle = sample_bundle();
    if let Some(pm) = bundle.agents.get_mut("pm") {
        pm.parallel = false;
    }
    if let Some(architect) = bundle.agents.get_mut("architect") {
        architect.parallel = false;
    }
    let text = graph(&bundle);
    assert!(text.contains("subgraph f_default__step_2d_2[\"step-2\"]"));
    assert!(text.contains("f_default__step_2d_2__pm --> f_default__step_2d_2__architect"));
}

#[test]
fn graph_of_one_flow_and_unknown_flow() -> TestResult {
    let bundle = sample_bundle();
    let dev = graph_of_flow(&bundle, "dev")?;
    assert!(dev.starts_with("flowchart TD\n    subgraph f_dev[\"dev\"]"));
    assert!(!dev.contains("f_default"));
    let err = graph_of_flow(&bundle, "nope").err().map(|e| e.to_string());
    assert_eq!(
        err.as_deref(),
        Some("unknown flow `nope`; flows: default, dev")
    );
    Ok(())
}

#[test]
fn default_runtime_yaml_is_exactly_the_default_config() -> TestResult {
    let mut diags = crate::diag::Diagnostics::new();
    let tree = crate::yaml::parse(DEFAULT_RUNTIME_YAML, RUNTIME_FILE, 0, &mut diags);
    assert!(diags.is_empty(), "{diags:?}");
    let json = tree.map(|t| t.to_json()).unwrap_or_default();
    let parsed: crate::config::RuntimeConfig = serde_json::from_value(json)?;
    assert_eq!(parsed, crate::config::RuntimeConfig::default());
    Ok(())
}

/// Every file under `dir`, relative path → bytes.
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

#[test]
fn writes_a_fresh_bundle_and_nothing_beside_it() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("nested/out");
    let bundle = sample_bundle();
    let prompts = prompts_for(&bundle);
    let report = write_bundle(&out, &contents(&bundle, &prompts))?;
    assert!(report.runtime_written);
    let files = snapshot(&out);
    assert_eq!(files[RUNTIME_FILE], DEFAULT_RUNTIME_YAML.as_bytes());
    assert_eq!(files["prompts/pm.md"], b"# pm\n\nYou are pm.\n");
    assert_eq!(files.len(), report.files.len() + 1);
    let siblings: Vec<_> = fs::read_dir(tmp.path().join("nested"))?.flatten().collect();
    assert_eq!(siblings.len(), 1, "temporary directories left behind");
    Ok(())
}

#[test]
fn rewriting_removes_stale_files_and_keeps_runtime_yaml() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("out");
    let mut bundle = sample_bundle();
    let prompts = prompts_for(&bundle);
    write_bundle(&out, &contents(&bundle, &prompts))?;
    fs::write(out.join(RUNTIME_FILE), "llm: {provider: openai}\n")?;
    fs::write(out.join("prompts/leftover.md"), "old")?;

    bundle.agents.remove("analyst");
    if let Some(flow) = bundle.flows.get_mut("default") {
        flow.steps.remove(0);
    }
    let prompts = prompts_for(&bundle);
    let source_runtime = "llm: {provider: anthropic}\n";
    let report = write_bundle(
        &out,
        &BundleContents {
            runtime_yaml: Some(source_runtime),
            ..contents(&bundle, &prompts)
        },
    )?;
    assert!(!report.runtime_written);
    let files = snapshot(&out);
    assert!(!files.contains_key("prompts/analyst.md"));
    assert!(!files.contains_key("prompts/leftover.md"));
    assert_eq!(files[RUNTIME_FILE], b"llm: {provider: openai}\n");
    Ok(())
}

#[test]
fn source_runtime_yaml_is_used_when_the_output_has_none() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("out");
    let bundle = sample_bundle();
    let prompts = prompts_for(&bundle);
    let source_runtime = "llm: {provider: anthropic}\n";
    write_bundle(
        &out,
        &BundleContents {
            runtime_yaml: Some(source_runtime),
            ..contents(&bundle, &prompts)
        },
    )?;
    assert_eq!(fs::read_to_string(out.join(RUNTIME_FILE))?, source_runtime);
    Ok(())
}

#[test]
fn refuses_to_replace_a_directory_that_is_not_a_bundle() -> TestResult {
    let tmp = tempfile::tempdir()?;
    fs::write(tmp.path().join("precious.txt"), "keep me")?;
    let bundle = sample_bundle();
    let prompts = prompts_for(&bundle);
    let err = write_bundle(tmp.path(), &contents(&bundle, &prompts)).err();
    assert!(
        matches!(err, Some(OutputError::NotABundleDir(_))),
        "{err:?}"
    );
    assert_eq!(
        fs::read_to_string(tmp.path().join("precious.txt"))?,
        "keep me"
    );
    Ok(())
}

#[test]
fn a_failed_write_leaves_the_previous_bundle_untouched() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("out");
    let bundle = sample_bundle();
    let prompts = prompts_for(&bundle);
    write_bundle(&out, &contents(&bundle, &prompts))?;
    let before = snapshot(&out);

    // A file and a directory of the same name cannot both be written.
    let mut broken = render(&contents(&bundle, &prompts))?;
    broken
        .files
        .insert("prompts/pm.md/inner.md".into(), b"x".to_vec().into());
    let result = swap::replace_dir(&out, &broken);
    assert!(matches!(result, Err(OutputError::Io { .. })), "{result:?}");
    assert_eq!(snapshot(&out), before);
    let entries: Vec<_> = fs::read_dir(tmp.path())?.flatten().collect();
    assert_eq!(entries.len(), 1, "temporary directory left behind");
    Ok(())
}

#[test]
fn check_reports_missing_changed_stale_and_up_to_date() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("out");
    let bundle = sample_bundle();
    let prompts = prompts_for(&bundle);
    let all_missing = check(&out, &contents(&bundle, &prompts))?;
    assert!(
        all_missing
            .differences
            .iter()
            .all(|(_, s)| *s == FileStatus::Missing)
    );
    assert!(
        all_missing
            .differences
            .iter()
            .any(|(p, _)| p == RUNTIME_FILE)
    );

    write_bundle(&out, &contents(&bundle, &prompts))?;
    assert!(check(&out, &contents(&bundle, &prompts))?.is_up_to_date());

    fs::write(out.join(RUNTIME_FILE), "edited: by the user\n")?;
    assert!(check(&out, &contents(&bundle, &prompts))?.is_up_to_date());

    fs::write(out.join(GRAPH_FILE), "changed")?;
    fs::remove_file(out.join("prompts/po.md"))?;
    fs::write(out.join("prompts/old.md"), "stale")?;
    let result = check(&out, &contents(&bundle, &prompts))?;
    assert_eq!(
        result.differences,
        vec![
            (GRAPH_FILE.to_string(), FileStatus::Changed),
            ("prompts/old.md".to_string(), FileStatus::Stale),
            ("prompts/po.md".to_string(), FileStatus::Missing),
        ]
    );
    Ok(())
}

#[test]
fn unchanged_files_are_reused_and_edited_ones_rewritten() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("out");
    let bundle = sample_bundle();
    let prompts = prompts_for(&bundle);
    let first = write_bundle(&out, &contents(&bundle, &prompts))?;
    assert_eq!(first.reused, 0);
    let expected = snapshot(&out);

    // Same size, other bytes: must be noticed by content, not by size or manifest.
    fs::write(out.join("prompts/pm.md"), b"# xx\n\nYou are xx.\n")?;
    let second = write_bundle(&out, &contents(&bundle, &prompts))?;
    assert_eq!(second.reused, first.files.len() - 1);
    assert_eq!(snapshot(&out), expected);
    Ok(())
}

#[test]
fn an_unchanged_bundle_is_left_alone_and_leftovers_still_force_a_swap() -> TestResult {
    use std::os::unix::fs::MetadataExt;
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("out");
    let bundle = sample_bundle();
    let prompts = prompts_for(&bundle);
    let first = write_bundle(&out, &contents(&bundle, &prompts))?;
    let expected = snapshot(&out);
    let inode = fs::metadata(&out)?.ino();

    // Nothing to do: the very same directory stays, every file counts as reused.
    let second = write_bundle(&out, &contents(&bundle, &prompts))?;
    assert_eq!(second.reused, first.files.len());
    assert!(!second.runtime_written);
    assert_eq!(fs::metadata(&out)?.ino(), inode);
    assert_eq!(snapshot(&out), expected);

    // A leftover file or an empty leftover directory is not "unchanged".
    fs::write(out.join("prompts/old.md"), "stale")?;
    write_bundle(&out, &contents(&bundle, &prompts))?;
    assert_eq!(snapshot(&out), expected);
    fs::create_dir(out.join("prompts/empty"))?;
    write_bundle(&out, &contents(&bundle, &prompts))?;
    assert!(!out.join("prompts/empty").exists());
    assert_eq!(snapshot(&out), expected);
    Ok(())
}

#[test]
fn bundle_json_is_canonical_json_of_the_bundle() -> TestResult {
    // bundle.json is printed straight from the bundle types, whose fields
    // are declared in key order: it must be the JSON of a sorted copy of the
    // bundle, byte for byte, with every field present (a field declared out
    // of order shows here), free-form JSON (output schemas, metadata,
    // tool parameters) included.
    let mut bundle = sample_bundle();
    let unsorted: serde_json::Value =
        serde_json::from_str(r#"{"z": {"b": [1, {"d": 2, "c": 3}], "a": null}, "m": "é\n\"q\""}"#)?;
    if let Some(pm) = bundle.agents.get_mut("pm") {
        pm.output_schema = Some(unsorted.clone());
        pm.metadata.insert("whenToUse".into(), unsorted.clone());
        pm.persona = Some(crate::bundle::Persona {
            role: Some("PM".into()),
            style: Some("terse".into()),
            identity: Some("a PM".into()),
            focus: Some("scope".into()),
            core_principles: vec!["one".into(), "two".into()],
            text: Some("free text".into()),
        });
        pm.tasks.push(crate::bundle::Resource {
            name: "t".into(),
            path: "tasks/t.md".into(),
            content: "{{ literal }}\ttab\n".into(),
        });
        pm.llm = LlmOverride {
            provider: Some("openai".into()),
            model: Some("gpt".into()),
            temperature: Some(0.25),
            max_tokens: Some(100),
        };
        pm.timeout_s = Some(30);
        pm.retry_count = Some(1);
        pm.wait_for = WaitFor {
            docs: vec!["prd.md".into()],
            agents: vec!["analyst".into()],
        };
        pm.data = pm.tasks.clone();
        pm.creates = vec!["prd.md".into()];
        pm.reads = vec!["brief.md".into()];
        pm.tools = vec!["word_count".into()];
        pm.sequence.push(crate::bundle::SequenceStep {
            step: "draft".into(),
            action: crate::bundle::SequenceAction::LlmCall,
            condition: Some("input".into()),
            template: Some("t".into()),
            tool: Some("word_count".into()),
            document: Some("prd.md".into()),
            checklist: Some("c".into()),
        });
    }
    if let Some(flow) = bundle.flows.get_mut("default") {
        flow.metadata.insert("type".into(), unsorted.clone());
        if let Some(step) = flow.steps.first_mut() {
            step.metadata.insert("notes".into(), unsorted.clone());
            step.creates = vec!["brief.md".into()];
            step.requires = vec!["idea.md".into()];
            step.updates = vec!["log.md".into()];
            step.gate = Some(crate::bundle::StepGate {
                when: crate::bundle::GateWhen::After,
                prompt: Some("ok?".into()),
                on_reject: Some("step-1".into()),
            });
        }
    }
    let setting = crate::bundle::SettingValue::FromEnv(crate::bundle::EnvReference {
        env: "TOKEN".into(),
        prefix: "Bearer ".into(),
    });
    bundle.tools.insert(
        "fetch".into(),
        crate::bundle::ToolSpec {
            name: "fetch".into(),
            kind: crate::bundle::ToolKind::Http,
            description: "Fetches".into(),
            parameters: unsorted.clone(),
            method: Some("GET".into()),
            url: Some("https://example.com/{{ q }}".into()),
            command: vec!["curl".into()],
            timeout_s: 5,
            env: BTreeMap::from([("A".to_string(), setting.clone())]),
            headers: BTreeMap::from([("Authorization".to_string(), setting)]),
            connect_timeout_s: Some(2),
            ca_file: Some(crate::bundle::CaFile {
                path: "ca.pem".into(),
                pem: "-----BEGIN CERTIFICATE-----".into(),
            }),
        },
    );
    // Many agents, and none at all (an empty `agents` object).
    let mut many = bundle.clone();
    for n in 0..40 {
        let id = format!("extra-{n:02}");
        many.agents.insert(id.clone(), agent(&id, n % 2 == 0));
    }
    let mut none = bundle.clone();
    none.agents.clear();
    for bundle in [bundle, many, none] {
        let prompts = prompts_for(&bundle);
        let rendered = render(&contents(&bundle, &prompts))?;
        // serde_json keeps the document's key order when it parses (feature
        // `preserve_order`), so the parsed tree shows the order as written.
        let written: serde_json::Value =
            serde_json::from_slice(&rendered.files[BUNDLE_FILE].to_vec())?;
        assert_keys_sorted(&written, "");
        for file in [MANIFEST_FILE, SCHEMA_FILE] {
            let other: serde_json::Value = serde_json::from_slice(&rendered.files[file].to_vec())?;
            assert_keys_sorted(&other, file);
        }
        let mut sorted_copy = serde_json::to_value(&bundle)?;
        sorted_copy.sort_all_objects();
        assert_eq!(
            String::from_utf8_lossy(&rendered.files[BUNDLE_FILE].to_vec()),
            format!("{}\n", serde_json::to_string_pretty(&sorted_copy)?)
        );
        assert_eq!(
            Bundle::from_json(&serde_json::to_string(&written)?)?,
            bundle
        );
        // Every file's digest in the manifest is the digest of its bytes.
        let manifest: Manifest = serde_json::from_slice(&rendered.files[MANIFEST_FILE].to_vec())?;
        for (path, entry) in &manifest.files {
            let bytes = rendered.files[path].to_vec();
            assert_eq!(entry.size, bytes.len() as u64, "{path}");
            assert_eq!(
                entry.sha256,
                hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes)),
                "{path}"
            );
        }
    }
    Ok(())
}

/// Every object in `value` lists its keys in sorted order.
fn assert_keys_sorted(value: &serde_json::Value, path: &str) {
    match value {
        serde_json::Value::Object(map) => {
            let keys: Vec<&String> = map.keys().collect();
            assert!(keys.is_sorted(), "keys of {path:?} not sorted: {keys:?}");
            for (key, inner) in map {
                assert_keys_sorted(inner, &format!("{path}/{key}"));
            }
        }
        serde_json::Value::Array(items) => {
            for (n, inner) in items.iter().enumerate() {
                assert_keys_sorted(inner, &format!("{path}/{n}"));
            }
        }
        _ => {}
    }
}
