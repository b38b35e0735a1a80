//! Runs as resources over real HTTP (SPEC 8.2, 8.6, 8.7): background runs,
//! listings, event replay across reconnects, waiting, cancelling, the
//! queue bound, and every error row of these routes.

mod common;

use common::{Setup, SseReader, TestResult, TestServer, assert_error, call};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::BTreeSet;

/// Starts a background run of `default` for `story`; its id.
async fn start(
    server: &TestServer,
    story: &str,
) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    let response = server
        .client
        .post(server.url("/runs"))
        .json(&json!({"flow": "default", "story_id": story, "input": "a todo app"}))
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body: Value = response.json().await?;
    let run_id = body["run_id"].as_str().ok_or("a run id")?.to_string();
    assert_eq!(location, Some(format!("/runs/{run_id}")));
    assert!(
        ["queued", "running"].contains(&body["status"].as_str().unwrap_or_default()),
        "{body}"
    );
    Ok(run_id)
}

async fn wait(
    server: &TestServer,
    run_id: &str,
) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
    call(
        server
            .client
            .get(server.url(&format!("/runs/{run_id}/wait?timeout_s=20"))),
        StatusCode::OK,
    )
    .await
}

/// Every event of a run from id `after` on (`Last-Event-ID` when given),
/// to the end of the stream: (id, name, data).
async fn events(
    server: &TestServer,
    run_id: &str,
    last_event_id: Option<u64>,
) -> Result<Vec<(u64, String, Value)>, Box<dyn std::error::Error + Send + Sync>> {
    let mut request = server
        .client
        .get(server.url(&format!("/runs/{run_id}/events")));
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id.to_string());
    }
    let response = request.send().await?;
    assert_eq!(response.status(), StatusCode::OK);
    let mut reader = SseReader::new(response);
    let mut all = Vec::new();
    while let Some(event) = reader.next().await? {
        all.push((
            event.id.ok_or("an id")?,
            event.event,
            serde_json::from_str(&event.data)?,
        ));
    }
    Ok(all)
}

