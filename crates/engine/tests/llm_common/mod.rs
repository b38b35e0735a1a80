//! Shared plumbing for the LLM provider tests: a local HTTP server that plays
//! a vendor, scripted reply by reply, and records what the provider sent; and
//! the error-mapping checks every vendor must pass, instantiated per vendor by
//! [`vendor_error_tests!`].
//!
//! The server listens on 127.0.0.1 with an ephemeral port. Streamed replies are
//! written in pieces that cut every SSE event in two, so the providers' decoders
//! see events split across network reads, as they are on the real internet.

#![allow(dead_code)] // each test file uses a different part of this module

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use bmad2pf_engine::llm::{
    LlmError, LlmProvider, LlmRequest, LlmResponse, TokenSink, Usage, complete_with_timeout,
};
use futures::StreamExt;
use serde_json::Value;

/// One scripted answer of the fake vendor.
pub enum Reply {
    /// A JSON body with a status and extra headers.
    Json {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: Value,
    },
    /// A 200 `text/event-stream` reply made of these SSE events (each a complete
    /// `data: …\n\n` block), written in pieces.
    Sse(Vec<String>),
    /// Any status, content type and body text.
    Text {
        status: u16,
        content_type: &'static str,
        body: String,
    },
    /// Accept the request and never answer.
    Hang,
    /// Send 200 with event-stream headers and this first event, then stall forever.
    StallAfterHeaders(String),
}

impl Reply {
    pub fn json(status: u16, body: Value) -> Self {
        Self::Json {
            status,
            headers: Vec::new(),
            body,
        }
    }
}

/// What the provider sent.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: Method,
    /// Path and query, e.g. `/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse`.
    pub target: String,
    pub headers: HeaderMap,
    pub body: Value,
    /// When it arrived, on the tokio clock (paused in some tests).
    pub at: tokio::time::Instant,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Default)]
struct Script {
    replies: Mutex<VecDeque<Reply>>,
    requests: Mutex<Vec<Recorded>>,
}

/// A fake vendor on a loopback port.
pub struct VendorServer {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    script: Arc<Script>,
}

impl VendorServer {
    /// Starts a server that answers with `replies`, one per request, in order
    /// (a request beyond the script gets a 500 saying so).
    pub async fn start(replies: Vec<Reply>) -> Self {
        let script = Arc::new(Script {
            replies: Mutex::new(replies.into()),
            requests: Mutex::new(Vec::new()),
        });
        let router = Router::new().fallback(answer).with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let address = listener.local_addr().expect("local address");
        tokio::spawn(async move {
            axum::serve(listener, router).await.ok();
        });
        Self {
            url: format!("http://{address}"),
            script,
        }
    }

    /// The requests received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.script.requests.lock().expect("lock").clone()
    }

    /// The only request received; fails the test if there were others.
    pub fn single_request(&self) -> Recorded {
        let mut requests = self.requests();
        assert_eq!(requests.len(), 1, "expected exactly one request");
        requests.remove(0)
    }
}

async fn answer(
    State(script): State<Arc<Script>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    script.requests.lock().expect("lock").push(Recorded {
        method,
        target: uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default(),
        headers,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        at: tokio::time::Instant::now(),
    });
    let reply = script.replies.lock().expect("lock").pop_front();
    let builder = Response::builder();
    let response = match reply {
        None => builder
            .status(500)
            .body(Body::from("the test script has no reply for this request")),
        Some(Reply::Json {
            status,
            headers,
            body,
        }) => {
            let mut builder = builder
                .status(status)
                .header("content-type", "application/json");
            for (name, value) in headers {
                builder = builder.header(name, value);
            }
            builder.body(Body::from(body.to_string()))
        }
        Some(Reply::Sse(events)) => {
            let pieces: Vec<String> = events.iter().flat_map(|e| halves(e)).collect();
            let stream = futures::stream::iter(pieces).then(|piece| async move {
                // A pause, so the pieces leave as separate writes.
                tokio::time::sleep(Duration::from_millis(2)).await;
                Ok::<_, Infallible>(piece)
            });
            builder
                .status(200)
                .header("content-type", "text/event-stream")
                .body(Body::from_stream(stream))
        }
        Some(Reply::Text {
            status,
            content_type,
            body,
        }) => builder
            .status(status)
            .header("content-type", content_type)
            .body(Body::from(body)),
        Some(Reply::Hang) => {
            std::future::pending::<()>().await;
            builder.status(500).body(Body::empty())
        }
        Some(Reply::StallAfterHeaders(first)) => {
            let stream = futures::stream::once(async move { Ok::<_, Infallible>(first) })
                .chain(futures::stream::pending());
            builder
                .status(200)
                .header("content-type", "text/event-stream")
                .body(Body::from_stream(stream))
        }
    };
    response.unwrap_or_else(|_| Response::new(Body::from("bad test response")))
}

