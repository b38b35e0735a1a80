//! The web console in a real browser: headless Chromium, driven over
//! WebDriver by `chromedriver` (through `fantoccini`), against the real
//! `bmad2pf serve` on a loopback port with the built-in mock LLM.
//!
//! Each test starts its own server (in a temp directory) and browser. At the
//! end of a test its pages are photographed at laptop and phone widths into
//! `<target dir>/console-screenshots/` (the folder is printed).
//!
//! Skipped with a loud line when Chromium or chromedriver is missing, except
//! under CI (`CI` set), where that fails. `BMAD2PF_TEST_CHROMIUM` and
//! `BMAD2PF_TEST_CHROMEDRIVER` name other binaries.

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
mod common;

use common::{Server, serve};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// How long a page may take to show what a test waits for.
const PATIENCE: Duration = Duration::from_secs(60);

/// Laptop and phone viewports of the screenshots.
const WIDTHS: [(&str, u32, u32); 2] = [("laptop", 1280, 1000), ("phone", 390, 1400)];

fn planning() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/planning")
}

/// `name` from the variable `env`, else on `PATH`.
fn binary(env: &str, name: &str) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(env) {
        return Some(PathBuf::from(path));
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

/// Chromium and chromedriver, or `None` when the test must be skipped
/// (never under CI: there a missing browser is an error).
fn browser_binaries() -> Result<Option<(PathBuf, PathBuf)>, Box<dyn std::error::Error>> {
    let chromium = binary("BMAD2PF_TEST_CHROMIUM", "chromium");
    let driver = binary("BMAD2PF_TEST_CHROMEDRIVER", "chromedriver");
    match (chromium, driver) {
        (Some(chromium), Some(driver)) => Ok(Some((chromium, driver))),
        _ if std::env::var_os("CI").is_some() => Err(
            "chromium or chromedriver is not installed, and CI must not skip the console tests"
                .into(),
        ),
        _ => {
            eprintln!(
                "\n==== SKIPPED: no chromium or chromedriver (apt-get install chromium chromium-driver, or set BMAD2PF_TEST_CHROMIUM and BMAD2PF_TEST_CHROMEDRIVER) — the console was not tested ====\n"
            );
            Ok(None)
        }
    }
}

/// A child process killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A headless Chromium session through a private chromedriver.
struct Browser {
    client: Client,
    _driver: Process,
}

impl Browser {
    async fn start(
        chromium: &Path,
        driver: &Path,
        profile: &Path,
    ) -> Result<Self, Box<dyn std::error::Error>> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let driver = Process(
            Command::new(driver)
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?,
        );
        let url = format!("http://127.0.0.1:{port}");
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": chromium,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    format!("--user-data-dir={}", profile.display()),
                    "--window-size=1280,1000",
                ],
            }),
        );
        let started = Instant::now();
        let client = loop {
            match ClientBuilder::new(HttpConnector::new())
                .capabilities(capabilities.clone())
                .connect(&url)
                .await
            {
                Ok(client) => break client,
                Err(error) if started.elapsed() > Duration::from_secs(30) => {
                    return Err(format!("chromedriver did not start a session: {error}").into());
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        Ok(Self {
            client,
            _driver: driver,
        })
    }

    async fn open(&self, url: &str) -> Result<(), Box<dyn std::error::Error>> {
        self.client.goto(url).await?;
        Ok(())
    }

    /// The first element matching `css`, once there is one.
    async fn wait_for(&self, css: &str) -> Result<Element, Box<dyn std::error::Error>> {
        self.client
            .wait()
            .at_most(PATIENCE)
            .for_element(Locator::Css(css))
            .await
            .map_err(|error| format!("waited {PATIENCE:?} for `{css}`: {error}").into())
    }

    /// Types `text` into the element `css` names, once it is there.
    async fn type_into(&self, css: &str, text: &str) -> TestResult {
        self.wait_for(css).await?.send_keys(text).await?;
        Ok(())
    }

    /// Clicks the element `css` names, once it is there.
    async fn click(&self, css: &str) -> TestResult {
        self.wait_for(css).await?.click().await?;
        Ok(())
    }

    /// The text of `css` once it contains `expected`.
    async fn wait_for_text(
        &self,
        css: &str,
        expected: &str,
    ) -> Result<String, Box<dyn std::error::Error>> {
        let started = Instant::now();
        let mut last = String::new();
        while started.elapsed() < PATIENCE {
            if let Ok(element) = self.client.find(Locator::Css(css)).await {
                last = element.text().await.unwrap_or_default();
                if last.contains(expected) {
                    return Ok(last);
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!("`{css}` never showed `{expected}`; last text: {last:?}").into())
    }

    /// Photographs each `(name, url)` at every width of [`WIDTHS`].
    async fn screenshots(&self, pages: &[(&str, String)]) -> TestResult {
        for (name, url) in pages {
            self.open(url).await?;
            self.wait_for("main .page > *").await?;
            self.photograph(name).await?;
        }
        Ok(())
    }

    /// Photographs the page as it is at every width of [`WIDTHS`], into
    /// [`screenshot_folder`].
    async fn photograph(&self, name: &str) -> TestResult {
        let folder = screenshot_folder();
        std::fs::create_dir_all(&folder)?;
        for (width_name, width, height) in WIDTHS {
            self.client.set_window_size(width, height).await?;
            // Let the layout and live data (graphs, usage, streamed text) settle.
            tokio::time::sleep(Duration::from_millis(700)).await;
            let png = self.client.screenshot().await?;
            std::fs::write(folder.join(format!("{name}-{width_name}.png")), png)?;
        }
        let (_, width, height) = WIDTHS[0];
        self.client.set_window_size(width, height).await?;
        eprintln!("console screenshots: {}", folder.display());
        Ok(())
    }
}

/// `<target dir>/console-screenshots` (CARGO_TARGET_TMPDIR is `<target dir>/tmp`).
fn screenshot_folder() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).join("console-screenshots")
}

/// The planning example served from a new directory, and a browser on it.
struct Session {
    /// The server's working directory (its store); bound first so that it
    /// is removed last.
    _dir: tempfile::TempDir,
    server: Server,
    browser: Browser,
}

/// A [`Session`]; `None` when the browser is missing (see [`browser_binaries`]).
async fn planning_session(
    env: &[(&str, &str)],
) -> Result<Option<Session>, Box<dyn std::error::Error>> {
    let Some((chromium, driver)) = browser_binaries()? else {
        return Ok(None);
    };
    let dir = tempfile::tempdir()?;
    let src = planning();
    let server = serve(
        dir.path(),
        &["--src", src.to_str().unwrap_or_default()],
        env,
    )?;
    let browser = Browser::start(&chromium, &driver, &dir.path().join("profile")).await?;
    Ok(Some(Session {
        _dir: dir,
        server,
        browser,
    }))
}

async fn get(url: &str) -> Result<reqwest::Response, Box<dyn std::error::Error>> {
    Ok(common::http_client()?
        .get(url)
        .send()
        .await?
        .error_for_status()?)
}

/// Fills the start form of `flow` and submits it; the console then shows the run.
async fn start_run(
    browser: &Browser,
    server: &Server,
    flow: &str,
    story: &str,
    mode: &str,
) -> Result<String, Box<dyn std::error::Error>> {
    browser.open(&format!("{}/#/flows", server.base)).await?;
    let form = format!("form.start-run[data-flow=\"{flow}\"]");
    browser
        .type_into(&format!("{form} input[name=story_id]"), story)
        .await?;
    browser
        .type_into(
            &format!("{form} textarea[name=input]"),
            "A shared shopping list app",
        )
        .await?;
    browser
        .click(&format!("{form} input[type=radio][value={mode}]"))
        .await?;
    browser
        .click(&format!("{form} button[type=submit]"))
        .await?;
    browser.wait_for("#run-status").await?;
    let url = browser.client.current_url().await?;
    let run_id = url
        .fragment()
        .and_then(|fragment| fragment.strip_prefix("/runs/"))
        .ok_or_else(|| format!("the console did not open the run: {url}"))?
        .to_string();
    Ok(run_id)
}

#[tokio::test]
async fn a_run_started_from_the_form_completes_with_its_documents_listed() -> TestResult {
    let Some(Session {
        _dir,
        server,
        browser,
    }) = planning_session(&[("BMAD2PF_LLM_MOCK_LATENCY_MS", "150")]).await?
    else {
        return Ok(());
    };

    let run_id = start_run(&browser, &server, "planning", "shop", "headless").await?;
    browser
        .wait_for("#run-status[data-status=\"success\"]")
        .await?;
    let listed = browser
        .wait_for_text(".run-documents", "shop__review")
        .await?;
    for document in ["shop__project-brief", "shop__prd", "shop__architecture"] {
        assert!(listed.contains(document), "{document} in {listed:?}");
    }
    // The model's text (streamed, or the summary once finished) is shown per agent.
    let analyst = browser
        .wait_for_text("pre.stream[data-agent=analyst]", "mock reply")
        .await?;
    assert!(!analyst.is_empty());
    // The server agrees: the run the page shows is the run that succeeded.
    let run: serde_json::Value = get(&format!("{}/runs/{run_id}", server.base))
        .await?
        .json()
        .await?;
    assert_eq!(run["status"], "success");
    assert_eq!(run["mode"], "headless");

    // The runs page lists it; filtering by another status hides it.
    browser.open(&format!("{}/#/runs", server.base)).await?;
    browser
        .wait_for(&format!("tr[data-run=\"{run_id}\"]"))
        .await?;
    browser
        .open(&format!("{}/#/runs?status=error", server.base))
        .await?;
    browser.wait_for_text("main", "No runs match.").await?;

    // The documents page lists the story's documents, rendered.
    browser
        .open(&format!("{}/#/docs/shop/shop__prd", server.base))
        .await?;
    browser.wait_for_text("#doc-rendered", "mock reply").await?;
    browser.wait_for_text(".versions", "agent pm").await?;

    browser
        .screenshots(&[
            ("flows", format!("{}/#/flows", server.base)),
            ("runs", format!("{}/#/runs", server.base)),
            ("run", format!("{}/#/runs/{run_id}", server.base)),
            (
                "documents",
                format!("{}/#/docs/shop/shop__prd", server.base),
            ),
            ("health", format!("{}/#/health", server.base)),
        ])
        .await?;
    browser.client.close().await?;
    Ok(())
}

#[tokio::test]
async fn an_interactive_run_is_answered_on_the_questions_page_and_finishes() -> TestResult {
    let Some(Session {
        _dir,
        server,
        browser,
    }) = planning_session(&[]).await?
    else {
        return Ok(());
    };

    let run_id = start_run(&browser, &server, "kickoff", "kick", "interactive").await?;
    browser
        .wait_for("#run-status[data-status=\"interrupted\"]")
        .await?;

    browser
        .open(&format!("{}/#/questions", server.base))
        .await?;
    let card = format!(".question-card[data-run=\"{run_id}\"]");
    browser
        .wait_for_text(&format!("{card} .prompt"), "what should I know")
        .await?;
    browser.photograph("questions").await?;
    browser
        .type_into(
            &format!("{card} textarea[name=answer]"),
            "Speed matters most",
        )
        .await?;
    browser
        .click(&format!("{card} button[type=submit]"))
        .await?;
    browser
        .wait_for(&format!("{card} .outcome-status[data-status=\"success\"]"))
        .await?;

    let run: serde_json::Value = get(&format!("{}/runs/{run_id}", server.base))
        .await?
        .json()
        .await?;
    assert_eq!(run["status"], "success");
    assert_eq!(run["interrupts"][0]["status"], "answered");
    assert_eq!(run["interrupts"][0]["answer"], "Speed matters most");
    browser.client.close().await?;
    Ok(())
}

#[tokio::test]
async fn a_document_edited_in_the_console_is_saved_through_the_api() -> TestResult {
    let Some(Session {
        _dir,
        server,
        browser,
    }) = planning_session(&[]).await?
    else {
        return Ok(());
    };

    // A document as a model might write it, hostile parts included.
    let hostile = "# Notes\n\n<img src=x onerror=\"document.title='pwned'\">\n\n\
                   [bad](javascript:document.title='pwned') and [good](https://example.com/) \
                   with **bold** and `code`\n\n| a | b |\n|---|---|\n| 1 | <script>x</script> |\n";
    let client = common::http_client()?;
    client
        .put(format!("{}/doc/ed__notes", server.base))
        .header("content-type", "text/markdown")
        .body(hostile)
        .send()
        .await?
        .error_for_status()?;

    browser
        .open(&format!("{}/#/docs/ed/ed__notes", server.base))
        .await?;
    browser.wait_for_text("#doc-rendered h1", "Notes").await?;
    let rendered = browser.wait_for("#doc-rendered").await?;
    // Markup in the text is shown as text, never parsed.
    assert_eq!(
        rendered.find_all(Locator::Css("img, script")).await?.len(),
        0
    );
    assert!(rendered.text().await?.contains("<img src=x"));
    let links = rendered.find_all(Locator::Css("a")).await?;
    assert_eq!(links.len(), 1, "only the https link is a link");
    assert_eq!(
        links[0].attr("href").await?.as_deref(),
        Some("https://example.com/")
    );
    assert_eq!(
        rendered
            .find_all(Locator::Css("strong, code, table td"))
            .await?
            .len(),
        4
    );
    assert_ne!(browser.client.title().await?, "pwned");

    browser.click("#doc-edit").await?;
    let editor = browser.wait_for("#doc-editor").await?;
    editor.clear().await?;
    editor
        .send_keys("# Edited\n\nThe console saved this.")
        .await?;
    browser.click("#doc-save").await?;
    browser.wait_for_text("#doc-rendered h1", "Edited").await?;
    browser
        .wait_for_text(".versions", "edited through the API")
        .await?;

    let saved = get(&format!("{}/doc/ed__notes", server.base))
        .await?
        .text()
        .await?;
    assert_eq!(saved, "# Edited\n\nThe console saved this.");
    browser.client.close().await?;
    Ok(())
}

#[tokio::test]
async fn a_document_a_pending_run_waits_for_is_uploaded_from_the_documents_page() -> TestResult {
    let Some((chromium, driver)) = browser_binaries()? else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("agents"))?;
    std::fs::write(
        src.join("agents/writer.md"),
        "---\nid: writer\nrequires: [spec.md]\n---\nWrite from {{ docs[\"spec.md\"] }}\n",
    )?;
    let server = serve(
        dir.path(),
        &["--src", src.to_str().unwrap_or_default()],
        &[],
    )?;
    let client = common::http_client()?;
    let started: serde_json::Value = client
        .post(format!("{}/runs", server.base))
        .json(&serde_json::json!({"flow": "default", "story_id": "p1", "input": "x", "mode": "headless"}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let run_id = started["run_id"].as_str().ok_or("a run id")?;
    let run: serde_json::Value = get(&format!("{}/runs/{run_id}/wait?timeout_s=30", server.base))
        .await?
        .json()
        .await?;
    assert_eq!(run["status"], "pending", "{run}");

    let browser = Browser::start(&chromium, &driver, &dir.path().join("profile")).await?;
    browser.open(&format!("{}/#/docs/p1", server.base)).await?;
    let form = "form.upload[data-missing=\"spec.md\"]";
    browser
        .type_into(&format!("{form} textarea"), "# Spec\n\nA list app.")
        .await?;
    browser
        .click(&format!("{form} button[type=submit]"))
        .await?;
    browser.wait_for_text("#doc-rendered h1", "Spec").await?;
    let saved = get(&format!("{}/doc/p1__spec", server.base))
        .await?
        .text()
        .await?;
    assert_eq!(saved, "# Spec\n\nA list app.");
    browser.client.close().await?;
    Ok(())
}

#[tokio::test]
async fn the_console_asks_for_the_api_key_once_and_keeps_it_for_the_tab() -> TestResult {
    let Some((chromium, driver)) = browser_binaries()? else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let src = planning();
    let runtime = std::fs::read_to_string(src.join("runtime.yaml"))?.replace(
        "server: {host: 127.0.0.1, port: 8000}",
        "server: {host: 127.0.0.1, port: 8000, api_key_env: CONSOLE_TEST_KEY}",
    );
    assert!(
        runtime.contains("CONSOLE_TEST_KEY"),
        "the example's server line changed"
    );
    let config = dir.path().join("runtime.yaml");
    std::fs::write(&config, runtime)?;
    let server = serve(
        dir.path(),
        &[
            "--src",
            src.to_str().unwrap_or_default(),
            "--config",
            config.to_str().unwrap_or_default(),
        ],
        &[("CONSOLE_TEST_KEY", "open-sesame")],
    )?;
    // The page loads without the key; the API does not answer without it.
    let client = common::http_client()?;
    let page = client.get(format!("{}/", server.base)).send().await?;
    assert_eq!(page.status(), 200);
    let flows = client.get(format!("{}/flows", server.base)).send().await?;
    assert_eq!(flows.status(), 401);

    let browser = Browser::start(&chromium, &driver, &dir.path().join("profile")).await?;
    browser.open(&format!("{}/#/flows", server.base)).await?;
    browser.wait_for("#key-dialog[open]").await?;
    browser.photograph("api-key").await?;

    // A wrong key is refused and asked for again.
    browser.type_into("#key-input", "wrong").await?;
    browser.click("#key-submit").await?;
    browser.wait_for_text("#key-reason", "refused").await?;
    browser.wait_for("#key-dialog[open]").await?;
    browser.type_into("#key-input", "open-sesame").await?;
    browser.click("#key-submit").await?;
    browser
        .wait_for("form.start-run[data-flow=\"planning\"]")
        .await?;

    // Kept for the tab: another page and a reload need no prompt.
    browser.open(&format!("{}/#/runs", server.base)).await?;
    browser.client.refresh().await?;
    browser.wait_for_text("main", "No runs match.").await?;
    let dialogs = browser
        .client
        .find_all(Locator::Css("#key-dialog[open]"))
        .await?;
    assert!(dialogs.is_empty(), "no prompt once the key is known");
    browser.client.close().await?;
    Ok(())
}