#[tokio::test]
async fn a_background_run_is_stored_listed_replayed_and_waited_for() -> TestResult {
    let server = TestServer::start(Setup::default()).await?;
    let run_id = start(&server, "bg").await?;
    let run = wait(&server, &run_id).await?;
    assert_eq!(run["status"], "success", "{run}");
    assert_eq!(run["flow"], "default");
    assert_eq!(run["story_id"], "bg");
    assert_eq!(run["input"], "a todo app");
    assert_eq!(run["mode"], "interactive");
    assert_eq!(run["step"], "step-2");
    assert_eq!(run["results"]["pm"]["status"], "completed");
    let times: Vec<u64> = ["created_at", "started_at", "finished_at"]
        .iter()
        .map(|k| run[k].as_u64().unwrap_or_default())
        .collect();
    assert!(
        times[0] > 0 && times[0] <= times[1] && times[1] <= times[2],
        "{run}"
    );
    assert_eq!(
        call(
            server.client.get(server.url(&format!("/runs/{run_id}"))),
            StatusCode::OK
        )
        .await?,
        run
    );

    // The whole story replays, numbered in order, and ends with the run.
    let replay = events(&server, &run_id, None).await?;
    let names: Vec<&str> = replay.iter().map(|(_, name, _)| name.as_str()).collect();
    assert_eq!(names[..3], ["status", "status", "progress"], "{names:?}");
    assert_eq!(names[names.len() - 2..], ["status", "done"], "{names:?}");
    let ids: Vec<u64> = replay.iter().map(|(id, _, _)| *id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    assert_eq!(replay.last().map(|(_, _, data)| data), Some(&run));

    // Listed, and filtered out by another story.
    let page = call(server.client.get(server.url("/runs")), StatusCode::OK).await?;
    assert_eq!(page["runs"][0]["run_id"], run_id.as_str(), "{page}");
    assert!(
        page["runs"][0].get("results").is_none(),
        "a summary: {page}"
    );
    assert_eq!(page["next_cursor"], Value::Null);
    let other = call(
        server.client.get(server.url("/runs?story_id=other")),
        StatusCode::OK,
    )
    .await?;
    assert_eq!(other["runs"], json!([]));
    server.stop().await;
    Ok(())
}

/// A client that drops the stream and reconnects with `Last-Event-ID`
/// gets every stored event once: none lost, none repeated.
#[tokio::test]
async fn a_client_that_reconnects_misses_nothing() -> TestResult {
    let server = TestServer::start(Setup {
        latency_ms: 300,
        ..Setup::default()
    })
    .await?;
    let run_id = start(&server, "rejoin").await?;
    let response = server
        .client
        .get(server.url(&format!("/runs/{run_id}/events")))
        .send()
        .await?;
    let mut reader = SseReader::new(response);
    let mut seen = Vec::new();
    let first_result = loop {
        let event = reader.next().await?.ok_or("the stream ended early")?;
        let id = event.id.ok_or("an id")?;
        seen.push((id, event.event.clone()));
        if event.event == "result" {
            break id;
        }
    };
    drop(reader);
    let rest = events(&server, &run_id, Some(first_result)).await?;
    assert!(rest.iter().all(|(id, _, _)| *id > first_result), "{rest:?}");
    seen.extend(rest.iter().map(|(id, name, _)| (*id, name.clone())));
    assert_eq!(seen.last().map(|(_, name)| name.as_str()), Some("done"));

    // Against a full replay: the stored events (tokens are live only) match exactly.
    let stored = |events: &[(u64, String)]| -> Vec<(u64, String)> {
        events
            .iter()
            .filter(|(_, name)| name != "token")
            .cloned()
            .collect()
    };
    let full: Vec<(u64, String)> = events(&server, &run_id, None)
        .await?
        .into_iter()
        .map(|(id, name, _)| (id, name))
        .collect();
    assert_eq!(stored(&seen), full);
    let unique: BTreeSet<u64> = seen.iter().map(|(id, _)| *id).collect();
    assert_eq!(unique.len(), seen.len(), "repeated events: {seen:?}");
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn listings_page_by_cursor_and_filter_by_status() -> TestResult {
    let server = TestServer::start(Setup::default()).await?;
    let mut ids = Vec::new();
    for story in ["p1", "p2", "p3"] {
        let run_id = start(&server, story).await?;
        wait(&server, &run_id).await?;
        ids.push(run_id);
    }
    let first = call(
        server.client.get(server.url("/runs?limit=2")),
        StatusCode::OK,
    )
    .await?;
    let listed = |page: &Value| -> Vec<String> {
        page["runs"]
            .as_array()
            .map(|runs| {
                runs.iter()
                    .filter_map(|r| r["run_id"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(listed(&first), [ids[2].clone(), ids[1].clone()]);
    let cursor = first["next_cursor"].as_str().ok_or("a cursor")?;
    let second = call(
        server
            .client
            .get(server.url(&format!("/runs?limit=2&cursor={cursor}"))),
        StatusCode::OK,
    )
    .await?;
    assert_eq!(listed(&second), [ids[0].clone()]);
    assert_eq!(second["next_cursor"], Value::Null);
    let done = call(
        server
            .client
            .get(server.url("/runs?status=success,error&story_id=p2")),
        StatusCode::OK,
    )
    .await?;
    assert_eq!(listed(&done), [ids[1].clone()]);
    let queued = call(
        server.client.get(server.url("/runs?status=queued")),
        StatusCode::OK,
    )
    .await?;
    assert!(listed(&queued).is_empty());
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn bad_requests_get_the_codes_of_spec_8_7() -> TestResult {
    let server = TestServer::start(Setup::default()).await?;
    let get = |path: &str| server.client.get(server.url(path)).send();
    assert_error(
        get("/runs/nope").await?,
        StatusCode::BAD_REQUEST,
        "invalid_id",
    )
    .await?;
    assert_error(
        get("/runs/run-00000000000000000").await?,
        StatusCode::BAD_REQUEST,
        "invalid_id",
    )
    .await?;
    let unknown = "/runs/run-0000000000000000";
    assert_error(get(unknown).await?, StatusCode::NOT_FOUND, "not_found").await?;
    for path in ["/events", "/wait"] {
        assert_error(
            get(&format!("{unknown}{path}")).await?,
            StatusCode::NOT_FOUND,
            "not_found",
        )
        .await?;
    }
    let cancel = server
        .client
        .post(server.url(&format!("{unknown}/cancel")))
        .send()
        .await?;
    assert_error(cancel, StatusCode::NOT_FOUND, "not_found").await?;
    assert_error(
        get("/runs?cursor=zz").await?,
        StatusCode::BAD_REQUEST,
        "invalid_cursor",
    )
    .await?;
    assert_error(
        get("/runs?status=finished").await?,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
    )
    .await?;
    for limit in ["0", "101"] {
        assert_error(
            get(&format!("/runs?limit={limit}")).await?,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        )
        .await?;
    }
    assert_error(
        get("/runs?story_id=..").await?,
        StatusCode::BAD_REQUEST,
        "invalid_id",
    )
    .await?;

    let run_id = start(&server, "bad").await?;
    wait(&server, &run_id).await?;
    assert_error(
        get(&format!("/runs/{run_id}/wait?timeout_s=301")).await?,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
    )
    .await?;
    let bad_id = server
        .client
        .get(server.url(&format!("/runs/{run_id}/events")))
        .header("last-event-id", "three")
        .send()
        .await?;
    assert_error(bad_id, StatusCode::BAD_REQUEST, "bad_request").await?;
    // A run that succeeded cannot be cancelled.
    let ended = server
        .client
        .post(server.url(&format!("/runs/{run_id}/cancel")))
        .send()
        .await?;
    let body = assert_error(ended, StatusCode::CONFLICT, "run_not_active").await?;
    assert_eq!(body["error"]["details"]["status"], "success");
    // `stream` belongs to POST /run.
    let streamed = server
        .client
        .post(server.url("/runs"))
        .json(&json!({"flow": "default", "story_id": "s", "stream": true}))
        .send()
        .await?;
    assert_error(
        streamed,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
    )
    .await?;
    server.stop().await;
    Ok(())
}

/// One slot, one place in the queue: a second run waits queued, a third
/// is refused; a queued run cancels at once, a running one within a
/// second; a second run of a story with a queued or running one is 409.
#[tokio::test]
async fn the_queue_is_bounded_and_runs_cancel_queued_or_running() -> TestResult {
    let server = TestServer::start(Setup {
        latency_ms: 3_000,
        max_running_runs: Some(1),
        max_queued_runs: Some(1),
        ..Setup::default()
    })
    .await?;
    let running = start(&server, "q1").await?;
    let queued = start(&server, "q2").await?;
    let full = server
        .client
        .post(server.url("/runs"))
        .json(&json!({"flow": "default", "story_id": "q3"}))
        .send()
        .await?;
    assert_eq!(
        full.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    assert_error(full, StatusCode::SERVICE_UNAVAILABLE, "queue_full").await?;
    let again = server
        .client
        .post(server.url("/runs"))
        .json(&json!({"flow": "default", "story_id": "q2"}))
        .send()
        .await?;
    let body = assert_error(again, StatusCode::CONFLICT, "run_in_progress").await?;
    assert_eq!(
        body["error"]["details"],
        json!({"run_id": queued, "status": "queued"})
    );

    let cancel = |run_id: &str| {
        server
            .client
            .post(server.url(&format!("/runs/{run_id}/cancel")))
            .send()
    };
    let ended = call(
        server
            .client
            .post(server.url(&format!("/runs/{queued}/cancel"))),
        StatusCode::OK,
    )
    .await?;
    assert_eq!(ended["status"], "cancelled", "{ended}");
    let asked = cancel(&running).await?;
    assert_eq!(asked.status(), StatusCode::ACCEPTED);
    let asked: Value = asked.json().await?;
    assert_eq!(
        asked,
        json!({"run_id": running, "status": "running", "cancel_requested": true})
    );
    let started = std::time::Instant::now();
    let stopped = wait(&server, &running).await?;
    assert_eq!(stopped["status"], "cancelled", "{stopped}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(cancel(&running).await?.status(), StatusCode::OK);
    // Both stories are free again.
    for story in ["q1", "q2"] {
        let run_id = start(&server, story).await?;
        let status = cancel(&run_id).await?.status();
        assert!(
            [StatusCode::OK, StatusCode::ACCEPTED].contains(&status),
            "{status}"
        );
    }
    server.stop().await;
    Ok(())
}

/// SPEC 8.4: every call is recorded, totalled per run, agent and model,
/// on the run, its `done` event and `/usage`.
#[tokio::test]
async fn usage_is_totalled_per_run_agent_and_model() -> TestResult {
    let server = TestServer::start(Setup::default()).await?;
    let run_id = start(&server, "spent").await?;
    let run = wait(&server, &run_id).await?;
    let usage = call(
        server
            .client
            .get(server.url(&format!("/runs/{run_id}/usage"))),
        StatusCode::OK,
    )
    .await?;
    assert_eq!(usage["run_id"], run_id.as_str());
    assert_eq!(usage["totals"]["calls"], 2, "{usage}");
    assert_eq!(usage["totals"], run["usage"], "{run}");
    assert!(
        usage["totals"]["input_tokens"].as_u64() > Some(0),
        "{usage}"
    );
    // The mock's counts are estimates: never priced.
    assert!(usage["totals"].get("cost_usd").is_none(), "{usage}");
    assert_eq!(usage["totals"]["unpriced_calls"], 2, "{usage}");
    let agents: Vec<&String> = usage["by_agent"]
        .as_object()
        .map(|m| m.keys().collect())
        .unwrap_or_default();
    assert_eq!(agents, ["analyst", "pm"]);
    assert_eq!(usage["by_model"]["gpt-4o-mini"]["calls"], 2, "{usage}");
    assert!(usage.get("calls").is_none());
    let with_calls = call(
        server
            .client
            .get(server.url(&format!("/runs/{run_id}/usage?calls=true"))),
        StatusCode::OK,
    )
    .await?;
    let calls = with_calls["calls"].as_array().ok_or("calls")?;
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0]["agent"], "analyst");
    assert_eq!(calls[0]["step"], "step-1");
    assert_eq!(calls[0]["estimated"], true);
    // Each call is also an event of the run.
    let replay = events(&server, &run_id, None).await?;
    assert_eq!(
        replay.iter().filter(|(_, name, _)| name == "usage").count(),
        2
    );
    server.stop().await;
    Ok(())
}

/// A token budget stops the run after the call that reached it: the next
/// agent never calls its model, the run ends `error` / `budget_exceeded`
/// keeping what was written. A dollar budget needs prices (422).
#[tokio::test]
async fn a_budget_stops_the_run_and_a_dollar_budget_needs_prices() -> TestResult {
    let server = TestServer::start(Setup::default()).await?;
    let response = server
        .client
        .post(server.url("/runs"))
        .json(
            &json!({"flow": "default", "story_id": "tight", "input": "x", "budget": {"tokens": 1}}),
        )
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let run_id = response.json::<Value>().await?["run_id"]
        .as_str()
        .ok_or("a run id")?
        .to_string();
    let run = wait(&server, &run_id).await?;
    assert_eq!(run["status"], "error", "{run}");
    assert_eq!(run["error_code"], "budget_exceeded", "{run}");
    assert_eq!(run["budget"], json!({"tokens": 1}));
    assert_eq!(run["usage"]["calls"], 1, "{run}");
    assert_eq!(run["results"]["analyst"]["status"], "completed", "{run}");
    assert!(run["results"].get("pm").is_none(), "{run}");
    let written = server
        .client
        .get(server.url("/doc/tight__analyst"))
        .send()
        .await?;
    assert_eq!(written.status(), StatusCode::OK);

    let unpriced = server
        .client
        .post(server.url("/run"))
        .json(&json!({"flow": "default", "story_id": "usd", "budget": {"usd": 0.5}}))
        .send()
        .await?;
    let body = assert_error(
        unpriced,
        StatusCode::UNPROCESSABLE_ENTITY,
        "budget_unenforceable",
    )
    .await?;
    assert_eq!(body["error"]["details"]["model"], "gpt-4o-mini");

    let negative = server
        .client
        .post(server.url("/runs"))
        .json(&json!({"flow": "default", "story_id": "neg", "budget": {"usd": -1}}))
        .send()
        .await?;
    let body = assert_error(
        negative,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
    )
    .await?;
    assert_eq!(body["error"]["details"]["field"], "budget.usd", "{body}");
    server.stop().await;
    Ok(())
}