/// Cuts `text` in two on a char boundary near its middle.
fn halves(text: &str) -> [String; 2] {
    let mut middle = text.len() / 2;
    while !text.is_char_boundary(middle) {
        middle += 1;
    }
    [text[..middle].to_string(), text[middle..].to_string()]
}

/// An SSE event with only data.
pub fn sse_data(data: &Value) -> String {
    format!("data: {data}\n\n")
}

/// An SSE event with a type.
pub fn sse_event(event: &str, data: &Value) -> String {
    format!("event: {event}\ndata: {data}\n\n")
}

/// The normalised counts (SPEC 8.4) a provider must make of a vendor's
/// report: the cache counts are parts of `input`, `reasoning` of `output`.
pub fn reported(
    input: u64,
    output: u64,
    cache_read: u64,
    cache_write: u64,
    reasoning: u64,
) -> Usage {
    Usage {
        input_tokens: input,
        output_tokens: output,
        cache_read_tokens: cache_read,
        cache_write_tokens: cache_write,
        reasoning_tokens: reasoning,
        estimated: false,
    }
}

/// Collects streamed tokens.
#[derive(Clone, Default)]
pub struct TokenLog(Arc<Mutex<Vec<String>>>);

impl TokenLog {
    /// A sink appending to this log.
    pub fn sink(&self) -> impl Fn(&str) + Send + Sync + 'static {
        let log = self.0.clone();
        move |token: &str| log.lock().expect("lock").push(token.to_string())
    }

    pub fn tokens(&self) -> Vec<String> {
        self.0.lock().expect("lock").clone()
    }
}

/// Streams `request` through `provider` with a sink that records every
/// token: the provider's result, and the tokens in the order they arrived.
pub async fn complete_streamed<P: LlmProvider + ?Sized>(
    provider: &P,
    request: &LlmRequest,
) -> (Result<LlmResponse, LlmError>, Vec<String>) {
    let log = TokenLog::default();
    let sink = log.sink();
    let result = provider.complete(request, Some(&sink)).await;
    (result, log.tokens())
}

/// How one vendor looks on the wire, for the shared error checks.
pub struct VendorCase {
    /// The provider's `name()`.
    pub provider: &'static str,
    pub model: &'static str,
    /// The key the provider is built with; it must never show in an error.
    pub api_key: &'static str,
    /// Builds the provider against a server's URL.
    pub build: fn(&str) -> Arc<dyn LlmProvider>,
    /// The vendor's error body for a status and message.
    pub error_body: fn(u16, &str) -> Value,
    /// The first event of a streamed reply (for the stalled-stream check).
    pub stream_start: fn() -> String,
}

impl VendorCase {
    pub fn request(&self) -> LlmRequest {
        LlmRequest::new(self.model, "Summarise the project brief.")
    }

    /// A server playing `replies`, and this vendor's provider pointed at it.
    pub async fn serve(&self, replies: Vec<Reply>) -> (VendorServer, Arc<dyn LlmProvider>) {
        let server = VendorServer::start(replies).await;
        let provider = (self.build)(&server.url);
        (server, provider)
    }

    /// Runs one request (streamed when `stream`) against a server playing `reply`.
    pub async fn call(&self, reply: Reply, stream: bool, timeout: Duration) -> LlmError {
        let (_server, provider) = self.serve(vec![reply]).await;
        let tokens = TokenLog::default();
        let sink = tokens.sink();
        let sink: &TokenSink = &sink;
        let result = complete_with_timeout(
            provider.as_ref(),
            &self.request(),
            stream.then_some(sink),
            timeout,
        )
        .await;
        let error = match result {
            Ok(response) => panic!("{}: expected an error, got {response:?}", self.provider),
            Err(error) => error,
        };
        let text = error.to_string();
        assert!(
            text.starts_with(self.provider),
            "the message names the provider: {text}"
        );
        assert!(!text.contains(self.api_key), "the key leaked: {text}");
        error
    }

