//! The mock provider (determinism, seeded failures, latency on a paused clock),
//! record/replay on real files, and the factory that builds providers from
//! runtime.yaml settings.

mod llm_common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bmad2pf_compiler::config::{LlmConfig, MockConfig, ProviderKind, ReplayConfig, ReplayMode};
use bmad2pf_engine::llm::{
    LlmError, LlmProvider, LlmRequest, LlmResponse, MockProvider, ReplayProvider, TokenSink,
    build_provider, complete_with_timeout,
};
use llm_common::{Reply, VendorServer, complete_streamed};
use serde_json::json;

fn mock(latency_ms: u64, failure_rate: f64, seed: u64) -> MockProvider {
    MockProvider::new(&MockConfig {
        latency_ms,
        failure_rate,
        seed,
    })
    .expect("valid mock config")
}

fn request(text: &str) -> LlmRequest {
    let mut request = LlmRequest::new("gpt-4o-mini", text);
    request.system = Some("You are the analyst.".into());
    request
}

#[tokio::test]
async fn the_mock_is_deterministic_and_echoes_its_input() {
    let a = mock(0, 0.0, 0)
        .complete(&request("Write the brief"), None)
        .await
        .expect("reply");
    let b = mock(0, 0.0, 99)
        .complete(&request("Write the brief"), None)
        .await
        .expect("reply");
    let c = mock(0, 0.0, 0)
        .complete(&request("Write the PRD"), None)
        .await
        .expect("reply");
    assert_eq!(a, b);
    assert_ne!(a.text, c.text);
    assert!(a.text.starts_with("mock reply "), "{}", a.text);
    assert!(a.text.ends_with("Write the brief"), "{}", a.text);
    assert!(a.usage.input_tokens > 0 && a.usage.output_tokens > 0);
    assert_eq!(a.model, "gpt-4o-mini");
}

#[tokio::test]
async fn the_mock_truncates_long_echoes() {
    let long = "word ".repeat(200);
    let reply = mock(0, 0.0, 0)
        .complete(&request(&long), None)
        .await
        .expect("reply");
    assert!(reply.text.chars().count() < 120, "{}", reply.text);
    assert!(reply.text.ends_with('…'));
}

#[tokio::test]
async fn the_mock_answers_json_when_asked() {
    let mut req = request("Summarise");
    req.json_output = true;
    let reply = mock(0, 0.0, 0).complete(&req, None).await.expect("reply");
    let value: serde_json::Value = serde_json::from_str(&reply.text).expect("a JSON object");
    assert!(
        value["content"]
            .as_str()
            .is_some_and(|c| c.contains("Summarise"))
    );
    assert!(value["summary"].is_string());
}

#[tokio::test]
async fn the_mock_streams_its_reply_in_pieces() {
    let (reply, tokens) = complete_streamed(&mock(0, 0.0, 0), &request("Stream this please")).await;
    let reply = reply.expect("reply");
    assert!(tokens.len() > 1, "{tokens:?}");
    assert_eq!(tokens.concat(), reply.text);
}

async fn failure_pattern(seed: u64) -> Vec<bool> {
    let provider = mock(0, 0.5, seed);
    let mut pattern = Vec::new();
    for i in 0..24 {
        let result = provider
            .complete(&request(&format!("call {i}")), None)
            .await;
        if let Err(error) = &result {
            assert!(
                matches!(error, LlmError::Server { status: 503, provider, .. } if provider == "mock"),
                "{error:?}"
            );
            assert!(error.is_retryable());
        }
        pattern.push(result.is_err());
    }
    pattern
}

#[tokio::test]
async fn mock_failures_repeat_for_the_same_seed() {
    let first = failure_pattern(7).await;
    assert_eq!(first, failure_pattern(7).await);
    assert_ne!(first, failure_pattern(8).await);
    assert!(first.contains(&true) && first.contains(&false), "{first:?}");
    let never = mock(0, 0.0, 7);
    let always = mock(0, 1.0, 7);
    for i in 0..10 {
        let req = request(&format!("{i}"));
        assert!(never.complete(&req, None).await.is_ok());
        assert!(always.complete(&req, None).await.is_err());
    }
}

#[tokio::test(start_paused = true)]
async fn mock_latency_uses_the_tokio_clock() {
    let provider = mock(5_000, 0.0, 0);
    let start = tokio::time::Instant::now();
    provider
        .complete(&request("slow"), None)
        .await
        .expect("reply");
    assert!(start.elapsed() >= Duration::from_secs(5));
    let error = complete_with_timeout(&provider, &request("slow"), None, Duration::from_secs(1))
        .await
        .expect_err("slower than the limit");
    assert_eq!(
        error,
        LlmError::Timeout {
            provider: "mock".into(),
            after: Duration::from_secs(1)
        }
    );
}

