//! Tools in a run: the model (a local OpenAI-compatible server playing
//! scripted replies) calls builtin, http and command tools; the engine runs
//! them and sends the results back; the loop is bounded.

mod llm_common;

use bmad2pf_compiler::compile;
use bmad2pf_compiler::config::{ProviderKind, RuntimeConfig};
use bmad2pf_engine::Engine;
use bmad2pf_engine::outcome::{AgentRunStatus, RunOutcome, RunRequest, RunStatus};
use bmad2pf_engine::runs::RunMode;
use bmad2pf_engine::store::{DocId, MemoryKey, MemoryScope};
use llm_common::{Reply, VendorServer, text_reply, tool_call_reply};
use serde_json::{Value, json};
use std::sync::Arc;

struct Setup {
    _dir: tempfile::TempDir,
    engine: Engine,
}

async fn setup(tools_yaml: &str, agent_tools: &str, llm: &VendorServer) -> Setup {
    let dir = tempfile::tempdir().expect("temp dir");
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("agents")).expect("mkdir");
    std::fs::write(src.join("tools.yaml"), tools_yaml).expect("tools.yaml");
    std::fs::write(
        src.join("agents/researcher.md"),
        format!("---\nid: researcher\ntools: [{agent_tools}]\nmemory_scope: shared:notes\n---\nResearch {{{{ input }}}}.\n"),
    )
    .expect("agent");
    let compiled = compile(&src);
    let problems: Vec<String> = compiled
        .diagnostics
        .iter()
        .map(ToString::to_string)
        .collect();
    let bundle = compiled
        .bundle
        .unwrap_or_else(|| panic!("compiles: {problems:#?}"));
    let mut config = RuntimeConfig::default();
    config.docs.path = dir.path().join("docs").display().to_string();
    config.memory.path = dir.path().join("memory").display().to_string();
    config.llm.provider = ProviderKind::OpenaiCompatible;
    config.llm.base_url = Some(format!("{}/v1", llm.url));
    let engine = Engine::start(Arc::new(bundle), config, &|_| None)
        .await
        .expect("engine");
    Setup { _dir: dir, engine }
}

/// The run of [`request`], headless, as its outcome.
async fn run_headless(s: &Setup) -> RunOutcome {
    s.engine
        .run(request(), RunMode::Headless, None)
        .await
        .expect("run")
        .outcome
}

fn request() -> RunRequest {
    RunRequest {
        flow: "default".into(),
        story_id: "s".into(),
        input: "caching".into(),
        force: false,
        budget: None,
    }
}

/// The tool results the engine sent back to the model, in order (the last
/// request carries the whole conversation).
fn tool_results(server: &VendorServer) -> Vec<Value> {
    let requests = server.requests();
    let last = requests
        .last()
        .map(|r| r.body["messages"].clone())
        .unwrap_or_default();
    last.as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["role"] == "tool")
        .cloned()
        .collect()
}

