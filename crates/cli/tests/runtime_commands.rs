//! Black-box tests of the commands that execute agents — `run`, `exec`,
//! `serve` (with `--watch`) — as real processes, on the shipped examples and
//! the mock LLM, with stores in a temp working directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
mod common;

use common::serve;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn planning() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/planning")
}

/// Runs the binary in `cwd` (where relative store paths land).
fn bmad2pf(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> std::io::Result<Output> {
    Command::new(env!("CARGO_BIN_EXE_bmad2pf"))
        .current_dir(cwd)
        .args(args)
        .envs(env.iter().copied())
        .output()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn run_writes_documents_and_exits_by_status() -> TestResult {
    let dir = tempfile::tempdir()?;
    let src = planning();
    let src = src.to_str().unwrap_or_default();
    let ok = bmad2pf(
        dir.path(),
        &[
            "run", "planning", "--story", "s1", "--input", "todo app", "--src", src, "--json",
        ],
        &[],
    )?;
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
    let outcome: serde_json::Value = serde_json::from_slice(&ok.stdout)?;
    assert_eq!(outcome["status"], "success");
    assert!(dir.path().join(".bmad2pf/docs/s1__prd.md").is_file());
    assert!(text(&ok.stderr).contains("analyst"), "progress on stderr");

    // An LLM outage: the run fails, exit 1, never a success.
    let failed = bmad2pf(
        dir.path(),
        &[
            "run", "brief", "--story", "s2", "--input", "x", "--src", src,
        ],
        &[
            ("BMAD2PF_LLM_MOCK_FAILURE_RATE", "1.0"),
            ("BMAD2PF_LLM_MAX_RETRIES", "0"),
        ],
    )?;
    assert_eq!(failed.status.code(), Some(1), "{}", text(&failed.stdout));
    assert!(text(&failed.stdout).contains("error"));

    let unknown = bmad2pf(
        dir.path(),
        &["run", "nope", "--story", "s", "--src", src],
        &[],
    )?;
    assert_eq!(unknown.status.code(), Some(2));
    assert!(text(&unknown.stderr).contains("unknown flow"));
    Ok(())
}

#[test]
fn a_pending_run_exits_3_and_continues_after_the_document_is_added() -> TestResult {
    let dir = tempfile::tempdir()?;
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("agents"))?;
    std::fs::write(
        src.join("agents/writer.md"),
        "---\nid: writer\nrequires: [spec.md]\n---\nWrite from {{ docs[\"spec.md\"] }}\n",
    )?;
    let src = src.to_str().unwrap_or_default();
    let pending = bmad2pf(
        dir.path(),
        &["run", "default", "--story", "s", "--src", src],
        &[],
    )?;
    assert_eq!(pending.status.code(), Some(3));
    assert!(text(&pending.stdout).contains("spec.md"));
    std::fs::write(dir.path().join("docs/s__spec.md"), "# Spec")?;
    let done = bmad2pf(
        dir.path(),
        &["run", "default", "--story", "s", "--src", src],
        &[],
    )?;
    assert_eq!(done.status.code(), Some(0), "{}", text(&done.stdout));
    assert!(dir.path().join("docs/s__writer.md").is_file());
    Ok(())
}

#[test]
fn a_backup_restored_into_a_new_directory_has_the_documents_and_their_history() -> TestResult {
    let (dir, restored) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let src = planning();
    let src = src.to_str().unwrap_or_default();
    let run = [
        "run", "planning", "--story", "s1", "--input", "todo app", "--src", src,
    ];
    assert_eq!(bmad2pf(dir.path(), &run, &[])?.status.code(), Some(0));
    // A person's edit of a document file, not yet read by anything.
    let brief = Path::new(".bmad2pf/docs/s1__project-brief.md");
    std::fs::write(dir.path().join(brief), "# Brief, edited by hand\n")?;
    let backup = dir.path().join("backup.db");
    let backup_arg = backup.to_str().unwrap_or_default();
    let made = bmad2pf(
        dir.path(),
        &["backup", "--to", backup_arg, "--src", src],
        &[],
    )?;
    assert_eq!(made.status.code(), Some(0), "{}", text(&made.stderr));
    assert!(
        text(&made.stdout).contains("backed up"),
        "{}",
        text(&made.stdout)
    );
    // Never over an existing file; runtime.yaml alone is enough to find the store.
    let runtime = planning().join("runtime.yaml");
    let runtime = runtime.to_str().unwrap_or_default();
    let again = bmad2pf(
        dir.path(),
        &["backup", "--to", backup_arg, "--config", runtime],
        &[],
    )?;
    assert_eq!(again.status.code(), Some(2));
    assert!(
        text(&again.stderr).contains("exists already"),
        "{}",
        text(&again.stderr)
    );

    // Restore: the backup becomes the database of an empty directory.
    std::fs::create_dir_all(restored.path().join(".bmad2pf"))?;
    std::fs::copy(&backup, restored.path().join(".bmad2pf/bmad2pf.db"))?;
    // The next run finds every agent up to date, and the start wrote the
    // document files back from the database, the edit included.
    let rerun = bmad2pf(restored.path(), &run, &[])?;
    assert_eq!(rerun.status.code(), Some(0), "{}", text(&rerun.stderr));
    assert!(
        text(&rerun.stdout).contains("skipped"),
        "{}",
        text(&rerun.stdout)
    );
    assert_eq!(
        std::fs::read_to_string(restored.path().join(brief))?,
        "# Brief, edited by hand\n"
    );
    Ok(())
}

#[test]
fn exec_asks_for_inputs_then_answers() -> TestResult {
    let dir = tempfile::tempdir()?;
    let src = planning();
    let src = src.to_str().unwrap_or_default();
    let needs = bmad2pf(
        dir.path(),
        &["exec", "pm", "--instruction", "Write the PRD", "--src", src],
        &[],
    )?;
    assert_eq!(needs.status.code(), Some(3));
    assert!(text(&needs.stderr).contains("project-brief.md"));
    let brief = dir.path().join("brief.md");
    std::fs::write(&brief, "# Brief")?;
    let doc = format!("project-brief.md={}", brief.display());
    let done = bmad2pf(
        dir.path(),
        &[
            "exec",
            "pm",
            "--instruction",
            "Write the PRD",
            "--doc",
            &doc,
            "--src",
            src,
            "--json",
        ],
        &[],
    )?;
    assert_eq!(done.status.code(), Some(0), "{}", text(&done.stderr));
    let answer: serde_json::Value = serde_json::from_slice(&done.stdout)?;
    assert_eq!(answer["status"], "completed");
    assert_eq!(answer["metadata"]["provider"], "mock");
    Ok(())
}

async fn get_json(url: &str) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    Ok(common::http_client()?.get(url).send().await?.json().await?)
}