    async fn status(&self, status: u16, message: &str) -> LlmError {
        let reply = Reply::json(status, (self.error_body)(status, message));
        self.call(reply, false, Duration::from_secs(30)).await
    }
}

pub async fn unauthorized_is_auth(case: &VendorCase) {
    // Vendors echo (part of) a bad key; it must be scrubbed.
    let message = format!("Incorrect API key provided: {}", case.api_key);
    let error = case.status(401, &message).await;
    assert!(
        matches!(&error, LlmError::Auth { status: 401, message, .. } if message.contains("Incorrect API key")),
        "{error:?}"
    );
    assert!(!error.is_retryable());
    assert_eq!(error.code(), "llm_auth");
}

pub async fn unknown_model_is_model_not_found(case: &VendorCase) {
    let error = case
        .status(404, &format!("The model `{}` does not exist", case.model))
        .await;
    assert!(
        matches!(&error, LlmError::ModelNotFound { model, message, .. }
            if model == case.model && message.contains("does not exist")),
        "{error:?}"
    );
    assert!(!error.is_retryable());
}

pub async fn too_many_requests_is_rate_limited(case: &VendorCase) {
    let reply = Reply::Json {
        status: 429,
        headers: vec![("retry-after", "2".into())],
        body: (case.error_body)(429, "Rate limit reached for requests"),
    };
    let error = case.call(reply, false, Duration::from_secs(30)).await;
    assert!(
        matches!(&error, LlmError::RateLimited { message, .. } if message.contains("Rate limit reached")),
        "{error:?}"
    );
    assert_eq!(error.retry_after(), Some(Duration::from_secs(2)));
    assert!(error.is_retryable());
}

pub async fn internal_error_is_server(case: &VendorCase) {
    let error = case.status(500, "The server had an error").await;
    assert!(
        matches!(&error, LlmError::Server { status: 500, message, .. } if message.contains("server had an error")),
        "{error:?}"
    );
    assert!(error.is_retryable());
}

pub async fn other_client_error_is_bad_request(case: &VendorCase) {
    let error = case.status(400, "max_tokens is too large").await;
    assert!(
        matches!(&error, LlmError::BadRequest { status: 400, .. }),
        "{error:?}"
    );
    assert!(!error.is_retryable());
}

pub async fn hung_connection_times_out(case: &VendorCase) {
    let limit = Duration::from_millis(300);
    for stream in [false, true] {
        let error = case.call(Reply::Hang, stream, limit).await;
        assert_eq!(
            error,
            LlmError::Timeout {
                provider: case.provider.into(),
                after: limit
            }
        );
    }
}

pub async fn stalled_stream_times_out(case: &VendorCase) {
    let limit = Duration::from_millis(300);
    let error = case
        .call(Reply::StallAfterHeaders((case.stream_start)()), true, limit)
        .await;
    assert!(matches!(error, LlmError::Timeout { .. }), "{error:?}");
}

pub async fn non_json_body_is_malformed(case: &VendorCase) {
    // A proxy's page where the vendor's reply should be, streamed or not.
    for stream in [false, true] {
        let reply = Reply::Text {
            status: 200,
            content_type: "text/html",
            body: "<html><body>Welcome to nginx!</body></html>".into(),
        };
        let error = case.call(reply, stream, Duration::from_secs(30)).await;
        assert!(
            matches!(&error, LlmError::Malformed { message, .. } if message.contains("nginx")),
            "{error:?}"
        );
        assert!(!error.is_retryable());
    }
}

pub async fn wrong_shape_is_malformed(case: &VendorCase) {
    let reply = Reply::json(200, serde_json::json!({"status": "ok", "items": [1, 2]}));
    let error = case.call(reply, false, Duration::from_secs(30)).await;
    assert!(matches!(error, LlmError::Malformed { .. }), "{error:?}");
}

pub async fn garbage_in_a_stream_is_malformed(case: &VendorCase) {
    let reply = Reply::Sse(vec![(case.stream_start)(), "data: {not json\n\n".into()]);
    let error = case.call(reply, true, Duration::from_secs(30)).await;
    assert!(matches!(error, LlmError::Malformed { .. }), "{error:?}");
}