#[tokio::test]
async fn builtin_tools_read_and_write_the_stores() {
    let llm = VendorServer::start(vec![
        tool_call_reply(&[
            ("word_count", json!({"text": "one two three"})),
            (
                "write_doc",
                json!({"name": "notes.md", "content": "# Notes"}),
            ),
            (
                "memory_set",
                json!({"key": "topic", "value": {"name": "caching"}}),
            ),
        ]),
        tool_call_reply(&[
            ("read_doc", json!({"name": "notes"})),
            ("memory_get", json!({"key": "topic"})),
        ]),
        text_reply("Done."),
    ])
    .await;
    let tools = "tools:\n  word_count: {kind: builtin}\n";
    let s = setup(
        tools,
        "word_count, read_doc, write_doc, memory_get, memory_set",
        &llm,
    )
    .await;
    let outcome = run_headless(&s).await;
    assert_eq!(outcome.status, RunStatus::Success, "{outcome:#?}");
    let results: Vec<String> = tool_results(&llm)
        .iter()
        .map(|m| m["content"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(results.len(), 5, "{results:#?}");
    assert_eq!(results[0], "3");
    assert_eq!(results[3], "# Notes");
    assert_eq!(results[4], r#"{"name":"caching"}"#);
    let doc = s
        .engine
        .docs()
        .get(&DocId::parse("s__notes").expect("id"))
        .await
        .expect("store");
    assert_eq!(doc.map(|d| d.content).as_deref(), Some("# Notes"));
    let scope = MemoryScope::parse("shared:notes").expect("scope");
    let topic = s
        .engine
        .memory()
        .get(&scope, &MemoryKey::parse("topic").expect("key"))
        .await
        .expect("store");
    assert_eq!(topic, Some(json!({"name": "caching"})));
    // The tools were offered as functions.
    let offered = llm.requests()[0].body["tools"]
        .as_array()
        .map_or(0, Vec::len);
    assert_eq!(offered, 5);
}

#[tokio::test]
async fn http_and_command_tools_run_without_a_shell() {
    let wiki = VendorServer::start(vec![Reply::Text {
        status: 200,
        content_type: "text/plain",
        body: "found: cache-service".into(),
    }])
    .await;
    let llm = VendorServer::start(vec![
        tool_call_reply(&[
            ("wiki", json!({"query": "a b&c"})),
            ("echo_args", json!({"text": "$(touch /tmp/never) hi"})),
        ]),
        text_reply("Use cache-service."),
    ])
    .await;
    let tools = format!(
        "tools:\n  wiki:\n    kind: http\n    method: GET\n    url: \"{}/search?q={{{{ query }}}}\"\n    parameters: {{type: object, properties: {{query: {{type: string}}}}, required: [query]}}\n  echo_args:\n    kind: command\n    command: [\"cat\"]\n    parameters: {{type: object}}\n",
        wiki.url
    );
    let s = setup(&tools, "wiki, echo_args", &llm).await;
    let outcome = run_headless(&s).await;
    assert_eq!(outcome.status, RunStatus::Success, "{outcome:#?}");
    assert_eq!(wiki.single_request().target, "/search?q=a%20b%26c");
    let results = tool_results(&llm);
    assert_eq!(results[0]["content"], "found: cache-service");
    // `cat` got the arguments as JSON on stdin; nothing was run by a shell.
    assert_eq!(
        results[1]["content"],
        r#"{"text":"$(touch /tmp/never) hi"}"#
    );
    assert!(!std::path::Path::new("/tmp/never").exists());
}

#[tokio::test]
async fn a_model_that_never_stops_calling_tools_fails_the_agent() {
    let replies = (0..12)
        .map(|_| tool_call_reply(&[("word_count", json!({"text": "x"}))]))
        .collect();
    let llm = VendorServer::start(replies).await;
    let s = setup("tools: {}\n", "word_count", &llm).await;
    let outcome = run_headless(&s).await;
    assert_eq!(outcome.status, RunStatus::Error);
    assert_eq!(outcome.results["researcher"].status, AgentRunStatus::Failed);
    assert!(
        outcome.errors["researcher"].starts_with("tool_loop_limit"),
        "{outcome:#?}"
    );
    assert_eq!(
        llm.requests().len(),
        9,
        "one exchange plus eight tool rounds"
    );
}

/// A model that goes silent after a tool result (no text, no call) is
/// asked once to go on; its answer after that is the agent's output.
#[tokio::test]
async fn an_empty_reply_after_a_tool_result_is_met_with_one_nudge() {
    let llm = VendorServer::start(vec![
        tool_call_reply(&[("word_count", json!({"text": "a b c"}))]),
        text_reply(""),
        text_reply("Three words."),
    ])
    .await;
    let s = setup("tools: {}\n", "word_count", &llm).await;
    let outcome = run_headless(&s).await;
    assert_eq!(outcome.status, RunStatus::Success, "{outcome:#?}");
    let written = s
        .engine
        .docs()
        .get(&DocId::parse("s__researcher").expect("id"))
        .await
        .expect("store");
    assert_eq!(written.map(|d| d.content).as_deref(), Some("Three words."));
    let requests = llm.requests();
    assert_eq!(requests.len(), 3);
    let last = &requests[2].body["messages"];
    let nudge = &last[last.as_array().map_or(0, Vec::len) - 1];
    assert_eq!(nudge["role"], "user");
    assert!(
        nudge["content"]
            .as_str()
            .is_some_and(|t| t.contains("empty")),
        "{nudge}"
    );
}
