//! Webhooks (SPEC 8.5) over real HTTP: a server started by the test
//! harness sends its signed deliveries to receivers run by the test on
//! loopback, and the run shows each attempt; a run that asks a person
//! tells `run.interrupted`, and `run.finished` once answered.

mod common;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use common::{Setup, TestResult, TestServer, assert_error, call};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;

const SECRET: &str = "test-webhook-secret";

/// A request a receiver got.
#[derive(Debug, Clone)]
struct Received {
    headers: HeaderMap,
    body: String,
}

/// A webhook receiver on loopback answering with the statuses it is given
/// in turn (200 once they run out), recording every request.
#[derive(Clone, Default)]
struct Receiver {
    answers: Arc<Mutex<VecDeque<u16>>>,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    /// Starts a receiver; its URL.
    async fn start(
        answers: &[u16],
    ) -> Result<(Self, String), Box<dyn std::error::Error + Send + Sync>> {
        let receiver = Self {
            answers: Arc::new(Mutex::new(answers.iter().copied().collect())),
            received: Arc::default(),
        };
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(receiver.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/hook", listener.local_addr()?);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok((receiver, url))
    }

    fn received(&self) -> Vec<Received> {
        self.received
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

async fn receive(State(receiver): State<Receiver>, headers: HeaderMap, body: String) -> AxumStatus {
    receiver
        .received
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(Received { headers, body });
    let answer = receiver
        .answers
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .pop_front()
        .unwrap_or(200);
    AxumStatus::from_u16(answer).unwrap_or(AxumStatus::INTERNAL_SERVER_ERROR)
}

/// HMAC-SHA256 written out from RFC 2104, so the test checks the server's
/// signature with code it does not share.
fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|k| k ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .to_vec()
}

/// Checks `X-Bmad2pf-Signature` as a receiver would; the signed time.
fn verify(received: &Received) -> Result<u64, Box<dyn std::error::Error + Send + Sync>> {
    let header = received
        .headers
        .get("x-bmad2pf-signature")
        .ok_or("no signature header")?
        .to_str()?;
    let (t, v1) = header
        .strip_prefix("t=")
        .and_then(|rest| rest.split_once(",v1="))
        .ok_or_else(|| format!("malformed signature {header:?}"))?;
    let expected = hmac_sha256(
        SECRET.as_bytes(),
        format!("{t}.{}", received.body).as_bytes(),
    );
    let expected: String = expected.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(v1, expected, "signature of {:?}", received.body);
    Ok(t.parse()?)
}

fn header<'a>(received: &'a Received, name: &str) -> &'a str {
    received
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// A server that signs with [`SECRET`], `configure`d further.
async fn server(
    configure: impl FnOnce(&mut Setup),
) -> Result<TestServer, Box<dyn std::error::Error + Send + Sync>> {
    let mut setup = Setup {
        webhook_secret: Some(SECRET.into()),
        ..Setup::default()
    };
    configure(&mut setup);
    TestServer::start(setup).await
}

/// `GET /runs/{id}` until its first delivery's state is `state` (60 s at most).
async fn delivery_in_state(
    server: &TestServer,
    run_id: &str,
    state: &str,
) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
    for _ in 0..600 {
        let run = call(
            server.client.get(server.url(&format!("/runs/{run_id}"))),
            StatusCode::OK,
        )
        .await?;
        if run["webhook"]["deliveries"][0]["state"] == state {
            return Ok(run);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("the delivery of {run_id} never became {state}").into())
}

/// A receiver failing twice (500) then answering 200 gets three attempts,
/// each signed, all with the run's one delivery id; the run records them.
#[tokio::test]
async fn a_failing_receiver_gets_three_signed_attempts_of_one_delivery() -> TestResult {
    let (receiver, url) = Receiver::start(&[500, 500, 200]).await?;
    let server = server(|_| {}).await?;
    let accepted = call(
        server.client.post(server.url("/runs")).json(&json!({
            "flow": "default",
            "story_id": "hooked",
            "input": "x",
            "webhook": format!("{url}?token=secret-token"),
        })),
        StatusCode::ACCEPTED,
    )
    .await?;
    let run_id = accepted["run_id"].as_str().ok_or("a run id")?.to_string();
    let run = delivery_in_state(&server, &run_id, "delivered").await?;
    assert_eq!(run["status"], "success", "{run}");
    let shown = run["webhook"]["url"].as_str().unwrap_or_default();
    assert_eq!(shown, format!("{url}?***"));
    let delivery = &run["webhook"]["deliveries"][0];
    assert_eq!(delivery["event"], "run.finished");
    let codes: Vec<&Value> = delivery["attempts"]
        .as_array()
        .map(|a| a.iter().map(|attempt| &attempt["status_code"]).collect())
        .unwrap_or_default();
    assert_eq!(codes, [&json!(500), &json!(500), &json!(200)], "{run}");

    let received = receiver.received();
    assert_eq!(received.len(), 3);
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    for request in &received {
        let signed_at = verify(request)?;
        assert!(signed_at <= now && now - signed_at < 120, "t={signed_at}");
        assert_eq!(header(request, "x-bmad2pf-event"), "run.finished");
        assert_eq!(
            header(request, "x-bmad2pf-delivery"),
            delivery["delivery_id"]
        );
        assert_eq!(header(request, "content-type"), "application/json");
        let body: Value = serde_json::from_str(&request.body)?;
        assert_eq!(body["event"], "run.finished");
        assert_eq!(body["delivery_id"], delivery["delivery_id"]);
        assert_eq!(body["run"]["run_id"], run_id.as_str());
        assert_eq!(body["run"]["status"], "success");
        // The summary: no results, no webhook.
        assert!(body["run"].get("results").is_none(), "{body}");
        assert!(body["run"].get("webhook").is_none(), "{body}");
    }
    assert!(received.windows(2).all(|w| w[0].body == w[1].body));

    let metrics = server.metrics().await?;
    for line in [
        r#"bmad2pf_webhook_deliveries_total{outcome="delivered"} 1"#,
        r#"bmad2pf_webhook_deliveries_total{outcome="retried"} 2"#,
        r#"bmad2pf_webhook_deliveries_total{outcome="failed"} 0"#,
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
    server.stop().await;
    Ok(())
}

/// A receiver that accepts the connection and never answers: `POST /run`
/// returns with the run's end (its delivery still pending, unattempted),
/// and the attempt is recorded as a timeout.
#[tokio::test]
async fn a_receiver_that_never_answers_does_not_hold_the_run() -> TestResult {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    let held = Arc::new(Mutex::new(Vec::new()));
    let holding = held.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            holding
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(stream);
        }
    });
    let server = server(|setup| {
        setup.webhooks.timeout = 1;
        setup.webhooks.max_attempts = 1;
    })
    .await?;
    let run = call(
        server.client.post(server.url("/run")).json(&json!({
            "flow": "default",
            "story_id": "silent",
            "input": "x",
            "webhook": url,
        })),
        StatusCode::OK,
    )
    .await?;
    assert_eq!(run["status"], "success", "{run}");
    assert_eq!(run["webhook"]["deliveries"][0]["state"], "pending", "{run}");
    assert_eq!(
        run["webhook"]["deliveries"][0]["attempts"],
        json!([]),
        "{run}"
    );

    let run_id = run["run_id"].as_str().ok_or("a run id")?;
    let run = delivery_in_state(&server, run_id, "failed").await?;
    let attempts = &run["webhook"]["deliveries"][0]["attempts"];
    assert_eq!(attempts.as_array().map(Vec::len), Some(1), "{run}");
    assert!(attempts[0].get("status_code").is_none(), "{run}");
    let error = attempts[0]["error"].as_str().unwrap_or_default();
    assert!(error.contains("timed out"), "{error}");
    assert!(
        !held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
    );
    server.stop().await;
    Ok(())
}

