//! The retry policy: which errors are retried, how long it waits (paused tokio
//! clock, so waits cost nothing and are measured exactly), time limits per
//! attempt, and one run over real HTTP.

mod llm_common;

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use bmad2pf_engine::llm::{
    LlmError, LlmProvider, LlmRequest, LlmResponse, OpenAiProvider, RetryPolicy, TokenSink, Usage,
    complete_with_retry,
};
use llm_common::{Reply, VendorServer};
use serde_json::json;
use tokio::time::Instant;

/// What the scripted provider does on one call.
enum Step {
    Answer(Result<LlmResponse, LlmError>),
    /// Never answer (a hung vendor).
    Hang,
}

/// A provider that plays a script and notes when each call started.
struct ScriptedProvider {
    steps: Mutex<VecDeque<Step>>,
    calls: Mutex<Vec<Instant>>,
}

impl ScriptedProvider {
    fn new(steps: Vec<Step>) -> Self {
        Self {
            steps: Mutex::new(steps.into()),
            calls: Mutex::new(Vec::new()),
        }
    }

    fn call_times(&self) -> Vec<Instant> {
        self.calls.lock().expect("lock").clone()
    }
}

#[async_trait]
impl LlmProvider for ScriptedProvider {
    fn name(&self) -> &str {
        "scripted"
    }

    async fn complete(
        &self,
        _request: &LlmRequest,
        _on_token: Option<&TokenSink>,
    ) -> Result<LlmResponse, LlmError> {
        self.calls.lock().expect("lock").push(Instant::now());
        let step = self.steps.lock().expect("lock").pop_front();
        match step {
            Some(Step::Answer(result)) => result,
            Some(Step::Hang) => std::future::pending().await,
            None => panic!("called more often than scripted"),
        }
    }
}

fn ok(text: &str) -> Step {
    Step::Answer(Ok(LlmResponse {
        text: text.into(),
        tool_calls: Vec::new(),
        usage: Usage::default(),
        model: "m".into(),
        finish_reason: Some("stop".into()),
    }))
}

fn server_error() -> Step {
    Step::Answer(Err(LlmError::Server {
        provider: "scripted".into(),
        status: 500,
        retry_after: None,
        message: "boom".into(),
    }))
}

fn policy(max_retries: u32) -> RetryPolicy {
    RetryPolicy {
        max_retries,
        base_delay: Duration::from_millis(500),
        max_delay: Duration::from_secs(8),
        attempt_timeout: Duration::from_secs(30),
    }
}

fn request() -> LlmRequest {
    LlmRequest::new("m", "hello")
}

