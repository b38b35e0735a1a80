//! Human in the loop over real HTTP (SPEC 8.3, 8.7): a run whose agent
//! asks stops `interrupted` with its question, `POST /runs/{id}/resume`
//! answers it and the run finishes; every error row of resume; `POST /run`
//! in both modes; a cancel of a run that waits. The analyst runs on the
//! mock LLM with the `ask_human` tool, so it asks once.

mod common;

use common::{Setup, SseReader, TestResult, TestServer, assert_error, call};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn asking_server() -> Result<TestServer, Box<dyn std::error::Error + Send + Sync>> {
    TestServer::start(Setup {
        analyst_asks: true,
        ..Setup::default()
    })
    .await
}

/// Starts a background run (interactive, the default) and waits until it
/// stops; the run.
async fn interrupted_run(
    server: &TestServer,
    story: &str,
) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
    let accepted = call(
        server
            .client
            .post(server.url("/runs"))
            .json(&json!({"flow": "default", "story_id": story, "input": "a todo app"})),
        StatusCode::ACCEPTED,
    )
    .await?;
    let run_id = accepted["run_id"].as_str().ok_or("a run id")?;
    let run = wait(server, run_id).await?;
    assert_eq!(run["status"], "interrupted", "{run}");
    Ok(run)
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

fn resume(server: &TestServer, run_id: &str, body: Value) -> reqwest::RequestBuilder {
    server
        .client
        .post(server.url(&format!("/runs/{run_id}/resume")))
        .json(&body)
}

#[tokio::test]
async fn a_question_stops_the_run_and_its_answer_finishes_it() -> TestResult {
    let server = asking_server().await?;
    let run = interrupted_run(&server, "s1").await?;
    let run_id = run["run_id"].as_str().ok_or("run id")?;
    let interrupts = run["interrupts"].as_array().ok_or("interrupts")?;
    assert_eq!(interrupts.len(), 1, "{run}");
    let question = &interrupts[0];
    assert_eq!(question["agent"], "analyst");
    assert_eq!(question["kind"], "ask");
    assert_eq!(question["source"], "tool");
    assert_eq!(question["status"], "open");
    assert!(question["prompt"].as_str().is_some_and(|p| !p.is_empty()));
    assert_eq!(run["results"]["analyst"]["status"], "interrupted");
    assert!(
        run["results"].get("pm").is_none(),
        "pm waits behind the question"
    );
    assert!(run["finished_at"].is_null());
    let interrupt_id = question["id"].as_str().ok_or("interrupt id")?;

    let listed = call(
        server.client.get(server.url("/runs?status=interrupted")),
        StatusCode::OK,
    )
    .await?;
    assert_eq!(listed["runs"][0]["run_id"], run_id);
    assert_eq!(listed["runs"][0]["open_interrupts"], 1);
    let metrics = server.metrics().await?;
    for line in [
        r#"bmad2pf_interrupts_total{kind="ask"} 1"#,
        r#"bmad2pf_runs{status="queued"} 0"#,
        r#"bmad2pf_runs{status="running"} 0"#,
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }

    let accepted = call(
        resume(
            &server,
            run_id,
            json!({"interrupt_id": interrupt_id, "answer": "Small teams"}),
        ),
        StatusCode::ACCEPTED,
    )
    .await?;
    assert_eq!(accepted["run_id"], run_id);
    let done = wait(&server, run_id).await?;
    assert_eq!(done["status"], "success", "{done}");
    assert_eq!(done["interrupts"][0]["status"], "answered");
    assert_eq!(done["interrupts"][0]["answer"], "Small teams");
    assert_eq!(done["results"]["analyst"]["status"], "completed");
    assert_eq!(done["results"]["pm"]["status"], "completed");
    assert_eq!(done["results"]["analyst"]["usage"]["calls"], 2);

    // One stream tells it all, in order, with ids 1, 2, …
    let response = server
        .client
        .get(server.url(&format!("/runs/{run_id}/events")))
        .send()
        .await?;
    let mut reader = SseReader::new(response);
    let mut names = Vec::new();
    let mut ids = Vec::new();
    while let Some(event) = reader.next().await? {
        ids.push(event.id.ok_or("an id")?);
        if event.event == "status" {
            let data: Value = serde_json::from_str(&event.data)?;
            names.push(format!(
                "status:{}",
                data["status"].as_str().unwrap_or_default()
            ));
        } else if event.event == "interrupt" {
            names.push("interrupt".into());
        }
    }
    assert_eq!(
        names,
        [
            "status:queued",
            "status:running",
            "interrupt",
            "status:interrupted",
            "status:queued",
            "status:running",
            "status:success"
        ]
    );
    assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "{ids:?}");

    // Answered once is answered.
    let late = assert_error(
        resume(
            &server,
            run_id,
            json!({"interrupt_id": interrupt_id, "answer": "again"}),
        )
        .send()
        .await?,
        StatusCode::CONFLICT,
        "not_interrupted",
    )
    .await?;
    assert_eq!(late["error"]["details"]["status"], "success");
    Ok(())
}