/// A 404 is the receiver refusing: failed after one attempt, not retried.
#[tokio::test]
async fn a_404_fails_the_delivery_after_one_attempt() -> TestResult {
    let (receiver, url) = Receiver::start(&[404]).await?;
    let server = server(|_| {}).await?;
    let accepted = call(
        server.client.post(server.url("/runs")).json(&json!({
            "flow": "default", "story_id": "gone", "webhook": url,
        })),
        StatusCode::ACCEPTED,
    )
    .await?;
    let run_id = accepted["run_id"].as_str().ok_or("a run id")?;
    let run = delivery_in_state(&server, run_id, "failed").await?;
    let attempts = &run["webhook"]["deliveries"][0]["attempts"];
    assert_eq!(attempts.as_array().map(Vec::len), Some(1), "{run}");
    assert_eq!(attempts[0]["status_code"], 404, "{run}");
    assert_eq!(receiver.received().len(), 1);
    server.stop().await;
    Ok(())
}

/// A webhook that is not an allowed http(s) URL, or one the server cannot
/// sign, is refused before any run is stored, with the standard error body.
#[tokio::test]
async fn bad_webhooks_are_refused_with_422() -> TestResult {
    let server = server(|setup| {
        setup.webhooks.allowed_hosts = vec!["hooks.example.com".into()];
    })
    .await?;
    for (path, webhook) in [
        ("/runs", "ftp://hooks.example.com/in"),
        ("/run", "ftp://hooks.example.com/in"),
        ("/runs", "http://127.0.0.1:9/in"),
        ("/run", "not a url"),
    ] {
        let response = server
            .client
            .post(server.url(path))
            .json(&json!({"flow": "default", "story_id": "bad", "webhook": webhook}))
            .send()
            .await?;
        let body = assert_error(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_webhook",
        )
        .await?;
        assert_eq!(body["error"]["details"]["field"], "webhook", "{body}");
    }
    let runs = call(server.client.get(server.url("/runs")), StatusCode::OK).await?;
    assert_eq!(runs["runs"], json!([]), "nothing was stored");
    server.stop().await;

    let unsigned = TestServer::start(Setup::default()).await?;
    for path in ["/runs", "/run"] {
        let response = unsigned
            .client
            .post(unsigned.url(path))
            .json(&json!({
                "flow": "default", "story_id": "unsigned", "webhook": "https://hooks.example.com/in",
            }))
            .send()
            .await?;
        let body = assert_error(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "webhook_secret_missing",
        )
        .await?;
        assert_eq!(
            body["error"]["details"]["variable"], "BMAD2PF_WEBHOOK_SECRET",
            "{body}"
        );
    }
    unsigned.stop().await;
    Ok(())
}