pub async fn cut_stream_is_not_a_success(case: &VendorCase) {
    // The connection closes after the first event: no end marker, no finish reason.
    let reply = Reply::Sse(vec![(case.stream_start)()]);
    let error = case.call(reply, true, Duration::from_secs(30)).await;
    assert!(matches!(error, LlmError::Network { .. }), "{error:?}");
    assert!(error.is_retryable());
}

pub async fn refused_connection_is_network(case: &VendorCase) {
    // A port that was just free: nothing listens there any more.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    drop(listener);
    let provider = (case.build)(&format!("http://{address}"));
    let result = provider.complete(&case.request(), None).await;
    let error = result.expect_err("nothing listens there");
    assert!(matches!(error, LlmError::Network { .. }), "{error:?}");
    assert!(error.is_retryable());
}

/// A request without a temperature (`llm.temperature: null`) sends none,
/// so the vendor's default applies; `ok` is a successful reply of the vendor.
pub async fn no_temperature_is_sent_without_one(case: &VendorCase, ok: Reply) {
    let (server, provider) = case.serve(vec![ok]).await;
    let mut request = case.request();
    request.temperature = None;
    provider.complete(&request, None).await.expect("completion");
    let body = server.single_request().body;
    assert!(!body.to_string().contains("temperature"), "{body}");
}

/// Instantiates the shared error-mapping checks for one vendor; `$case` is a
/// function returning its [`VendorCase`].
#[macro_export]
macro_rules! vendor_error_tests {
    ($case:path) => {
        mod error_mapping {
            use $crate::llm_common;

            #[tokio::test]
            async fn status_401_is_auth() {
                llm_common::unauthorized_is_auth(&$case()).await
            }
            #[tokio::test]
            async fn status_404_is_model_not_found() {
                llm_common::unknown_model_is_model_not_found(&$case()).await
            }
            #[tokio::test]
            async fn status_429_is_rate_limited_with_retry_after() {
                llm_common::too_many_requests_is_rate_limited(&$case()).await
            }
            #[tokio::test]
            async fn status_500_is_server() {
                llm_common::internal_error_is_server(&$case()).await
            }
            #[tokio::test]
            async fn status_400_is_bad_request() {
                llm_common::other_client_error_is_bad_request(&$case()).await
            }
            #[tokio::test]
            async fn hung_connection_is_timeout() {
                llm_common::hung_connection_times_out(&$case()).await
            }
            #[tokio::test]
            async fn stalled_stream_is_timeout() {
                llm_common::stalled_stream_times_out(&$case()).await
            }
            #[tokio::test]
            async fn non_json_body_is_malformed() {
                llm_common::non_json_body_is_malformed(&$case()).await
            }
            #[tokio::test]
            async fn wrong_shape_is_malformed() {
                llm_common::wrong_shape_is_malformed(&$case()).await
            }
            #[tokio::test]
            async fn garbage_in_a_stream_is_malformed() {
                llm_common::garbage_in_a_stream_is_malformed(&$case()).await
            }
            #[tokio::test]
            async fn cut_stream_is_not_a_success() {
                llm_common::cut_stream_is_not_a_success(&$case()).await
            }
            #[tokio::test]
            async fn refused_connection_is_network() {
                llm_common::refused_connection_is_network(&$case()).await
            }
        }
    };
}

/// An OpenAI chat completion that calls `calls` (name, arguments), ids `call_0`, `call_1`, ….
pub fn tool_call_reply(calls: &[(&str, Value)]) -> Reply {
    let calls: Vec<Value> = calls
        .iter()
        .enumerate()
        .map(|(i, (name, args))| {
            serde_json::json!({"id": format!("call_{i}"), "type": "function",
                   "function": {"name": name, "arguments": args.to_string()}})
        })
        .collect();
    Reply::json(
        200,
        serde_json::json!({"id": "c", "object": "chat.completion", "model": "m",
               "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": calls},
                            "finish_reason": "tool_calls"}],
               "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}}),
    )
}

/// An OpenAI chat completion that answers `text`.
pub fn text_reply(text: &str) -> Reply {
    Reply::json(
        200,
        serde_json::json!({"id": "c", "object": "chat.completion", "model": "m",
               "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
               "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}}),
    )
}