#[tokio::test(start_paused = true)]
async fn rate_limit_waits_at_least_retry_after_then_succeeds() {
    let provider = ScriptedProvider::new(vec![
        Step::Answer(Err(LlmError::RateLimited {
            provider: "scripted".into(),
            retry_after: Some(Duration::from_secs(2)),
            message: "slow down".into(),
        })),
        ok("fine"),
    ]);
    let (response, attempts) = complete_with_retry(&provider, &request(), None, &policy(2))
        .await
        .expect("second attempt succeeds");
    assert_eq!(response.text, "fine");
    assert_eq!(attempts.count, 2);
    assert_eq!(attempts.failures.len(), 1);
    assert_eq!(attempts.failures[0].code(), "llm_rate_limited");
    let times = provider.call_times();
    assert!(
        times[1] - times[0] >= Duration::from_secs(2),
        "{:?}",
        times[1] - times[0]
    );
    assert!(attempts.waited >= Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn server_errors_are_retried_until_the_budget_is_spent() {
    let provider = ScriptedProvider::new(vec![server_error(), server_error(), server_error()]);
    let error = complete_with_retry(&provider, &request(), None, &policy(2))
        .await
        .expect_err("every attempt fails");
    assert!(
        matches!(error, LlmError::Server { status: 500, .. }),
        "{error:?}"
    );
    let times = provider.call_times();
    assert_eq!(times.len(), 3, "one attempt plus two retries");
    // Equal jitter: each wait is between half and all of the doubling backoff.
    let first = times[1] - times[0];
    let second = times[2] - times[1];
    assert!(
        first >= Duration::from_millis(250) && first <= Duration::from_millis(500),
        "{first:?}"
    );
    assert!(
        second >= Duration::from_millis(500) && second <= Duration::from_secs(1),
        "{second:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn errors_that_cannot_improve_are_not_retried() {
    let permanent = [
        LlmError::Auth {
            provider: "scripted".into(),
            status: 401,
            message: "bad key".into(),
        },
        LlmError::ModelNotFound {
            provider: "scripted".into(),
            model: "m".into(),
            message: "no".into(),
        },
        LlmError::BadRequest {
            provider: "scripted".into(),
            status: 400,
            message: "no".into(),
        },
        LlmError::Malformed {
            provider: "scripted".into(),
            message: "no".into(),
        },
    ];
    for error in permanent {
        let provider = ScriptedProvider::new(vec![Step::Answer(Err(error.clone())), ok("never")]);
        let got = complete_with_retry(&provider, &request(), None, &policy(5))
            .await
            .expect_err("not retried");
        assert_eq!(got, error);
        assert_eq!(provider.call_times().len(), 1, "{error:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_hung_attempt_times_out_and_the_next_one_answers() {
    let provider = ScriptedProvider::new(vec![Step::Hang, ok("late but fine")]);
    let (response, attempts) = complete_with_retry(&provider, &request(), None, &policy(1))
        .await
        .expect("the retry answers");
    assert_eq!(response.text, "late but fine");
    assert_eq!(
        attempts.failures,
        vec![LlmError::Timeout {
            provider: "scripted".into(),
            after: Duration::from_secs(30)
        }]
    );
    let times = provider.call_times();
    assert!(times[1] - times[0] >= Duration::from_secs(30));
}

#[tokio::test(start_paused = true)]
async fn zero_retries_means_one_attempt() {
    let provider = ScriptedProvider::new(vec![server_error()]);
    let error = complete_with_retry(&provider, &request(), None, &policy(0))
        .await
        .expect_err("no retry");
    assert_eq!(error.code(), "llm_server_error");
    assert_eq!(provider.call_times().len(), 1);
}

#[tokio::test]
async fn retries_over_real_http_end_with_the_vendor_answer() {
    let failing = || {
        Reply::json(
            503,
            json!({"error": {"message": "overloaded", "type": "server_error"}}),
        )
    };
    let success = Reply::json(
        200,
        json!({"id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o-mini",
               "choices": [{"index": 0, "message": {"role": "assistant", "content": "third time lucky"}, "finish_reason": "stop"}],
               "usage": {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}}),
    );
    let server = VendorServer::start(vec![failing(), failing(), success]).await;
    let provider = OpenAiProvider::openai("sk-test".into(), Some(&server.url)).expect("provider");
    let policy = RetryPolicy {
        max_retries: 2,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
        attempt_timeout: Duration::from_secs(30),
    };
    let (response, attempts) = complete_with_retry(&provider, &request(), None, &policy)
        .await
        .expect("the third attempt succeeds");
    assert_eq!(response.text, "third time lucky");
    assert_eq!(attempts.count, 3);
    assert!(
        attempts
            .failures
            .iter()
            .all(|e| e.code() == "llm_server_error")
    );
    assert_eq!(server.requests().len(), 3);
}

#[test]
fn the_policy_follows_runtime_yaml() {
    let config = bmad2pf_compiler::config::LlmConfig {
        max_retries: 4,
        timeout: 7,
        ..Default::default()
    };
    let policy = RetryPolicy::from_config(&config);
    assert_eq!(policy.max_retries, 4);
    assert_eq!(policy.attempt_timeout, Duration::from_secs(7));
}

/// Over real HTTP on a paused clock. The attempt limit is off (zero): with a
/// paused clock tokio jumps to the next timer whenever it waits for I/O, which
/// would fire an attempt timeout while the loopback server is still answering.
fn http_policy() -> RetryPolicy {
    RetryPolicy {
        attempt_timeout: Duration::ZERO,
        ..policy(2)
    }
}

fn openai_error(status: u16, headers: Vec<(&'static str, String)>) -> Reply {
    Reply::Json {
        status,
        headers,
        body: json!({"error": {"message": format!("HTTP {status} from the test"), "type": "test"}}),
    }
}

#[tokio::test(start_paused = true)]
async fn retry_after_from_the_vendor_header_is_honoured() {
    let success = Reply::json(
        200,
        json!({"id": "chatcmpl-2", "object": "chat.completion", "model": "gpt-4o-mini",
               "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
               "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}),
    );
    let server = VendorServer::start(vec![
        openai_error(429, vec![("retry-after", "2".into())]),
        success,
    ])
    .await;
    let provider = OpenAiProvider::openai("sk-test".into(), Some(&server.url)).expect("provider");
    let (response, attempts) = complete_with_retry(&provider, &request(), None, &http_policy())
        .await
        .expect("the retry succeeds");
    assert_eq!(response.text, "ok");
    assert_eq!(attempts.count, 2);
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert!(requests[1].at - requests[0].at >= Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn unauthorized_over_http_is_not_retried() {
    let server = VendorServer::start(vec![openai_error(401, Vec::new())]).await;
    let provider = OpenAiProvider::openai("sk-test".into(), Some(&server.url)).expect("provider");
    let error = complete_with_retry(&provider, &request(), None, &http_policy())
        .await
        .expect_err("bad key");
    assert_eq!(error.code(), "llm_auth");
    assert_eq!(server.requests().len(), 1);
}