/// The analyst asks (mock LLM): the receiver is told `run.interrupted`
/// with the open question; once it is answered the run finishes and the
/// receiver is told `run.finished`.
#[tokio::test]
async fn a_question_and_its_answer_are_told_to_the_webhook() -> TestResult {
    let (receiver, url) = Receiver::start(&[]).await?;
    let server = server(|setup| setup.analyst_asks = true).await?;
    let accepted = call(
        server.client.post(server.url("/runs")).json(&json!({
            "flow": "default", "story_id": "asks", "input": "x", "webhook": url,
        })),
        StatusCode::ACCEPTED,
    )
    .await?;
    let run_id = accepted["run_id"].as_str().ok_or("a run id")?;
    let run = delivery_in_state(&server, run_id, "delivered").await?;
    assert_eq!(run["status"], "interrupted", "{run}");
    let interrupt_id = run["interrupts"][0]["id"].as_str().ok_or("an interrupt")?;
    let asked = receiver.received();
    assert_eq!(asked.len(), 1);
    verify(&asked[0])?;
    assert_eq!(header(&asked[0], "x-bmad2pf-event"), "run.interrupted");
    let body: Value = serde_json::from_str(&asked[0].body)?;
    assert_eq!(body["run"]["status"], "interrupted", "{body}");
    assert_eq!(body["interrupts"][0]["id"], interrupt_id, "{body}");

    call(
        server
            .client
            .post(server.url(&format!("/runs/{run_id}/resume")))
            .json(&json!({"interrupt_id": interrupt_id, "answer": "the web"})),
        StatusCode::ACCEPTED,
    )
    .await?;
    for _ in 0..600 {
        let run = call(
            server.client.get(server.url(&format!("/runs/{run_id}"))),
            StatusCode::OK,
        )
        .await?;
        if run["webhook"]["deliveries"][1]["state"] == "delivered" {
            assert_eq!(run["status"], "success", "{run}");
            assert_eq!(run["webhook"]["deliveries"][1]["event"], "run.finished");
            let told = receiver.received();
            assert_eq!(told.len(), 2);
            verify(&told[1])?;
            assert_eq!(header(&told[1], "x-bmad2pf-event"), "run.finished");
            assert_ne!(
                header(&told[0], "x-bmad2pf-delivery"),
                header(&told[1], "x-bmad2pf-delivery")
            );
            server.stop().await;
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err("the run's run.finished was never delivered".into())
}
