//! Black-box tests of every endpoint over real HTTP: a real engine with file
//! stores in a temp dir and the mock LLM, served on 127.0.0.1:0.

mod common;

use common::{Setup, SseReader, TestResult, TestServer, assert_error, call, json_with};
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde_json::{Value, json};
use std::sync::Arc;

#[tokio::test]
async fn health_is_public_and_describes_the_bundle_and_backends() -> TestResult {
    let server = TestServer::start(Setup {
        api_key: Some("k3y".into()),
        ..Setup::default()
    })
    .await?;
    let response = server.client.get(server.url("/health")).send().await?;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().contains_key("x-request-id"));
    let body = json_with(response, StatusCode::OK).await?;
    assert_eq!(body["status"], "healthy");
    assert_eq!(body["bundle"]["agents"], 2);
    assert_eq!(body["bundle"]["flows"], 1);
    assert_eq!(body["bundle"]["source_hash"], "0123abcd");
    assert_eq!(body["backends"]["docs"], "ok");
    assert_eq!(body["backends"]["memory"], "ok");
    assert!(body["version"].is_string() && body["uptime_s"].is_u64());
    assert!(body["metrics"]["http"]["requests"].is_u64());
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn request_ids_are_echoed_or_generated_on_every_response() -> TestResult {
    let server = TestServer::start(Setup::default()).await?;
    for path in ["/health", "/no/such/route", "/doc/missing"] {
        let echoed = server
            .client
            .get(server.url(path))
            .header("x-request-id", "req-42")
            .send()
            .await?;
        assert_eq!(
            echoed
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok()),
            Some("req-42"),
            "{path}"
        );
        let generated = server.client.get(server.url(path)).send().await?;
        let id = generated
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(id.len() >= 32, "{path}: {id:?}");
    }
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn auth_guards_everything_but_health() -> TestResult {
    let server = TestServer::start(Setup {
        api_key: Some("s3cret".into()),
        ..Setup::default()
    })
    .await?;
    for path in ["/flows", "/doc/x", "/metrics", "/openapi.json", "/docs/"] {
        let response = server.client.get(server.url(path)).send().await?;
        assert_error(response, StatusCode::UNAUTHORIZED, "unauthorized").await?;
    }
    assert_error(
        server
            .client
            .get(server.url("/flows"))
            .bearer_auth("s3cre")
            .send()
            .await?,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await?;
    let bearer = server
        .client
        .get(server.url("/flows"))
        .bearer_auth("s3cret")
        .send()
        .await?;
    assert_eq!(bearer.status(), StatusCode::OK);
    let header = server
        .client
        .get(server.url("/flows"))
        .header("x-api-key", "s3cret")
        .send()
        .await?;
    assert_eq!(header.status(), StatusCode::OK);
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn documents_can_be_written_read_listed_and_deleted() -> TestResult {
    let server = TestServer::start(Setup::default()).await?;
    let c = &server.client;
    let put = c
        .put(server.url("/doc/s1__brief.md"))
        .header(CONTENT_TYPE, "text/markdown; charset=utf-8")
        .body("# Brief\n\nBuild it.\n")
        .send()
        .await?;
    assert_eq!(
        json_with(put, StatusCode::OK).await?,
        json!({"success": true, "id": "s1__brief", "bytes": 19, "version": 1})
    );

    let get = c.get(server.url("/doc/s1__brief")).send().await?;
    assert_eq!(get.status(), StatusCode::OK);
    assert!(
        get.headers()[CONTENT_TYPE]
            .to_str()?
            .starts_with("text/markdown")
    );
    assert_eq!(get.text().await?, "# Brief\n\nBuild it.\n");

    let put_json = c
        .put(server.url("/doc/s1__notes"))
        .json(&json!({"content": "n"}))
        .send()
        .await?;
    assert_eq!(json_with(put_json, StatusCode::OK).await?["bytes"], 1);
    let plain = c
        .put(server.url("/doc/s2__x"))
        .header(CONTENT_TYPE, "text/plain")
        .body("x")
        .send()
        .await?;
    assert_eq!(plain.status(), StatusCode::OK);

    let status = call(c.get(server.url("/doc/s1__brief/status")), StatusCode::OK).await?;
    assert_eq!(status["exists"], true);
    assert_eq!(status["bytes"], 19);
    assert!(status["modified"].is_u64());
    let absent = call(c.get(server.url("/doc/s1__nothing/status")), StatusCode::OK).await?;
    assert_eq!(absent, json!({"exists": false}));

    let listed = call(c.get(server.url("/doc?story_id=s1")), StatusCode::OK).await?;
    let ids: Vec<&str> = listed
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["id"].as_str())
        .collect();
    assert_eq!(ids, ["s1__brief", "s1__notes"]);
    let all = call(c.get(server.url("/doc")), StatusCode::OK).await?;
    assert_eq!(all.as_array().map(Vec::len), Some(3));

    let deleted = c.delete(server.url("/doc/s1__brief")).send().await?;
    assert_eq!(
        json_with(deleted, StatusCode::OK).await?,
        json!({"success": true})
    );
    let gone = c.get(server.url("/doc/s1__brief")).send().await?;
    assert_error(gone, StatusCode::NOT_FOUND, "not_found").await?;
    assert_error(
        c.delete(server.url("/doc/s1__brief")).send().await?,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn every_write_of_a_document_is_a_version_readable_later() -> TestResult {
    let server = TestServer::start(Setup::default()).await?;
    let c = &server.client;
    for text in ["first", "second"] {
        let put = c
            .put(server.url("/doc/s1__prd"))
            .header(CONTENT_TYPE, "text/markdown")
            .body(text)
            .send()
            .await?;
        assert_eq!(put.status(), StatusCode::OK);
    }
    let versions = call(c.get(server.url("/doc/s1__prd/versions")), StatusCode::OK).await?;
    let listed: Vec<(u64, u64, Value)> = versions
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| {
            (
                v["version"].as_u64().unwrap_or(0),
                v["bytes"].as_u64().unwrap_or(0),
                v["writer"].clone(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            (1, 5, json!({"kind": "api"})),
            (2, 6, json!({"kind": "api"}))
        ]
    );
    let latest = c.get(server.url("/doc/s1__prd")).send().await?;
    assert_eq!(latest.headers()["x-doc-version"], "2");
    assert_eq!(latest.text().await?, "second");
    let first = c.get(server.url("/doc/s1__prd?version=1")).send().await?;
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(first.text().await?, "first");
    assert_error(
        c.get(server.url("/doc/s1__prd?version=9")).send().await?,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await?;
    let bad = c
        .get(server.url("/doc/s1__prd?version=first"))
        .send()
        .await?;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    // Above what a store can hold (2^63 - 1), or 0 (versions start at 1,
    // as the OpenAPI document says): refused, not looked for.
    for version in ["9223372036854775808", "0"] {
        let beyond = c
            .get(server.url(&format!("/doc/s1__prd?version={version}")))
            .send()
            .await?;
        assert_error(beyond, StatusCode::BAD_REQUEST, "invalid_query").await?;
    }
    assert_error(
        c.get(server.url("/doc/s1__none/versions")).send().await?,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn memory_values_are_any_json() -> TestResult {
    let server = TestServer::start(Setup::default()).await?;
    let c = &server.client;
    for (key, value) in [
        ("plan", json!({"steps": [1, 2]})),
        ("count", json!(3)),
        ("note", json!("hi")),
    ] {
        let put = c
            .put(server.url(&format!("/memory/shared:team/{key}")))
            .json(&value)
            .send()
            .await?;
        assert_eq!(
            json_with(put, StatusCode::OK).await?,
            json!({"success": true})
        );
    }
    let plan = c.get(server.url("/memory/shared:team/plan")).send().await?;
    assert_eq!(
        json_with(plan, StatusCode::OK).await?,
        json!({"steps": [1, 2]})
    );
    let keys = call(c.get(server.url("/memory/shared:team")), StatusCode::OK).await?;
    assert_eq!(keys, json!(["count", "note", "plan"]));
    let isolated = c
        .put(server.url("/memory/isolated:pm:s1/k"))
        .json(&json!(null))
        .send()
        .await?;
    assert_eq!(isolated.status(), StatusCode::OK);
    assert_eq!(
        call(
            c.delete(server.url("/memory/shared:team/count")),
            StatusCode::OK
        )
        .await?,
        json!({"success": true})
    );
    assert_error(
        c.get(server.url("/memory/shared:team/count"))
            .send()
            .await?,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await?;
    let bad_scope = c.get(server.url("/memory/private/k")).send().await?;
    assert_error(bad_scope, StatusCode::BAD_REQUEST, "invalid_id").await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn malformed_requests_get_the_right_status_and_shape() -> TestResult {
    let server = TestServer::start(Setup {
        max_body_bytes: Some(1024),
        ..Setup::default()
    })
    .await?;
    let c = &server.client;

    let malformed = c
        .post(server.url("/run"))
        .header(CONTENT_TYPE, "application/json")
        .body("{\n\"flow\": }")
        .send()
        .await?;
    let body = assert_error(malformed, StatusCode::BAD_REQUEST, "malformed_json").await?;
    assert_eq!(body["error"]["details"]["line"], 2);

    let missing = c
        .post(server.url("/run"))
        .json(&json!({"flow": "default"}))
        .send()
        .await?;
    assert!(
        json_with(missing, StatusCode::UNPROCESSABLE_ENTITY).await?["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("story_id")
    );
    let wrong_type = c
        .post(server.url("/run"))
        .json(&json!({"flow": "default", "story_id": "s", "force": "yes"}))
        .send()
        .await?;
    assert_eq!(
        json_with(wrong_type, StatusCode::UNPROCESSABLE_ENTITY).await?["error"]["details"]["field"],
        "force"
    );

    let xml = c
        .post(server.url("/run"))
        .header(CONTENT_TYPE, "application/xml")
        .body("<run/>")
        .send()
        .await?;
    assert_error(
        xml,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await?;
    assert_error(
        c.put(server.url("/doc/a"))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body("a=b")
            .send()
            .await?,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await?;
    assert_error(
        c.put(server.url("/memory/shared/k"))
            .header(CONTENT_TYPE, "text/plain")
            .body("1")
            .send()
            .await?,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await?;

    let big = "x".repeat(4096);
    let too_large = c
        .put(server.url("/doc/big"))
        .header(CONTENT_TYPE, "text/markdown")
        .body(big.clone())
        .send()
        .await?;
    assert_error(
        too_large,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    )
    .await?;
    assert_error(
        c.put(server.url("/memory/shared/k"))
            .json(&json!(big))
            .send()
            .await?,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    )
    .await?;

    let wrong_method = c.patch(server.url("/doc/a")).send().await?;
    assert!(wrong_method.headers().contains_key("allow"));
    assert_error(
        wrong_method,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    )
    .await?;

    let unknown = c.get(server.url("/nope")).send().await?;
    assert_error(unknown, StatusCode::NOT_FOUND, "not_found").await?;

    let unknown_flow = c
        .post(server.url("/run"))
        .json(&json!({"flow": "nope", "story_id": "s"}))
        .send()
        .await?;
    assert_error(unknown_flow, StatusCode::NOT_FOUND, "unknown_flow").await?;
    let bad_story = c
        .post(server.url("/run"))
        .json(&json!({"flow": "default", "story_id": "../x"}))
        .send()
        .await?;
    // A story id names documents: a bad one is an invalid id (SPEC 5 "Rules").
    assert_error(bad_story, StatusCode::BAD_REQUEST, "invalid_id").await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn traversal_attempts_never_touch_files_outside_the_data_dirs() -> TestResult {
    let server = TestServer::start(Setup::default()).await?;
    let targets = [
        "/doc/..",
        "/doc/..%2Foutside%2Fevil",
        "/doc/%2e%2e",
        "/doc/%2e%2e%2foutside%2fevil",
        "/doc/%252e%252e%252foutside%252fevil",
        "/doc/%2Ftmp%2Fevil",
        "/doc/..%5C..%5Coutside%5Cevil",
        "/doc/evil%00.md",
        "/doc/../outside/evil",
        "/doc/.hidden",
        "/memory/shared/..",
        "/memory/shared:..%2F..%2Foutside/k",
        "/memory/isolated:..:s1/k",
        "/memory/shared/%2e%2e%2fevil",
        "/memory/shared/%252e%252e",
        "/memory/shared/k%00",
        "/memory/shared:%2Ftmp/k",
        "/memory/shared:a%5Cb/k",
    ];
    for target in targets {
        for method in ["GET", "PUT", "DELETE"] {
            let (status, body) = server.raw(method, target, "\"evil\"").await?;
            assert!(
                status == 400 || status == 404 || status == 405,
                "{method} {target}: {status} {body}"
            );
            if status == 400 {
                assert!(
                    body.contains("\"invalid_id\"") || body.contains("\"invalid_path\""),
                    "{method} {target}: {body}"
                );
            }
        }
    }
    let outside: Vec<_> = std::fs::read_dir(server.dir.path().join("outside"))?.collect();
    assert!(outside.is_empty(), "a file appeared outside: {outside:?}");
    let top: Vec<String> = std::fs::read_dir(server.dir.path())?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().to_string()))
        .collect();
    let mut top = top;
    top.sort();
    assert_eq!(top, ["data", "outside"]);
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn bundle_metadata_lists_flows_and_agents() -> TestResult {
    let server = TestServer::start(Setup::default()).await?;
    let flows = call(server.client.get(server.url("/flows")), StatusCode::OK).await?;
    assert_eq!(flows[0]["name"], "default");
    assert_eq!(flows[0]["steps"][1]["agents"], json!(["pm"]));
    let agents = call(server.client.get(server.url("/agents")), StatusCode::OK).await?;
    assert_eq!(agents.as_array().map(Vec::len), Some(2));
    let pm = call(server.client.get(server.url("/agents/pm")), StatusCode::OK).await?;
    assert_eq!(pm["requires"], json!(["analyst"]));
    assert_eq!(pm["outputs"], json!(["pm"]));
    assert!(pm.get("prompt_template").is_none());
    assert_error(
        server
            .client
            .get(server.url("/agents/nobody"))
            .send()
            .await?,
        StatusCode::NOT_FOUND,
        "unknown_agent",
    )
    .await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_json_run_writes_its_documents() -> TestResult {
    let server = TestServer::start(Setup::default()).await?;
    let c = &server.client;
    let run = c
        .post(server.url("/run"))
        .json(&json!({"flow": "default", "story_id": "s1", "input": "a todo app"}))
        .send()
        .await?;
    let body = json_with(run, StatusCode::OK).await?;
    assert_eq!(body["status"], "success", "{body}");
    assert!(body["run_id"].is_string());
    assert_eq!(body["results"]["analyst"]["status"], "completed");
    assert_eq!(body["results"]["pm"]["status"], "completed");
    for id in ["s1__analyst", "s1__pm"] {
        let doc = c.get(server.url(&format!("/doc/{id}"))).send().await?;
        assert_eq!(doc.status(), StatusCode::OK, "{id}");
    }
    let metrics = server.metrics().await?;
    assert!(
        metrics.contains(r#"bmad2pf_runs_total{status="success"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"route="/doc/{id}""#));
    assert!(
        !metrics.contains("s1__analyst"),
        "raw ids must not become labels"
    );
    assert!(metrics.contains("bmad2pf_llm_calls_total 2"));
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_streamed_run_sends_progress_then_results_then_done() -> TestResult {
    let server = TestServer::start(Setup::default()).await?;
    let response = server
        .client
        .post(server.url("/run"))
        .header(ACCEPT, "text/event-stream")
        .json(&json!({"flow": "default", "story_id": "s2", "input": "x"}))
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()[CONTENT_TYPE]
            .to_str()?
            .starts_with("text/event-stream")
    );
    assert_eq!(response.headers()["cache-control"], "no-cache");
    assert_eq!(response.headers()["x-accel-buffering"], "no");
    assert!(response.headers().contains_key("x-request-id"));
    let mut reader = SseReader::new(response);
    let mut names = Vec::new();
    let mut ids = Vec::new();
    let mut done = Value::Null;
    while let Some(event) = reader.next().await? {
        ids.push(event.id.unwrap_or_default());
        if event.event == "done" {
            done = serde_json::from_str(&event.data)?;
        }
        if event.event == "progress" {
            let data: Value = serde_json::from_str(&event.data)?;
            assert!(data["agent"].is_string() && data["timestamp"].is_u64());
        }
        names.push(event.event);
    }
    // Queued, running, then the agents; every event numbered in order.
    assert_eq!(names[..3], ["status", "status", "progress"], "{names:?}");
    assert_eq!(names.last().map(String::as_str), Some("done"));
    assert_eq!(ids, (1..=ids.len() as u64).collect::<Vec<_>>(), "{names:?}");
    let first_result = names.iter().position(|n| n == "result");
    assert!(first_result.is_some_and(|i| i > 0), "{names:?}");
    assert_eq!(
        names.iter().filter(|n| *n == "result").count(),
        2,
        "{names:?}"
    );
    assert_eq!(done["status"], "success");
    assert!(done["results"]["pm"].is_object());
    // `stream: true` in the body streams too.
    let by_body = server
        .client
        .post(server.url("/run"))
        .json(&json!({"flow": "default", "story_id": "s3", "stream": true}))
        .send()
        .await?;
    assert!(
        by_body.headers()[CONTENT_TYPE]
            .to_str()?
            .starts_with("text/event-stream")
    );
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_client_that_disconnects_does_not_stop_the_run() -> TestResult {
    let server = TestServer::start(Setup {
        latency_ms: 300,
        ..Setup::default()
    })
    .await?;
    let response = server
        .client
        .post(server.url("/run"))
        .header(ACCEPT, "text/event-stream")
        .json(&json!({"flow": "default", "story_id": "gone", "input": "x"}))
        .send()
        .await?;
    let mut reader = SseReader::new(response);
    assert!(reader.next_named("progress").await?.is_some());
    drop(reader);
    // The run goes on without its client: wait (bounded) for its last document.
    let mut written = false;
    for _ in 0..200 {
        let status = call(
            server.client.get(server.url("/doc/gone__pm/status")),
            StatusCode::OK,
        )
        .await?;
        if status["exists"] == true {
            written = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(written, "the run did not finish after its client left");
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn other_requests_are_served_while_a_run_waits_and_a_second_run_is_refused() -> TestResult {
    let server = TestServer::start(Setup {
        latency_ms: 1500,
        ..Setup::default()
    })
    .await?;
    let put = server
        .client
        .put(server.url("/doc/busy__brief"))
        .header(CONTENT_TYPE, "text/plain")
        .body("b")
        .send()
        .await?;
    assert_eq!(put.status(), StatusCode::OK);
    let response = server
        .client
        .post(server.url("/run"))
        .header(ACCEPT, "text/event-stream")
        .json(&json!({"flow": "default", "story_id": "busy"}))
        .send()
        .await?;
    let mut reader = SseReader::new(response);
    // The run has started (its first agent is here) and waits on the slow mock.
    assert!(reader.next_named("progress").await?.is_some());
    let rest = tokio::spawn(async move {
        let mut names = Vec::new();
        while let Ok(Some(event)) = reader.next().await {
            names.push(event.event);
        }
        names
    });

    let health = server.client.get(server.url("/health")).send().await?;
    assert_eq!(health.status(), StatusCode::OK);
    let doc = server
        .client
        .get(server.url("/doc/busy__brief"))
        .send()
        .await?;
    assert_eq!(doc.text().await?, "b");
    let second = server
        .client
        .post(server.url("/run"))
        .json(&json!({"flow": "default", "story_id": "busy"}))
        .send()
        .await?;
    let body = assert_error(second, StatusCode::CONFLICT, "run_in_progress").await?;
    assert!(
        body["error"]["details"]["run_id"]
            .as_str()
            .is_some_and(|id| id.starts_with("run-"))
    );
    // All of that was answered while the run was still going.
    assert!(
        !rest.is_finished(),
        "the run finished before the other requests were answered"
    );
    let names = rest.await?;
    assert_eq!(names.last().map(String::as_str), Some("done"));
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn concurrent_writes_lose_nothing_and_tear_nothing() -> TestResult {
    let server = Arc::new(TestServer::start(Setup::default()).await?);
    let mut writers = Vec::new();
    for i in 0..24 {
        let server = server.clone();
        writers.push(tokio::spawn(async move {
            let content = format!("writer {i:02}\n{}", "line\n".repeat(200 + i));
            let doc = server
                .client
                .put(server.url("/doc/shared__doc"))
                .header(CONTENT_TYPE, "text/markdown")
                .body(content.clone())
                .send()
                .await;
            let mem = server
                .client
                .put(server.url(&format!("/memory/shared:race/key{i}")))
                .json(&json!({"i": i}))
                .send()
                .await;
            (content, doc.map(|r| r.status()), mem.map(|r| r.status()))
        }));
    }
    let mut contents = Vec::new();
    for writer in writers {
        let (content, doc, mem) = writer.await?;
        assert_eq!(doc?, StatusCode::OK);
        assert_eq!(mem?, StatusCode::OK);
        contents.push(content);
    }
    let last = server
        .client
        .get(server.url("/doc/shared__doc"))
        .send()
        .await?
        .text()
        .await?;
    assert!(
        contents.contains(&last),
        "the document is not any one writer's content"
    );
    let keys = call(
        server.client.get(server.url("/memory/shared:race")),
        StatusCode::OK,
    )
    .await?;
    assert_eq!(keys.as_array().map(Vec::len), Some(24));
    if let Ok(server) = Arc::try_unwrap(server) {
        server.stop().await;
    }
    Ok(())
}

#[tokio::test]
async fn readiness_and_stateless_execute() -> TestResult {
    let server = TestServer::start(Setup::default()).await?;
    let c = &server.client;
    let ready = call(
        c.get(server.url("/agent/pm/ready?story_id=s9")),
        StatusCode::OK,
    )
    .await?;
    assert_eq!(ready["agent"], "pm");
    assert_eq!(ready["ready"], false);
    assert_eq!(ready["missing_docs"], json!(["analyst"]));
    let no_story = c.get(server.url("/agent/pm/ready")).send().await?;
    assert_error(no_story, StatusCode::BAD_REQUEST, "invalid_query").await?;
    assert_error(
        c.get(server.url("/agent/ghost/ready?story_id=s9"))
            .send()
            .await?,
        StatusCode::NOT_FOUND,
        "unknown_agent",
    )
    .await?;

    let needs = call(
        c.post(server.url("/agent/pm/execute"))
            .json(&json!({"instruction": "plan"})),
        StatusCode::OK,
    )
    .await?;
    assert_eq!(needs["status"], "needs_input");
    assert_eq!(needs["missing_inputs"], json!(["analyst"]));
    let done = c
        .post(server.url("/agent/pm/execute"))
        .json(&json!({"instruction": "plan", "documents": {"analyst": "# Analysis"}, "execution_id": "e-1"}))
        .send()
        .await?;
    let done = json_with(done, StatusCode::OK).await?;
    assert_ne!(done["status"], "needs_input", "{done}");
    assert_eq!(done["metadata"]["execution_id"], "e-1");
    assert_eq!(done["metadata"]["provider"], "mock");
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn orchestration_records_workflows_and_their_history() -> TestResult {
    let server = TestServer::start(Setup::default()).await?;
    let c = &server.client;
    let created = c
        .post(server.url("/orchestration/workflows"))
        .json(&json!({"workflow_id": "wf-1", "story_id": "s1", "agents": ["analyst", "pm"]}))
        .send()
        .await?;
    assert_eq!(
        json_with(created, StatusCode::CREATED).await?["agent_statuses"]["pm"]["status"],
        "pending"
    );
    let duplicate = c
        .post(server.url("/orchestration/workflows"))
        .json(&json!({"workflow_id": "wf-1", "story_id": "s1", "agents": []}))
        .send()
        .await?;
    assert_eq!(duplicate.status(), StatusCode::CONFLICT);
    let generated = call(
        c.post(server.url("/orchestration/workflows"))
            .json(&json!({"story_id": "s2"})),
        StatusCode::CREATED,
    )
    .await?;
    assert!(
        generated["workflow_id"]
            .as_str()
            .is_some_and(|id| id.starts_with("wf-"))
    );

    let update = c.put(server.url("/orchestration/status")).json(&json!({"workflow_id": "wf-1", "agent_id": "analyst", "status": "completed", "output_summary": "done"})).send().await?;
    assert_eq!(
        json_with(update, StatusCode::OK).await?["agent_statuses"]["analyst"]["output_summary"],
        "done"
    );
    let bad_status = c
        .put(server.url("/orchestration/status"))
        .json(&json!({"workflow_id": "wf-1", "agent_id": "pm", "status": "exploded"}))
        .send()
        .await?;
    assert_eq!(bad_status.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let bad_id = c
        .put(server.url("/orchestration/status"))
        .json(&json!({"workflow_id": "../wf", "agent_id": "pm", "status": "running"}))
        .send()
        .await?;
    assert_eq!(bad_id.status(), StatusCode::BAD_REQUEST);

    let status = call(
        c.get(server.url("/orchestration/status?workflow_id=wf-1")),
        StatusCode::OK,
    )
    .await?;
    assert_eq!(status["story_id"], "s1");
    assert_eq!(status["agent_statuses"]["analyst"]["status"], "completed");
    let listed = call(
        c.get(server.url("/orchestration/workflows")),
        StatusCode::OK,
    )
    .await?;
    assert_eq!(listed.as_array().map(Vec::len), Some(2));
    let history = call(
        c.get(server.url("/orchestration/workflows/wf-1/history")),
        StatusCode::OK,
    )
    .await?;
    assert_eq!(history.as_array().map(Vec::len), Some(1));
    assert_eq!(history[0]["agent_id"], "analyst");
    let cleanup = call(c.post(server.url("/orchestration/cleanup")), StatusCode::OK).await?;
    assert_eq!(cleanup, json!({"removed": 0}));
    let deleted = c
        .delete(server.url("/orchestration/workflows/wf-1"))
        .send()
        .await?;
    assert_eq!(
        json_with(deleted, StatusCode::OK).await?,
        json!({"success": true})
    );
    assert_error(
        c.get(server.url("/orchestration/status?workflow_id=wf-1"))
            .send()
            .await?,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await?;
    assert_error(
        c.get(server.url("/orchestration/workflows/wf-1/history"))
            .send()
            .await?,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await?;
    server.stop().await;
    Ok(())
}

/// Every route of the API, as the OpenAPI document must list it.
const ROUTES: &[(&str, &str)] = &[
    ("post", "/run"),
    ("post", "/runs"),
    ("get", "/runs"),
    ("get", "/runs/{id}"),
    ("get", "/runs/{id}/events"),
    ("get", "/runs/{id}/wait"),
    ("post", "/runs/{id}/cancel"),
    ("post", "/runs/{id}/resume"),
    ("get", "/runs/{id}/usage"),
    ("get", "/flows"),
    ("get", "/agents"),
    ("get", "/agents/{id}"),
    ("get", "/doc"),
    ("get", "/doc/{id}"),
    ("put", "/doc/{id}"),
    ("delete", "/doc/{id}"),
    ("get", "/doc/{id}/status"),
    ("get", "/doc/{id}/versions"),
    ("get", "/memory/{scope}"),
    ("get", "/memory/{scope}/{key}"),
    ("put", "/memory/{scope}/{key}"),
    ("delete", "/memory/{scope}/{key}"),
    ("get", "/agent/{id}/ready"),
    ("post", "/agent/{id}/execute"),
    ("get", "/orchestration/status"),
    ("put", "/orchestration/status"),
    ("get", "/orchestration/workflows"),
    ("post", "/orchestration/workflows"),
    ("delete", "/orchestration/workflows/{id}"),
    ("get", "/orchestration/workflows/{id}/history"),
    ("post", "/orchestration/cleanup"),
    ("get", "/health"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
];

#[tokio::test]
async fn openapi_lists_every_route_and_the_docs_page_is_self_contained() -> TestResult {
    let server = TestServer::start(Setup::default()).await?;
    let document = call(
        server.client.get(server.url("/openapi.json")),
        StatusCode::OK,
    )
    .await?;
    assert_eq!(document["openapi"], "3.1.0");
    for (method, path) in ROUTES {
        assert!(
            document["paths"][path][method].is_object(),
            "{method} {path} missing from openapi.json"
        );
    }
    let operations: usize = document["paths"]
        .as_object()
        .map(|p| {
            p.values()
                .filter_map(Value::as_object)
                .map(|o| o.len())
                .sum()
        })
        .unwrap_or(0);
    assert_eq!(
        operations,
        ROUTES.len(),
        "the document lists routes the server does not have"
    );
    assert_eq!(
        document.pointer("/components/schemas/RunBody/properties/flow/enum"),
        Some(&json!(["default"]))
    );

    let no_redirects = common::http_client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let redirect = no_redirects.get(server.url("/docs")).send().await?;
    assert!(redirect.status().is_redirection());
    assert_eq!(redirect.headers()["location"], "/docs/");
    let page = server.client.get(server.url("/docs/")).send().await?;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await?;
    assert!(
        html.contains("<html") || html.contains("<!DOCTYPE"),
        "{html}"
    );
    for tag in html
        .split("<script")
        .skip(1)
        .chain(html.split("<link").skip(1))
    {
        let head = tag.split('>').next().unwrap_or_default();
        assert!(
            !head.contains("http://") && !head.contains("https://"),
            "external asset: {head}"
        );
    }
    let initializer = server
        .client
        .get(server.url("/docs/swagger-initializer.js"))
        .send()
        .await?
        .text()
        .await?;
    assert!(initializer.contains("/openapi.json"), "{initializer}");
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn replacing_the_engine_serves_the_new_bundle() -> TestResult {
    let server = TestServer::start(Setup::default()).await?;
    let dir = tempfile::tempdir()?;
    let engine = common::engine(dir.path(), |_| {}, &["default", "review"]).await?;
    let previous = server.state.replace_engine(Arc::new(engine));
    assert_eq!(previous.bundle().flows.len(), 1);
    let flows = call(server.client.get(server.url("/flows")), StatusCode::OK).await?;
    assert_eq!(flows.as_array().map(Vec::len), Some(2));
    let document = call(
        server.client.get(server.url("/openapi.json")),
        StatusCode::OK,
    )
    .await?;
    assert_eq!(
        document.pointer("/components/schemas/RunBody/properties/flow/enum"),
        Some(&json!(["default", "review"]))
    );
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn cors_allows_only_the_configured_origins() -> TestResult {
    let server = TestServer::start(Setup {
        cors_origins: vec!["https://app.example".into()],
        ..Setup::default()
    })
    .await?;
    let preflight = server
        .client
        .request(reqwest::Method::OPTIONS, server.url("/run"))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await?;
    assert!(preflight.status().is_success());
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let other = server
        .client
        .get(server.url("/flows"))
        .header("origin", "https://evil.example")
        .send()
        .await?;
    assert!(!other.headers().contains_key("access-control-allow-origin"));
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn shutdown_drains_a_run_in_flight() -> TestResult {
    let mut server = TestServer::start(Setup {
        latency_ms: 300,
        ..Setup::default()
    })
    .await?;
    let response = server
        .client
        .post(server.url("/run"))
        .header(ACCEPT, "text/event-stream")
        .json(&json!({"flow": "default", "story_id": "drain"}))
        .send()
        .await?;
    let mut reader = SseReader::new(response);
    assert!(reader.next_named("progress").await?.is_some());
    // Shut down while the run is in flight: the stream still ends with `done`.
    let stopped = server.begin_shutdown();
    let mut last = String::new();
    while let Some(event) = reader.next().await? {
        last = event.event;
    }
    assert_eq!(last, "done");
    if let Some(task) = stopped {
        task.await?;
    }
    let refused = server.client.get(server.url("/health")).send().await;
    assert!(
        refused.is_err(),
        "the server still accepts connections after shutdown"
    );
    let written = std::fs::read_dir(server.dir.path().join("data/docs"))?
        .filter_map(|e| e.ok())
        .any(|e| e.file_name().to_string_lossy().starts_with("drain__pm"));
    assert!(written, "the drained run's document is on disk");
    Ok(())
}