#[tokio::test]
async fn serve_answers_and_stops_cleanly_on_sigterm() -> TestResult {
    let dir = tempfile::tempdir()?;
    let src = planning();
    let mut server = serve(
        dir.path(),
        &["--src", src.to_str().unwrap_or_default()],
        &[],
    )?;
    let health = get_json(&format!("{}/health", server.base)).await?;
    assert_eq!(health["status"], "healthy");
    let client = common::http_client()?;
    let run: serde_json::Value = client
        .post(format!("{}/run", server.base))
        .json(&serde_json::json!({"flow": "brief", "story_id": "s1", "input": "notes app"}))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(run["status"], "success", "{run}");
    let doc = client
        .get(format!("{}/doc/s1__project-brief", server.base))
        .send()
        .await?;
    assert_eq!(doc.status(), 200);
    let openapi = get_json(&format!("{}/openapi.json", server.base)).await?;
    assert!(openapi["paths"]["/run"].is_object());

    let pid = server.child.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status()?;
    assert!(killed.success());
    let started = Instant::now();
    loop {
        if let Some(status) = server.child.try_wait()? {
            assert!(status.success(), "serve exits 0 after SIGTERM: {status:?}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "serve did not stop after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

#[tokio::test]
async fn serve_watch_swaps_in_good_edits_and_keeps_serving_through_bad_ones() -> TestResult {
    let dir = tempfile::tempdir()?;
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("agents"))?;
    let agent = src.join("agents/writer.md");
    std::fs::write(&agent, "---\nid: writer\ndescription: first\n---\nWrite.\n")?;
    let server = serve(
        dir.path(),
        &["--src", src.to_str().unwrap_or_default(), "--watch"],
        &[],
    )?;
    let url = format!("{}/agents/writer", server.base);
    assert_eq!(get_json(&url).await?["description"], "first");

    // A broken edit: the last good bundle keeps serving.
    std::fs::write(&agent, "---\nid: writer\ndescriptoin: typo\n---\nWrite.\n")?;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(get_json(&url).await?["description"], "first");

    // A good edit is picked up.
    std::fs::write(
        &agent,
        "---\nid: writer\ndescription: second\n---\nWrite.\n",
    )?;
    let started = Instant::now();
    loop {
        if get_json(&url).await?["description"] == "second" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the edit was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// A minimal OpenAI-compatible chat completions server: answers every
/// request with `reply` and keeps the request bodies.
async fn openai_compatible_server(
    reply: &'static str,
) -> Result<
    (
        String,
        std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
    ),
    Box<dyn std::error::Error>,
> {
    use axum::{Json, Router, routing::post};
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let recorded = seen.clone();
    let app = Router::new().route(
        "/v1/chat/completions",
        post(move |Json(body): Json<serde_json::Value>| {
            let recorded = recorded.clone();
            async move {
                if let Ok(mut all) = recorded.lock() {
                    all.push(body);
                }
                Json(serde_json::json!({
                    "id": "chatcmpl-1", "object": "chat.completion", "model": "local-model",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16}
                }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/v1", listener.local_addr()?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((url, seen))
}

#[tokio::test]
async fn serve_runs_a_flow_against_an_openai_compatible_server() -> TestResult {
    let (llm_url, seen) = openai_compatible_server("# Brief\nA list app for families.").await?;
    let dir = tempfile::tempdir()?;
    let src = planning();
    let server = serve(
        dir.path(),
        &["--src", src.to_str().unwrap_or_default()],
        &[
            ("BMAD2PF_LLM_PROVIDER", "openai_compatible"),
            ("BMAD2PF_LLM_BASE_URL", &llm_url),
            ("BMAD2PF_LLM_MODEL", "local-model"),
        ],
    )?;
    let run: serde_json::Value = common::http_client()?
        .post(format!("{}/run", server.base))
        .json(&serde_json::json!({"flow": "brief", "story_id": "fam", "input": "a shopping list app"}))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(run["status"], "success", "{run}");
    assert_eq!(run["results"]["analyst"]["usage"]["output_tokens"], 4);
    let doc = common::http_client()?
        .get(format!("{}/doc/fam__project-brief", server.base))
        .send()
        .await?
        .text()
        .await?;
    assert_eq!(doc, "# Brief\nA list app for families.");
    let requests = seen.lock().map(|r| r.clone()).unwrap_or_default();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0]["model"], "local-model");
    assert!(
        requests[0]["messages"]
            .to_string()
            .contains("a shopping list app")
    );
    Ok(())
}

/// The browser the docs-page test drives: `BMAD2PF_TEST_CHROMIUM`, else
/// `chromium` on `PATH`.
fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("BMAD2PF_TEST_CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join("chromium"))
        .find(|path| path.is_file())
}

/// Runs `command` to its end, killing it after `limit`.
fn output_within(
    mut command: Command,
    limit: Duration,
) -> Result<Output, Box<dyn std::error::Error>> {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut stdout = child.stdout.take().ok_or("no stdout")?;
    let reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut bytes).map(|_| bytes)
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{command:?} did not finish within {limit:?}").into());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = reader.join().map_err(|_| "stdout reader panicked")??;
    Ok(Output {
        status,
        stdout,
        stderr: Vec::new(),
    })
}

/// The docs page renders in a real browser from the binary alone: headless
/// Chromium (this machine has no internet, and the browser's own network
/// features are off) loads `/docs/`, runs its scripts, and the rendered page
/// shows every path of `/openapi.json`. Skipped with a loud line when no
/// Chromium is installed, except under CI (`CI` set), where that fails.
#[tokio::test]
async fn the_docs_page_renders_every_route_offline_in_a_browser() -> TestResult {
    let Some(browser) = chromium() else {
        if std::env::var_os("CI").is_some() {
            return Err(
                "chromium is not installed, and CI must not skip the docs-page test".into(),
            );
        }
        eprintln!(
            "\n==== SKIPPED: no chromium (apt-get install chromium, or set BMAD2PF_TEST_CHROMIUM) — the docs page was not rendered ====\n"
        );
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let src = planning();
    let server = serve(
        dir.path(),
        &["--src", src.to_str().unwrap_or_default()],
        &[],
    )?;
    let openapi = get_json(&format!("{}/openapi.json", server.base)).await?;
    let mut paths: Vec<String> = openapi["paths"]
        .as_object()
        .ok_or("openapi.json has paths")?
        .keys()
        .cloned()
        .collect();
    paths.sort();
    assert!(paths.len() >= 15, "{paths:?}");

    let mut command = Command::new(browser);
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=15000",
            "--dump-dom",
        ])
        .arg(format!(
            "--user-data-dir={}",
            dir.path().join("browser").display()
        ))
        .arg(format!("{}/docs/", server.base));
    // The server is another process: blocking this test's runtime is harmless.
    let page = output_within(command, Duration::from_secs(120))?;
    let dom = text(&page.stdout);
    assert!(page.status.success(), "chromium failed: {:?}", page.status);
    let mut rendered: Vec<String> = dom
        .split("class=\"opblock-summary-path\" data-path=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(|path| path.replace("&amp;", "&"))
        .collect();
    rendered.sort();
    rendered.dedup();
    assert_eq!(
        rendered, paths,
        "the rendered page lists the document's paths"
    );
    Ok(())
}