#[tokio::test]
async fn every_error_of_resume_has_its_status_and_code() -> TestResult {
    let server = asking_server().await?;
    let run = interrupted_run(&server, "s2").await?;
    let run_id = run["run_id"].as_str().ok_or("run id")?;
    let interrupt_id = run["interrupts"][0]["id"].as_str().ok_or("interrupt id")?;

    assert_error(
        resume(
            &server,
            "run-x",
            json!({"interrupt_id": interrupt_id, "answer": "a"}),
        )
        .send()
        .await?,
        StatusCode::BAD_REQUEST,
        "invalid_id",
    )
    .await?;
    assert_error(
        resume(
            &server,
            "run-0123456789abcdef",
            json!({"interrupt_id": interrupt_id, "answer": "a"}),
        )
        .send()
        .await?,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await?;
    let not_open = assert_error(
        resume(
            &server,
            run_id,
            json!({"interrupt_id": "int-0000000000000000", "answer": "a"}),
        )
        .send()
        .await?,
        StatusCode::CONFLICT,
        "interrupt_not_open",
    )
    .await?;
    assert_eq!(not_open["error"]["details"]["open"], json!([interrupt_id]));
    for body in [
        json!({"interrupt_id": interrupt_id}),
        json!({"interrupt_id": interrupt_id, "answer": "   "}),
        json!({"interrupt_id": interrupt_id, "decision": "approve"}),
    ] {
        assert_error(
            resume(&server, run_id, body).send().await?,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_answer",
        )
        .await?;
    }
    for body in [
        json!({"answer": "a"}),
        json!({"interrupt_id": interrupt_id, "answer": "a", "extra": 1}),
        json!({"interrupt_id": interrupt_id, "decision": "maybe"}),
    ] {
        assert_error(
            resume(&server, run_id, body).send().await?,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        )
        .await?;
    }
    // Nothing of that touched the run.
    let still = call(
        server.client.get(server.url(&format!("/runs/{run_id}"))),
        StatusCode::OK,
    )
    .await?;
    assert_eq!(still["status"], "interrupted");
    assert_eq!(still["interrupts"][0]["status"], "open");

    // A second run of the story is refused while the first waits.
    let refused = assert_error(
        server
            .client
            .post(server.url("/runs"))
            .json(&json!({"flow": "default", "story_id": "s2"}))
            .send()
            .await?,
        StatusCode::CONFLICT,
        "run_in_progress",
    )
    .await?;
    assert_eq!(refused["error"]["details"]["status"], "interrupted");

    // Cancel ends it at once; its question is cancelled with it.
    let cancelled = call(
        server
            .client
            .post(server.url(&format!("/runs/{run_id}/cancel"))),
        StatusCode::OK,
    )
    .await?;
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["interrupts"][0]["status"], "cancelled");
    let after = assert_error(
        resume(
            &server,
            run_id,
            json!({"interrupt_id": interrupt_id, "answer": "a"}),
        )
        .send()
        .await?,
        StatusCode::CONFLICT,
        "not_interrupted",
    )
    .await?;
    assert_eq!(after["error"]["details"]["status"], "cancelled");
    Ok(())
}

#[tokio::test]
async fn post_run_is_headless_unless_asked_and_then_answers_at_the_question() -> TestResult {
    let server = asking_server().await?;
    let headless = call(
        server
            .client
            .post(server.url("/run"))
            .json(&json!({"flow": "default", "story_id": "s3", "input": "x"})),
        StatusCode::OK,
    )
    .await?;
    assert_eq!(headless["status"], "success", "{headless}");
    assert_eq!(headless["mode"], "headless");
    assert!(headless["interrupts"].as_array().is_some_and(Vec::is_empty));
    let questions = headless["open_questions"]
        .as_array()
        .ok_or("open_questions")?;
    assert_eq!(questions.len(), 1, "{headless}");
    assert_eq!(questions[0]["agent"], "analyst");
    assert_eq!(questions[0]["kind"], "ask");

    let interactive = call(
        server.client.post(server.url("/run")).json(
            &json!({"flow": "default", "story_id": "s4", "input": "x", "mode": "interactive"}),
        ),
        StatusCode::OK,
    )
    .await?;
    assert_eq!(interactive["status"], "interrupted", "{interactive}");
    assert_eq!(interactive["interrupts"][0]["status"], "open");
    Ok(())
}