/// Counts the calls that reach the wrapped provider.
struct Counting {
    inner: MockProvider,
    calls: AtomicUsize,
}

#[async_trait]
impl LlmProvider for Counting {
    fn name(&self) -> &str {
        "mock"
    }

    async fn complete(
        &self,
        request: &LlmRequest,
        on_token: Option<&TokenSink>,
    ) -> Result<LlmResponse, LlmError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.complete(request, on_token).await
    }
}

#[tokio::test]
async fn recorded_calls_replay_identically_without_the_vendor() {
    let dir = tempfile::tempdir().expect("temp dir");
    let inner = Arc::new(Counting {
        inner: mock(0, 0.0, 0),
        calls: AtomicUsize::new(0),
    });
    let recorder = ReplayProvider::recording(inner.clone(), dir.path());
    let req = request("Record me");
    let recorded = recorder.complete(&req, None).await.expect("recorded");
    assert_eq!(inner.calls.load(Ordering::SeqCst), 1);
    let path = recorder.recording_path(&req);
    assert!(path.exists(), "{}", path.display());
    let file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("JSON");
    assert_eq!(file["request"]["provider"], json!("mock"));
    // No temporary files are left behind.
    assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 1);

    let player = ReplayProvider::replaying("mock", dir.path());
    let (replayed, tokens) = complete_streamed(&player, &req).await;
    let replayed = replayed.expect("replayed");
    assert_eq!(replayed, recorded);
    assert_eq!(tokens.concat(), recorded.text);
    assert_eq!(
        player.complete(&req.clone(), None).await.expect("again"),
        recorded
    );
    assert_eq!(
        inner.calls.load(Ordering::SeqCst),
        1,
        "replay never calls the vendor"
    );
}

#[tokio::test]
async fn a_replay_miss_is_an_error_naming_the_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let recorder = ReplayProvider::recording(Arc::new(mock(0, 0.0, 0)), dir.path());
    recorder
        .complete(&request("recorded"), None)
        .await
        .expect("recorded");

    let player = ReplayProvider::replaying("mock", dir.path());
    let error = player
        .complete(&request("never recorded"), None)
        .await
        .expect_err("miss");
    assert!(
        matches!(&error, LlmError::ReplayMiss { key, .. } if *key == player.key(&request("never recorded"))),
        "{error:?}"
    );
    assert_eq!(error.code(), "llm_replay_miss");
    // Recordings of another provider do not answer.
    let other = ReplayProvider::replaying("openai", dir.path());
    assert!(matches!(
        other.complete(&request("recorded"), None).await,
        Err(LlmError::ReplayMiss { .. })
    ));
}

#[tokio::test]
async fn a_damaged_recording_is_a_store_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let player = ReplayProvider::replaying("mock", dir.path());
    std::fs::write(player.recording_path(&request("x")), "{ torn").expect("write");
    let error = player
        .complete(&request("x"), None)
        .await
        .expect_err("damaged");
    assert_eq!(error.code(), "llm_replay_store");
}

#[tokio::test]
async fn failed_calls_are_not_recorded() {
    let dir = tempfile::tempdir().expect("temp dir");
    let recorder = ReplayProvider::recording(Arc::new(mock(0, 1.0, 0)), dir.path().join("rec"));
    assert!(recorder.complete(&request("x"), None).await.is_err());
    assert!(!dir.path().join("rec").exists());
}

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name: &str| map.get(name).cloned()
}

fn llm(provider: ProviderKind) -> LlmConfig {
    LlmConfig {
        provider,
        ..LlmConfig::default()
    }
}

fn build(
    config: &LlmConfig,
    replay: &ReplayConfig,
    vars: &[(&str, &str)],
) -> Result<Arc<dyn LlmProvider>, LlmError> {
    build_provider(config, replay, &env(vars))
}

