//! A hostile client against the real server over HTTP: requests built to
//! find where the answers stray from SPEC 5 (status, error shape, request
//! ids, ids, limits), one test per way they did. Each ends by checking that
//! the server still answers.

mod common;

use bmad2pf_engine::Engine;
use bmad2pf_engine::store::{
    DocId, DocMeta, DocStore, DocVersion, DocWriter, Document, StoreError,
};
use common::{
    Setup, SseReader, TestResult, TestServer, agent, assert_error, call, error_code, json_with,
    read_response,
};
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Asserts that the server is still up and healthy.
async fn assert_alive(server: &TestServer) -> TestResult {
    let health = server.client.get(server.url("/health")).send().await?;
    assert_eq!(
        json_with(health, StatusCode::OK).await?["status"],
        "healthy"
    );
    Ok(())
}

/// `body` nested `levels` deep in arrays: `[[…body…]]`.
fn nested(levels: usize, body: &str) -> String {
    format!("{}{body}{}", "[".repeat(levels), "]".repeat(levels))
}

#[tokio::test]
async fn options_without_cors_is_a_method_like_any_other() -> TestResult {
    let server = TestServer::start(Setup::default()).await?;
    let options = server
        .client
        .request(Method::OPTIONS, server.url("/flows"))
        .send()
        .await?;
    assert!(options.headers().contains_key("allow"));
    assert!(options.headers().contains_key("x-request-id"));
    assert_error(
        options,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    )
    .await?;
    let unknown = server
        .client
        .request(Method::OPTIONS, server.url("/no/such/route"))
        .send()
        .await?;
    assert_error(unknown, StatusCode::NOT_FOUND, "not_found").await?;
    server.stop().await;

    let guarded = TestServer::start(Setup {
        api_key: Some("k".into()),
        ..Setup::default()
    })
    .await?;
    assert_error(
        guarded
            .client
            .request(Method::OPTIONS, guarded.url("/flows"))
            .send()
            .await?,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await?;
    guarded.stop().await;
    Ok(())
}

#[tokio::test]
async fn missing_and_duplicate_fields_are_named_in_the_details() -> TestResult {
    let server = TestServer::start(Setup::default()).await?;
    for (body, field) in [
        (r#"{"flow": "default"}"#, "story_id"),
        (r#"{"story_id": "s"}"#, "flow"),
        (
            r#"{"flow": "default", "story_id": "s", "flow": "x"}"#,
            "flow",
        ),
    ] {
        let response = server
            .client
            .post(server.url("/run"))
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await?;
        let answer = assert_error(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        )
        .await?;
        assert_eq!(answer["error"]["details"]["field"], field, "{body}");
    }
    let no_instruction = server
        .client
        .post(server.url("/agent/pm/execute"))
        .json(&json!({"documents": {}}))
        .send()
        .await?;
    let answer = assert_error(
        no_instruction,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
    )
    .await?;
    assert_eq!(answer["error"]["details"]["field"], "instruction");
    assert_alive(&server).await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn valid_json_of_the_wrong_kind_is_422_and_broken_json_is_400() -> TestResult {
    let server = TestServer::start(Setup::default()).await?;
    // serde_json calls an enum given `null` or a number a syntax error; it is valid JSON.
    for status in [json!(null), json!(5), json!([]), json!({})] {
        let body = json!({"workflow_id": "w", "agent_id": "pm", "status": status});
        let response = server
            .client
            .put(server.url("/orchestration/status"))
            .json(&body)
            .send()
            .await?;
        let answer = assert_error(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        )
        .await?;
        assert_eq!(answer["error"]["details"]["field"], "status");
    }
    // Cut-off bodies whose first error is a type error are still malformed JSON.
    for (method, path, body) in [
        (Method::POST, "/run", "[".repeat(1000)),
        (
            Method::POST,
            "/run",
            r#"{"flow": 1, "story_id": "#.to_string(),
        ),
        (Method::PUT, "/doc/a", r#"{"content": [[["#.to_string()),
    ] {
        let response = server
            .client
            .request(method, server.url(path))
            .header(CONTENT_TYPE, "application/json")
            .body(body.clone())
            .send()
            .await?;
        let answer = assert_error(response, StatusCode::BAD_REQUEST, "malformed_json").await?;
        assert!(answer["error"]["details"]["column"].is_u64());
    }
    assert_alive(&server).await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_body_declared_too_large_is_refused_before_it_is_sent() -> TestResult {
    let server = TestServer::start(Setup {
        max_body_bytes: Some(1024),
        ..Setup::default()
    })
    .await?;
    // The head promises 10 MB and no body follows: the answer must not wait for it.
    let head = "PUT /doc/big HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
        Content-Type: text/markdown\r\nContent-Length: 10000000\r\n\r\n";
    // The timeout only turns a regression (waiting for the body) into a failure instead of a hang.
    let response = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        server.raw_bytes(head.as_bytes()),
    )
    .await
    .map_err(|_| "no answer while the promised body was not sent")??;
    assert_eq!(response.status, 413);
    assert!(response.header("x-request-id").is_some());
    let body: Value = serde_json::from_str(&response.body)?;
    assert_eq!(error_code(&body), "payload_too_large");
    // Chunked, without a length: cut off while read.
    let chunk = "x".repeat(600);
    let chunked = format!(
        "PUT /doc/big HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
        Content-Type: text/markdown\r\nTransfer-Encoding: chunked\r\n\r\n\
        258\r\n{chunk}\r\n258\r\n{chunk}\r\n0\r\n\r\n"
    );
    let response = server.raw_bytes(chunked.as_bytes()).await?;
    assert_eq!(response.status, 413);
    let status = call(
        server.client.get(server.url("/doc/big/status")),
        StatusCode::OK,
    )
    .await?;
    assert_eq!(status, json!({"exists": false}));
    assert_alive(&server).await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn story_ids_in_queries_and_run_bodies_are_checked_like_every_id() -> TestResult {
    let server = TestServer::start(Setup::default()).await?;
    // `analyst` requires nothing, so the engine never builds a document id from the story.
    for path in [
        "/agent/analyst/ready?story_id=..",
        "/agent/analyst/ready?story_id=a%2Fb",
        "/agent/pm/ready?story_id=..%2F..%2Fx",
        "/agent/pm/ready?story_id=",
    ] {
        let response = server.client.get(server.url(path)).send().await?;
        let body = assert_error(response, StatusCode::BAD_REQUEST, "invalid_id").await?;
        assert_eq!(body["error"]["details"]["kind"], "story id");
    }
    for stream in [false, true] {
        let response = server
            .client
            .post(server.url("/run"))
            .json(&json!({"flow": "default", "story_id": "a/../b", "stream": stream}))
            .send()
            .await?;
        assert_error(response, StatusCode::BAD_REQUEST, "invalid_id").await?;
    }
    assert_alive(&server).await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn execute_refuses_unknown_fields() -> TestResult {
    let server = TestServer::start(Setup::default()).await?;
    let response = server
        .client
        .post(server.url("/agent/pm/execute"))
        .json(&json!({"instruction": "plan", "documnets": {"analyst": "# A"}}))
        .send()
        .await?;
    let body = assert_error(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
    )
    .await?;
    assert_eq!(body["error"]["details"]["field"], "documnets");
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn memory_refuses_values_it_could_not_read_back() -> TestResult {
    let server = TestServer::start(Setup::default()).await?;
    let put = |levels: usize| {
        server
            .client
            .put(server.url("/memory/shared:deep/k"))
            .header(CONTENT_TYPE, "application/json")
            .body(nested(levels, "1"))
            .send()
    };
    // 127 levels parse, but the stored record around the value would not.
    let too_deep = put(127).await?;
    assert_error(
        too_deep,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
    )
    .await?;
    assert_error(
        server
            .client
            .get(server.url("/memory/shared:deep/k"))
            .send()
            .await?,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await?;
    let deepest = put(64).await?;
    assert_eq!(deepest.status(), StatusCode::OK);
    let read = call(
        server.client.get(server.url("/memory/shared:deep/k")),
        StatusCode::OK,
    )
    .await?;
    assert_eq!(read, serde_json::from_str::<Value>(&nested(64, "1"))?);
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn unusable_client_request_ids_are_replaced() -> TestResult {
    let server = TestServer::start(Setup::default()).await?;
    let longest = "r".repeat(128);
    let too_long = "r".repeat(129);
    let cases: [(&[u8], bool); 6] = [
        (b"req-42", true),
        (longest.as_bytes(), true),
        (b"", false),
        (b"two words", false),
        (b"\xff\xfe", false),
        (too_long.as_bytes(), false),
    ];
    for (sent, echoed) in cases {
        let response = server
            .client
            .get(server.url("/health"))
            .header(
                "x-request-id",
                reqwest::header::HeaderValue::from_bytes(sent)?,
            )
            .send()
            .await?;
        let id = response
            .headers()
            .get("x-request-id")
            .map(|v| v.as_bytes().to_vec())
            .unwrap_or_default();
        if echoed {
            assert_eq!(id, sent);
        } else {
            assert_ne!(id, sent);
            assert_eq!(id.len(), 36, "not a generated UUID: {id:?}");
        }
    }
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn error_responses_from_every_layer_carry_a_request_id() -> TestResult {
    let server = TestServer::start(Setup {
        api_key: Some("k".into()),
        max_body_bytes: Some(16),
        ..Setup::default()
    })
    .await?;
    let c = &server.client;
    let responses = [
        (c.get(server.url("/flows")), StatusCode::UNAUTHORIZED),
        (
            c.get(server.url("/nope")).bearer_auth("k"),
            StatusCode::NOT_FOUND,
        ),
        (
            c.patch(server.url("/flows")).bearer_auth("k"),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            c.put(server.url("/doc/a"))
                .bearer_auth("k")
                .header(CONTENT_TYPE, "text/plain")
                .body("x".repeat(17)),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            c.put(server.url("/doc/a"))
                .bearer_auth("k")
                .header(CONTENT_TYPE, "application/xml")
                .body("<a/>"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
    ];
    for (request, status) in responses {
        let response = request.header("x-request-id", "hostile-1").send().await?;
        assert_eq!(response.headers()["x-request-id"], "hostile-1", "{status}");
        error_code(&json_with(response, status).await?);
    }
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn mcp_transport_errors_say_what_was_wrong() -> TestResult {
    let server = TestServer::start(Setup::default()).await?;
    let c = &server.client;
    let mcp_accepting = |accept: &str| {
        c.post(server.url("/mcp"))
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, accept)
    };
    let mcp = || mcp_accepting("application/json, text/event-stream");
    let list = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    // Each with the status the MCP SDK chose and its reason, not the
    // status's generic message (`no such route` of a route that exists).
    let cases = [
        (
            mcp().header("mcp-session-id", "gone").body(list),
            StatusCode::NOT_FOUND,
            "not_found",
            "Session not found",
        ),
        (
            mcp_accepting("application/json").body(list),
            StatusCode::NOT_ACCEPTABLE,
            "not_acceptable",
            "text/event-stream",
        ),
        (
            mcp().header("host", "rebinding.example").body(list),
            StatusCode::FORBIDDEN,
            "forbidden",
            "Host",
        ),
    ];
    for (request, status, code, reason) in cases {
        let body = assert_error(request.send().await?, status, code).await?;
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(reason), "{status}: {message}");
    }
    // A JSON body that cannot be read is a JSON-RPC parse error (400).
    let unreadable = mcp().body("{").send().await?;
    assert_eq!(unreadable.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = unreadable.json().await?;
    assert_eq!(body["error"]["code"], -32700, "{body}");
    assert_alive(&server).await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn any_case_of_the_bearer_scheme_carries_the_key() -> TestResult {
    let server = TestServer::start(Setup {
        api_key: Some("s3cret".into()),
        ..Setup::default()
    })
    .await?;
    for (value, status) in [
        ("bearer s3cret", StatusCode::OK),
        ("BEARER s3cret", StatusCode::OK),
        ("bearer s3cre", StatusCode::UNAUTHORIZED),
        ("Basic s3cret", StatusCode::UNAUTHORIZED),
    ] {
        let response = server
            .client
            .get(server.url("/flows"))
            .header("authorization", value)
            .send()
            .await?;
        assert_eq!(response.status(), status, "{value}");
    }
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn made_up_methods_do_not_make_new_metric_series() -> TestResult {
    let server = TestServer::start(Setup::default()).await?;
    for name in ["FOO1", "FOO2", "BREW"] {
        assert_error(
            server
                .client
                .request(Method::from_bytes(name.as_bytes())?, server.url("/health"))
                .send()
                .await?,
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        )
        .await?;
    }
    let metrics = server.metrics().await?;
    assert!(
        !metrics.contains("FOO1") && !metrics.contains("BREW"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"bmad2pf_http_requests_total{method="other",route="/health",status="405"} 3"#
        ),
        "{metrics}"
    );
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn the_docs_page_never_calls_the_online_validator() -> TestResult {
    let server = TestServer::start(Setup::default()).await?;
    let initializer = server
        .client
        .get(server.url("/docs/swagger-initializer.js"))
        .send()
        .await?
        .text()
        .await?;
    // Swagger UI's default fetches a badge from validator.swagger.io whenever
    // the page is not served from localhost.
    assert!(
        initializer.contains(r#""validatorUrl": "none""#),
        "{initializer}"
    );
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn text_documents_in_another_charset_are_refused() -> TestResult {
    let server = TestServer::start(Setup::default()).await?;
    for (content_type, status) in [
        (
            "text/plain; charset=iso-8859-1",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "text/markdown; charset=\"windows-1252\"",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        ("text/markdown; charset=UTF-8", StatusCode::OK),
        ("text/plain; charset=us-ascii", StatusCode::OK),
        ("text/plain", StatusCode::OK),
    ] {
        let response = server
            .client
            .put(server.url("/doc/latin"))
            .header(CONTENT_TYPE, content_type)
            .body("cafe")
            .send()
            .await?;
        if status == StatusCode::OK {
            assert_eq!(response.status(), status, "{content_type}");
        } else {
            assert_error(response, status, "unsupported_media_type").await?;
        }
    }
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn hostile_bytes_neither_crash_nor_hang_the_server() -> TestResult {
    let server = TestServer::start(Setup::default()).await?;
    let c = &server.client;
    let deep = c
        .put(server.url("/memory/shared/k"))
        .header(CONTENT_TYPE, "application/json")
        .body("[".repeat(100_000))
        .send()
        .await?;
    assert_eq!(deep.status(), StatusCode::BAD_REQUEST);
    let not_utf8 = c
        .post(server.url("/run"))
        .header(CONTENT_TYPE, "application/json")
        .body(b"{\"flow\": \"\xff\"}".to_vec())
        .send()
        .await?;
    assert_eq!(not_utf8.status(), StatusCode::BAD_REQUEST);
    let nul = c
        .put(server.url("/doc/nul"))
        .header(CONTENT_TYPE, "text/markdown")
        .body("a\0b")
        .send()
        .await?;
    assert_eq!(nul.status(), StatusCode::OK);
    assert_eq!(
        c.get(server.url("/doc/nul")).send().await?.text().await?,
        "a\0b"
    );
    assert_error(
        c.get(server.url(&"/a".repeat(5000))).send().await?,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await?;
    let bad_utf8_path = c.get(server.url("/doc/%ff%fe")).send().await?;
    assert_eq!(bad_utf8_path.status(), StatusCode::BAD_REQUEST);
    let (status, _) = server
        .raw("GET", &format!("/doc/{}", "x".repeat(200)), "")
        .await?;
    assert_eq!(status, 404);
    let (status, _) = server
        .raw("GET", &format!("/doc/{}", "x".repeat(201)), "")
        .await?;
    assert_eq!(status, 400);
    assert_alive(&server).await?;
    server.stop().await;
    Ok(())
}

/// A server whose header-read timeout is one second.
async fn impatient_server(
    latency_ms: u64,
) -> Result<TestServer, Box<dyn std::error::Error + Send + Sync>> {
    TestServer::start(Setup {
        latency_ms,
        header_read_timeout: Some(Duration::from_secs(1)),
        ..Setup::default()
    })
    .await
}

/// Reads `stream` until the server closes it (or resets it) and returns
/// how long that took; fails after `limit`.
async fn closed_within(
    stream: &mut TcpStream,
    limit: Duration,
) -> Result<Duration, Box<dyn std::error::Error + Send + Sync>> {
    let started = Instant::now();
    let mut sink = [0u8; 1024];
    loop {
        match tokio::time::timeout(limit, stream.read(&mut sink)).await {
            Err(_) => return Err(format!("still open after {limit:?}").into()),
            Ok(Ok(0) | Err(_)) => return Ok(started.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn connections_that_never_finish_a_request_head_are_closed() -> TestResult {
    let server = impatient_server(0).await?;
    let keep_alive = "GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let cases: [(&str, &[u8]); 5] = [
        ("half a request line", b"GET /hea"),
        ("nothing", b""),
        ("a prefix of the HTTP/2 preface", b"PRI * HTTP/2.0\r\n"),
        (
            "headers without their blank line",
            b"POST /run HTTP/1.1\r\nHost: x\r\n",
        ),
        ("one request, then idle keep-alive", keep_alive.as_bytes()),
    ];
    let slow = cases.iter().map(|(name, bytes)| async move {
        let mut stream = TcpStream::connect(server.address).await?;
        stream.write_all(bytes).await?;
        if bytes.ends_with(b"\r\n\r\n") {
            assert_eq!(read_response(&mut stream).await?.status, 200, "{name}");
        }
        let took = closed_within(&mut stream, Duration::from_secs(5)).await;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>((*name, took?))
    });
    for outcome in futures::future::join_all(slow).await {
        let (name, took) = outcome?;
        assert!(
            took >= Duration::from_millis(800) && took < Duration::from_secs(3),
            "{name}: closed after {took:?}"
        );
    }
    // A head that trickles in byte by byte is cut off too: the timeout
    // counts from its first byte, not from the last one.
    let mut stream = TcpStream::connect(server.address).await?;
    let started = Instant::now();
    let mut closed = false;
    for byte in b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Slow: 1234567890\r\n" {
        if stream.write_all(&[*byte]).await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !closed {
        closed_within(&mut stream, Duration::from_secs(3)).await?;
    }
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert_alive(&server).await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_request_body_that_stalls_is_answered_not_waited_for() -> TestResult {
    let server = impatient_server(0).await?;
    let mut stream = TcpStream::connect(server.address).await?;
    // 100 bytes promised, 10 sent, then silence.
    stream
        .write_all(
            b"PUT /doc/stalled HTTP/1.1\r\nHost: localhost\r\n\
              Content-Type: text/markdown\r\nContent-Length: 100\r\n\r\n# Stalled",
        )
        .await?;
    let started = Instant::now();
    let response = tokio::time::timeout(Duration::from_secs(5), read_response(&mut stream))
        .await
        .map_err(|_| "no answer 5 s after the body stalled")??;
    let took = started.elapsed();
    assert_eq!(response.status, 400, "{response:?}");
    assert!(response.body.contains("unreadable_body"), "{response:?}");
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_secs(3),
        "answered after {took:?}"
    );
    let absent = server.client.get(server.url("/doc/stalled")).send().await?;
    assert_eq!(absent.status(), 404, "nothing of a cut-off body is stored");
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn keep_alive_and_http2_still_work_with_the_timeout() -> TestResult {
    let server = impatient_server(0).await?;
    let mut stream = TcpStream::connect(server.address).await?;
    for i in 0..4 {
        let request = format!(
            "GET /doc/missing-{i} HTTP/1.1\r\nHost: localhost\r\nX-Request-Id: keep-{i}\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await?;
        let response = read_response(&mut stream).await?;
        assert_eq!(response.status, 404);
        assert_eq!(
            response.header("x-request-id"),
            Some(format!("keep-{i}").as_str())
        );
        // Idle for less than the timeout between requests.
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    let h2 = common::http_client_builder()
        .http2_prior_knowledge()
        .build()?;
    let health = h2.get(server.url("/health")).send().await?;
    assert_eq!(health.version(), reqwest::Version::HTTP_2);
    assert_eq!(health.status(), StatusCode::OK);
    assert!(health.headers().contains_key("x-request-id"));
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_streamed_run_outlasts_the_header_read_timeout() -> TestResult {
    // Each agent answers after 1.2 s: events are further apart than the
    // timeout, and the run takes more than twice as long.
    let server = impatient_server(1200).await?;
    let started = Instant::now();
    let response = server
        .client
        .post(server.url("/run"))
        .header(ACCEPT, "text/event-stream")
        .json(&json!({"flow": "default", "story_id": "slow-stream", "input": "x"}))
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::OK);
    let mut reader = SseReader::new(response);
    let mut arrivals = Vec::new();
    let mut done = Value::Null;
    while let Some(event) = reader.next().await? {
        arrivals.push((event.event.clone(), started.elapsed()));
        if event.event == "done" {
            done = serde_json::from_str(&event.data)?;
        }
    }
    assert_eq!(done["status"], "success", "{arrivals:?}");
    // The first agent's result arrived as it happened, not with `done`.
    let first_result = arrivals.iter().find(|(name, _)| name == "result");
    let last = arrivals.last().map(|(_, at)| *at).unwrap_or_default();
    assert!(
        first_result.is_some_and(|(_, at)| *at + Duration::from_millis(800) < last),
        "{arrivals:?}"
    );
    server.stop().await;
    Ok(())
}

/// The HTTP/2 frame types and flag the idle tests use (RFC 9113 6).
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const ACK: u8 = 0x1;

/// Writes one HTTP/2 frame on stream 0 (the connection).
async fn write_frame(stream: &mut TcpStream, kind: u8, flags: u8, payload: &[u8]) -> TestResult {
    let length = u32::try_from(payload.len())?.to_be_bytes();
    let mut frame = vec![length[1], length[2], length[3], kind, flags, 0, 0, 0, 0];
    frame.extend_from_slice(payload);
    stream.write_all(&frame).await?;
    Ok(())
}

/// Reads one HTTP/2 frame: its type, flags and payload; `None` when the
/// server closed (or reset) the connection.
async fn read_frame(stream: &mut TcpStream) -> Option<(u8, u8, Vec<u8>)> {
    let mut head = [0u8; 9];
    stream.read_exact(&mut head).await.ok()?;
    let length = u32::from_be_bytes([0, head[0], head[1], head[2]]);
    let mut payload = vec![0u8; usize::try_from(length).ok()?];
    stream.read_exact(&mut payload).await.ok()?;
    Some((head[3], head[4], payload))
}

/// What an HTTP/2 client that never sends a request saw until the server
/// closed its connection, counted from the preface.
struct IdleHttp2 {
    goaways: usize,
    first_goaway: Duration,
    closed: Duration,
}

/// Opens an HTTP/2 connection (preface and SETTINGS), sends no request,
/// acknowledges the server's SETTINGS and, when `answer_pings`, its PINGs,
/// and reads until the server closes the connection (10 s at most).
async fn idle_http2(
    server: &TestServer,
    answer_pings: bool,
) -> Result<IdleHttp2, Box<dyn std::error::Error + Send + Sync>> {
    let mut stream = TcpStream::connect(server.address).await?;
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await?;
    write_frame(&mut stream, SETTINGS, 0, &[]).await?;
    let started = Instant::now();
    let mut goaways = Vec::new();
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), read_frame(&mut stream))
            .await
            .map_err(|_| "still open after 10 s")?;
        let Some((kind, flags, payload)) = frame else {
            break;
        };
        match kind {
            SETTINGS if flags & ACK == 0 => write_frame(&mut stream, SETTINGS, ACK, &[]).await?,
            PING if flags & ACK == 0 && answer_pings => {
                write_frame(&mut stream, PING, ACK, &payload).await?
            }
            GOAWAY => {
                assert_eq!(payload.get(4..8), Some(&[0u8; 4][..]), "not NO_ERROR");
                goaways.push(started.elapsed());
            }
            _ => {}
        }
    }
    Ok(IdleHttp2 {
        goaways: goaways.len(),
        first_goaway: *goaways.first().ok_or("closed without a GOAWAY")?,
        closed: started.elapsed(),
    })
}

#[tokio::test]
async fn idle_http2_connections_are_closed() -> TestResult {
    let server = impatient_server(0).await?;
    let (polite, deaf) = tokio::try_join!(idle_http2(&server, true), idle_http2(&server, false))?;
    // Both idle for the timeout, then a graceful shutdown: GOAWAY and PING.
    for client in [&polite, &deaf] {
        assert!(
            client.first_goaway >= Duration::from_millis(800),
            "GOAWAY after {:?}",
            client.first_goaway
        );
    }
    // The PING answered, the server sends its final GOAWAY and closes.
    assert_eq!(polite.goaways, 2);
    // Unanswered, it drops the connection a second timeout later.
    assert_eq!(deaf.goaways, 1);
    assert!(
        deaf.closed >= deaf.first_goaway + Duration::from_millis(800),
        "GOAWAY after {:?}, closed after {:?}",
        deaf.first_goaway,
        deaf.closed
    );
    assert_alive(&server).await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn an_http2_connection_streaming_a_run_is_closed_only_once_idle() -> TestResult {
    // Each agent answers after 1.2 s: the run's events are further apart
    // than the timeout, and the run lasts more than twice as long.
    let server = impatient_server(1200).await?;
    let stream = TcpStream::connect(server.address).await?;
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await?;
    let connection = tokio::spawn(connection);
    let run = hyper::Request::post(server.url("/run"))
        .header(CONTENT_TYPE, "application/json")
        .header(ACCEPT, "text/event-stream")
        .body(json!({"flow": "default", "story_id": "h2-slow", "input": "x"}).to_string())?;
    let started = Instant::now();
    let response = sender.send_request(run).await?;
    assert_eq!(response.status(), StatusCode::OK);
    let events = response.into_body().collect().await?.to_bytes();
    let events = String::from_utf8(events.to_vec())?;
    assert!(
        started.elapsed() > Duration::from_secs(2),
        "the run took {:?}",
        started.elapsed()
    );
    let done = events
        .split("\n\n")
        .filter(|event| event.lines().any(|line| line == "event: done"))
        .find_map(|event| event.lines().find_map(|line| line.strip_prefix("data: ")))
        .ok_or_else(|| format!("no done event in {events}"))?;
    assert_eq!(serde_json::from_str::<Value>(done)?["status"], "success");
    // No GOAWAY came while the run streamed: the connection takes another
    // request, and only after that one is it idle.
    sender.ready().await?;
    let health = sender
        .send_request(hyper::Request::get(server.url("/health")).body(String::new())?)
        .await?;
    assert_eq!(health.status(), StatusCode::OK);
    health.into_body().collect().await?;
    let idle_from = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), connection)
        .await
        .map_err(|_| "still open 5 s after going idle")???;
    assert!(
        idle_from.elapsed() >= Duration::from_millis(800),
        "closed {:?} after going idle",
        idle_from.elapsed()
    );
    drop(sender);
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn shutdown_does_not_wait_for_idle_or_silent_connections() -> TestResult {
    // The default 30 s timeout: shutdown must not wait for it.
    let mut server = TestServer::start(Setup::default()).await?;
    let mut silent = TcpStream::connect(server.address).await?;
    let mut idle = TcpStream::connect(server.address).await?;
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await?;
    assert_eq!(read_response(&mut idle).await?.status, 200);
    let started = Instant::now();
    let task = server.begin_shutdown().ok_or("no server task")?;
    tokio::time::timeout(Duration::from_secs(5), task).await??;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    closed_within(&mut silent, Duration::from_secs(1)).await?;
    closed_within(&mut idle, Duration::from_secs(1)).await?;
    Ok(())
}

#[tokio::test]
async fn story_ids_too_long_for_their_documents_are_refused_up_front() -> TestResult {
    let server = TestServer::start(Setup::default()).await?;
    // The longest document of flow `default` and of agent `pm` is `analyst`:
    // `{story}__analyst` fits in 200 characters with a story of 191.
    let too_long = "s".repeat(192);
    for stream in [false, true] {
        let response = server
            .client
            .post(server.url("/run"))
            .json(&json!({"flow": "default", "story_id": too_long, "stream": stream}))
            .send()
            .await?;
        let body = assert_error(response, StatusCode::BAD_REQUEST, "invalid_id").await?;
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("document `analyst`")
                && message.contains("flow `default` accepts story ids of at most 191"),
            "{message}"
        );
        assert_eq!(body["error"]["details"]["max_len"], 191);
    }
    let ready = server
        .client
        .get(server.url(&format!("/agent/pm/ready?story_id={too_long}")))
        .send()
        .await?;
    let body = assert_error(ready, StatusCode::BAD_REQUEST, "invalid_id").await?;
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("agent `pm`") && m.contains("`analyst`")),
        "{body}"
    );
    // Nothing ran, nothing was written.
    let engine = server.state.engine();
    assert!(engine.docs().list(None).await?.is_empty());
    assert!(engine.status().list().await?.is_empty());
    // Exactly at the limit, both work.
    let at_limit = "s".repeat(191);
    let ready = server
        .client
        .get(server.url(&format!("/agent/pm/ready?story_id={at_limit}")))
        .send()
        .await?;
    assert_eq!(json_with(ready, StatusCode::OK).await?["ready"], false);
    let run = server
        .client
        .post(server.url("/run"))
        .json(&json!({"flow": "default", "story_id": at_limit, "input": "x"}))
        .send()
        .await?;
    assert_eq!(json_with(run, StatusCode::OK).await?["status"], "success");
    assert_eq!(engine.docs().list(Some(&at_limit)).await?.len(), 2);
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn story_ids_beyond_the_documented_limit_are_refused_on_every_route() -> TestResult {
    // An agent in no flow whose document has a longer name than any of flow
    // `default`: the bundle's limit (200 - 2 - 23) is below the flow's (191).
    let mut archivist = agent("archivist", &[]);
    archivist.creates = vec!["project-archive-summary.md".into()];
    let server = TestServer::start(Setup {
        extra_agent: Some(archivist),
        ..Setup::default()
    })
    .await?;
    let openapi = json_with(
        server
            .client
            .get(server.url("/openapi.json"))
            .send()
            .await?,
        StatusCode::OK,
    )
    .await?;
    for body in ["RunBody", "NewRun"] {
        let pointer = format!("/components/schemas/{body}/properties/story_id/maxLength");
        assert_eq!(openapi.pointer(&pointer), Some(&json!(175)), "{body}");
    }
    let too_long = "s".repeat(176);
    for path in ["/run", "/runs"] {
        let response = server
            .client
            .post(server.url(path))
            .json(&json!({"flow": "default", "story_id": too_long}))
            .send()
            .await?;
        let body = assert_error(response, StatusCode::BAD_REQUEST, "invalid_id").await?;
        assert_eq!(body["error"]["details"]["max_len"], 175, "{path}");
    }
    let ready = server
        .client
        .get(server.url(&format!("/agent/pm/ready?story_id={too_long}")))
        .send()
        .await?;
    assert_error(ready, StatusCode::BAD_REQUEST, "invalid_id").await?;
    let engine = server.state.engine();
    assert!(engine.list_runs(Default::default()).await?.runs.is_empty());
    // At the limit, a run works.
    let run = server
        .client
        .post(server.url("/run"))
        .json(&json!({"flow": "default", "story_id": "s".repeat(175), "input": "x"}))
        .send()
        .await?;
    assert_eq!(json_with(run, StatusCode::OK).await?["status"], "success");
    server.stop().await;
    Ok(())
}

/// Documents whose reads panic, as a bug would; everything else is the
/// real store's.
struct PanickingReads(Arc<dyn DocStore>);

#[async_trait::async_trait]
impl DocStore for PanickingReads {
    async fn get(&self, _: &DocId) -> Result<Option<Document>, StoreError> {
        panic!("a bug in the document store")
    }
    async fn get_version(&self, id: &DocId, version: u64) -> Result<Option<Document>, StoreError> {
        self.0.get_version(id, version).await
    }
    async fn versions(&self, id: &DocId) -> Result<Vec<DocVersion>, StoreError> {
        self.0.versions(id).await
    }
    async fn put(
        &self,
        id: &DocId,
        content: &str,
        writer: DocWriter,
    ) -> Result<DocVersion, StoreError> {
        self.0.put(id, content, writer).await
    }
    async fn delete(&self, id: &DocId) -> Result<bool, StoreError> {
        self.0.delete(id).await
    }
    async fn meta(&self, id: &DocId) -> Result<Option<DocMeta>, StoreError> {
        self.0.meta(id).await
    }
    async fn list(&self, story_id: Option<&str>) -> Result<Vec<DocMeta>, StoreError> {
        self.0.list(story_id).await
    }
    async fn health(&self) -> Result<(), StoreError> {
        self.0.health().await
    }
}

#[tokio::test]
async fn a_request_that_panics_is_answered_as_an_internal_error() -> TestResult {
    let server = TestServer::start(Setup::default()).await?;
    let engine = server.state.engine();
    let mut stores = engine.stores();
    stores.docs = Arc::new(PanickingReads(stores.docs));
    let panicking = Engine::with_stores(
        engine.bundle().clone(),
        engine.config().clone(),
        stores,
        &|_| None,
    )?;
    server.state.replace_engine(Arc::new(panicking));

    // One HTTP/2 connection: the panic must not take it down.
    let h2 = common::http_client_builder()
        .http2_prior_knowledge()
        .build()?;
    let put = h2
        .put(server.url("/doc/s1__brief"))
        .header("content-type", "text/markdown")
        .body("# Brief")
        .send()
        .await?;
    assert!(put.status().is_success(), "{}", put.status());
    let read = h2.get(server.url("/doc/s1__brief")).send().await?;
    assert_error(read, StatusCode::INTERNAL_SERVER_ERROR, "internal_error").await?;
    let listed = h2.get(server.url("/doc?story_id=s1")).send().await?;
    assert_eq!(listed.status(), StatusCode::OK);

    // Over MCP the same read is an internal error, not a request left
    // without an answer.
    let rpc = |session: Option<&str>, body: Value| {
        let request = server
            .client
            .post(server.url("/mcp"))
            .header(ACCEPT, "application/json, text/event-stream")
            .json(&body);
        match session {
            Some(session) => request.header("mcp-session-id", session),
            None => request,
        }
    };
    let initialized = rpc(
        None,
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "t", "version": "0"}}}),
    )
    .send()
    .await?;
    let session = initialized
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .ok_or("a session id")?
        .to_string();
    rpc(
        Some(&session),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .send()
    .await?;
    let read = rpc(
        Some(&session),
        json!({"jsonrpc": "2.0", "id": 2, "method": "resources/read",
            "params": {"uri": "doc://s1/brief"}}),
    )
    .send();
    let answer =
        tokio::time::timeout(Duration::from_secs(10), async { read.await?.text().await }).await??;
    assert!(answer.contains("-32603"), "{answer}");
    assert!(
        answer.contains("internal error: a bug in the document store"),
        "{answer}"
    );
    Ok(())
}