#[test]
fn the_factory_builds_each_provider() {
    let off = ReplayConfig::default();
    let cases = [
        (ProviderKind::Mock, None, "mock"),
        (ProviderKind::Openai, None, "openai"),
        (ProviderKind::Anthropic, None, "anthropic"),
        (ProviderKind::Gemini, None, "gemini"),
        (
            ProviderKind::OpenaiCompatible,
            Some("http://127.0.0.1:11434/v1"),
            "openai_compatible",
        ),
    ];
    let keys = [
        ("OPENAI_API_KEY", "k1"),
        ("ANTHROPIC_API_KEY", "k2"),
        ("GEMINI_API_KEY", "k3"),
    ];
    for (kind, base_url, name) in cases {
        let config = LlmConfig {
            base_url: base_url.map(str::to_string),
            ..llm(kind)
        };
        let provider = build(&config, &off, &keys).expect("builds");
        assert_eq!(provider.name(), name);
    }
}

#[test]
fn missing_keys_name_the_variable() {
    let off = ReplayConfig::default();
    for (kind, var) in [
        (ProviderKind::Openai, "OPENAI_API_KEY"),
        (ProviderKind::Anthropic, "ANTHROPIC_API_KEY"),
        (ProviderKind::Gemini, "GEMINI_API_KEY"),
    ] {
        let error = build(&llm(kind), &off, &[(var, "  ")])
            .err()
            .expect("missing key");
        assert!(
            matches!(&error, LlmError::MissingApiKey { env_var, .. } if env_var == var),
            "{error:?}"
        );
        assert!(error.to_string().contains(var));
    }
    let custom = LlmConfig {
        api_key_env: Some("MY_KEY".into()),
        ..llm(ProviderKind::Openai)
    };
    let error = build(&custom, &off, &[("OPENAI_API_KEY", "k")])
        .err()
        .expect("reads MY_KEY only");
    assert!(error.to_string().contains("MY_KEY"), "{error}");
}

#[test]
fn openai_compatible_needs_a_base_url_and_bad_urls_are_rejected() {
    let off = ReplayConfig::default();
    let error = build(&llm(ProviderKind::OpenaiCompatible), &off, &[])
        .err()
        .expect("no URL");
    assert_eq!(error.code(), "llm_config");
    assert!(error.to_string().contains("base_url"));
    let bad = LlmConfig {
        base_url: Some("localhost:8080".into()),
        ..llm(ProviderKind::Anthropic)
    };
    let error = build(&bad, &off, &[("ANTHROPIC_API_KEY", "k")])
        .err()
        .expect("bad URL");
    assert_eq!(error.code(), "llm_config");
    let rate = LlmConfig {
        mock: MockConfig {
            failure_rate: 2.0,
            ..MockConfig::default()
        },
        ..llm(ProviderKind::Mock)
    };
    assert!(build(&rate, &off, &[]).is_err());
}

#[tokio::test]
async fn replay_mode_needs_no_key_and_record_mode_wraps_the_vendor() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().to_string_lossy().to_string();
    let replay = ReplayConfig {
        mode: ReplayMode::Replay,
        path: path.clone(),
    };
    let provider = build(&llm(ProviderKind::Openai), &replay, &[]).expect("no key needed");
    assert_eq!(provider.name(), "replay");
    let error = provider
        .complete(&request("x"), None)
        .await
        .expect_err("nothing recorded");
    assert_eq!(error.code(), "llm_replay_miss");

    let record = ReplayConfig {
        mode: ReplayMode::Record,
        path,
    };
    let recorder = build(&llm(ProviderKind::Mock), &record, &[]).expect("builds");
    let recorded = recorder
        .complete(&request("x"), None)
        .await
        .expect("recorded");
    let player = build(&llm(ProviderKind::Mock), &replay, &[]).expect("builds");
    assert_eq!(
        player
            .complete(&request("x"), None)
            .await
            .expect("replayed"),
        recorded
    );
    // Recording a vendor still needs its key.
    assert!(build(&llm(ProviderKind::Gemini), &record, &[]).is_err());
}

#[tokio::test]
async fn the_factory_takes_the_key_and_url_from_configuration() {
    let server = VendorServer::start(vec![Reply::json(
        200,
        json!({"id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o-mini",
               "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
               "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}),
    )])
    .await;
    let config = LlmConfig {
        base_url: Some(format!("{}/v1/", server.url)),
        api_key_env: Some("TEAM_OPENAI_KEY".into()),
        ..llm(ProviderKind::Openai)
    };
    let provider = build(
        &config,
        &ReplayConfig::default(),
        &[("TEAM_OPENAI_KEY", "sk-from-env")],
    )
    .expect("builds");
    provider
        .complete(&request("hi"), None)
        .await
        .expect("answer");
    let sent = server.single_request();
    assert_eq!(sent.target, "/v1/chat/completions");
    assert_eq!(sent.header("authorization"), Some("Bearer sk-from-env"));
}
