//! Checks of the deployment files, since no Docker engine or platform CLI
//! runs where the tests run: the Dockerfile, .dockerignore, fly.toml,
//! railway.json, deploy/cloudrun/service.yaml, the GitHub Actions workflow
//! and docs/operations.md are parsed and held against each other and
//! against the code.
//!
//! - The Dockerfile builds the `bmad2pf` package (the binary `.ci/run`
//!   tests) as a static musl binary, runs it as a numeric non-root user on a
//!   minimal base, with a HEALTHCHECK on /health, PORT, a VOLUME and a
//!   command that serves. Its ENV is fed through the real
//!   `RuntimeConfig::apply_env`, so a misspelt variable fails here, and its
//!   command is *run*: the bundle it generates, served with its environment
//!   (paths moved into a temp dir), answers the HEALTHCHECK's URL, writes
//!   under the volume and stops with exit 0 on SIGTERM.
//! - Every platform file agrees with the Dockerfile on port, health path and
//!   volume; the workflow runs `.ci/run` and builds the image.
//! - docs/operations.md lists every runtime.yaml key with its default and
//!   its variable, every error code of the engine's and the server's code
//!   enums and lists (not found by reading source text) and every metric.
//!
//! The readers here are small on purpose: a Dockerfile instruction reader,
//! a TOML reader for the key = value subset fly.toml uses, and the
//! compiler's YAML parser. What they cannot do is what the platforms'
//! own validators do; see docs/operations.md.

mod common;

use bmad2pf_compiler::config::{ProviderKind, RuntimeConfig};
use bmad2pf_engine::EngineErrorCode;
use bmad2pf_engine::failure::{AgentErrorCode, HaltCode};
use bmad2pf_engine::llm::LlmErrorCode;
use bmad2pf_engine::store::{IdError, StoreError};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::error::Error;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

type TestResult<T = ()> = Result<T, Box<dyn Error>>;

/// The package whose binary CI tests and the image ships.
const PACKAGE: &str = "bmad2pf";
/// The target the image's static binary is built for.
const MUSL_TARGET: &str = "x86_64-unknown-linux-musl";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(relative: &str) -> TestResult<String> {
    std::fs::read_to_string(repo().join(relative))
        .map_err(|e| format!("cannot read {relative}: {e}").into())
}

// ---------------------------------------------------------------------------
// Dockerfile reader

/// One instruction: its keyword (upper case) and the rest of its text.
#[derive(Debug, Clone)]
struct Instruction {
    keyword: String,
    args: String,
}

/// One `FROM … [AS name]` stage and its instructions.
#[derive(Debug)]
struct Stage {
    image: String,
    name: Option<String>,
    instructions: Vec<Instruction>,
}

impl Stage {
    fn all<'a>(&'a self, keyword: &str) -> impl Iterator<Item = &'a str> + 'a {
        let keyword = keyword.to_string();
        self.instructions
            .iter()
            .filter(move |i| i.keyword == keyword)
            .map(|i| i.args.as_str())
    }

    fn last(&self, keyword: &str) -> Option<&str> {
        self.all(keyword).last()
    }

    /// `ARG NAME=default` values of this stage.
    fn arg_defaults(&self) -> HashMap<String, String> {
        self.all("ARG")
            .filter_map(|a| a.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), unquote(v.trim())))
            .collect()
    }

    /// `ENV` pairs in order (the `KEY=value …` form).
    fn env(&self) -> Vec<(String, String)> {
        self.all("ENV")
            .flat_map(str::split_whitespace)
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, v)| (k.to_string(), unquote(v)))
            .collect()
    }

    /// `COPY` instructions as (`--from` stage, sources, destination).
    fn copies(&self) -> Vec<(Option<String>, Vec<String>, String)> {
        self.all("COPY")
            .filter_map(|args| {
                let mut from = None;
                let mut paths = Vec::new();
                for word in args.split_whitespace() {
                    match word.strip_prefix("--from=") {
                        Some(stage) => from = Some(stage.to_string()),
                        None if word.starts_with("--") => {}
                        None => paths.push(word.to_string()),
                    }
                }
                let destination = paths.pop()?;
                Some((from, paths, destination))
            })
            .collect()
    }
}

/// Splits a Dockerfile into stages: comment lines dropped (also inside a
/// continued instruction, as Docker does), `\` continuations joined.
fn parse_dockerfile(text: &str) -> TestResult<Vec<Stage>> {
    let mut instructions = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && pending.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                pending.push_str(head);
                pending.push(' ');
            }
            None => {
                pending.push_str(trimmed);
                let (keyword, args) = pending.split_once(' ').unwrap_or((&pending, ""));
                instructions.push(Instruction {
                    keyword: keyword.to_ascii_uppercase(),
                    args: args.trim().to_string(),
                });
                pending.clear();
            }
        }
    }
    let mut stages: Vec<Stage> = Vec::new();
    for instruction in instructions {
        if instruction.keyword == "FROM" {
            let words: Vec<&str> = instruction.args.split_whitespace().collect();
            let name = match words.as_slice() {
                [_, as_word, name] if as_word.eq_ignore_ascii_case("as") => Some(name.to_string()),
                [_] => None,
                _ => return Err(format!("unexpected FROM {}", instruction.args).into()),
            };
            stages.push(Stage {
                image: words.first().map(|w| w.to_string()).unwrap_or_default(),
                name,
                instructions: Vec::new(),
            });
        } else {
            stages
                .last_mut()
                .ok_or("an instruction before the first FROM")?
                .instructions
                .push(instruction);
        }
    }
    Ok(stages)
}

fn unquote(value: &str) -> String {
    value.trim_matches('"').to_string()
}

/// Replaces `${NAME}` with the stage's ARG defaults.
fn expand(text: &str, args: &HashMap<String, String>) -> String {
    args.iter().fold(text.to_string(), |acc, (name, value)| {
        acc.replace(&format!("${{{name}}}"), value)
    })
}

/// An exec-form (`["a", "b"]`) argument list.
fn exec_form(args: &str) -> TestResult<Vec<String>> {
    serde_json::from_str(args).map_err(|e| format!("not exec form ({e}): {args}").into())
}

/// What the other deployment files must agree with.
struct Image {
    stages: Vec<Stage>,
    port: u16,
    volume: String,
    env: Vec<(String, String)>,
    /// ENTRYPOINT followed by CMD.
    command: Vec<String>,
    healthcheck: Vec<String>,
    workdir: String,
}

impl Image {
    fn load() -> TestResult<Self> {
        let stages = parse_dockerfile(&read("Dockerfile")?)?;
        let runtime = stages.last().ok_or("no stages")?;
        let env = runtime.env();
        let port = env
            .iter()
            .find(|(k, _)| k == "PORT")
            .ok_or("the runtime stage sets no PORT")?
            .1
            .parse()?;
        let volume = exec_form(runtime.last("VOLUME").ok_or("no VOLUME")?)?
            .into_iter()
            .next()
            .ok_or("empty VOLUME")?;
        let mut command = exec_form(runtime.last("ENTRYPOINT").ok_or("no ENTRYPOINT")?)?;
        command.extend(exec_form(runtime.last("CMD").unwrap_or("[]"))?);
        let healthcheck = runtime.last("HEALTHCHECK").ok_or("no HEALTHCHECK")?;
        let (_, check) = healthcheck
            .split_once("CMD ")
            .ok_or("HEALTHCHECK without CMD")?;
        let healthcheck = exec_form(check.trim())?;
        let workdir = runtime.last("WORKDIR").ok_or("no WORKDIR")?.to_string();
        Ok(Self {
            port,
            volume,
            env,
            command,
            healthcheck,
            workdir,
            stages,
        })
    }

    fn build_stage(&self) -> TestResult<&Stage> {
        self.stages
            .iter()
            .find(|s| s.image.starts_with("rust:"))
            .ok_or_else(|| "no stage builds on the official rust image".into())
    }

    fn runtime(&self) -> &Stage {
        &self.stages[self.stages.len() - 1]
    }

    /// The build stage's `bmad2pf generate` arguments (`--src`, `--out`…).
    fn generate_args(&self) -> TestResult<HashMap<String, String>> {
        let build = self.build_stage()?;
        let run = build
            .all("RUN")
            .find_map(|r| r.split_once(" generate ").map(|(_, rest)| rest))
            .ok_or("the build stage generates no bundle")?;
        let words: Vec<&str> = run.split_whitespace().collect();
        Ok(words
            .windows(2)
            .filter(|pair| pair[0].starts_with("--") && !pair[1].starts_with("--"))
            .map(|pair| (pair[0].to_string(), pair[1].to_string()))
            .collect())
    }

    /// The image's configuration: defaults with the image's ENV applied.
    fn config(&self) -> TestResult<RuntimeConfig> {
        let mut config = RuntimeConfig::default();
        config.apply_env(self.env.clone())?;
        Ok(config)
    }
}

/// `[major, minor]` of a `rust:1.95-bookworm` style tag or a `1.88` version.
fn rust_version(text: &str) -> TestResult<(u32, u32)> {
    let version = text.trim_start_matches("rust:");
    let version = version.split('-').next().unwrap_or_default();
    let mut parts = version.split('.');
    let major = parts.next().ok_or("no major version")?.parse()?;
    let minor = parts.next().ok_or("no minor version")?.parse()?;
    Ok((major, minor))
}

/// The value of `key = "value"` in `[section]` of a Cargo manifest.
fn manifest_value(text: &str, section: &str, key: &str) -> Option<String> {
    let toml = read_toml(text).ok()?;
    toml.get(&format!("{section}.{key}")).cloned()
}

#[test]
fn dockerfile_builds_the_tested_package_as_a_static_binary() -> TestResult {
    let image = Image::load()?;
    let build = image.build_stage()?;
    let manifest = read("crates/cli/Cargo.toml")?;
    assert_eq!(
        manifest_value(&manifest, "package", "name").as_deref(),
        Some(PACKAGE),
        "crates/cli is the `{PACKAGE}` package, a member of the workspace .ci/run tests"
    );
    let workspace = read("Cargo.toml")?;
    assert!(workspace.contains(r#"members = ["crates/*"]"#));
    let wanted = rust_version(
        &manifest_value(&workspace, "workspace.package", "rust-version")
            .ok_or("no rust-version")?,
    )?;
    assert!(
        rust_version(&build.image)? >= wanted,
        "{} is older than the workspace's rust-version",
        build.image
    );

    let runs: Vec<&str> = build.all("RUN").collect();
    let cargo = runs
        .iter()
        .find(|r| r.contains("cargo build"))
        .ok_or("the build stage runs no cargo build")?;
    let words: Vec<&str> = cargo.split_whitespace().collect();
    for flag in [
        &["--release"][..],
        &["--locked"],
        &["-p", PACKAGE],
        &["--target", MUSL_TARGET],
    ] {
        assert!(
            words.windows(flag.len()).any(|w| w == flag),
            "cargo build lacks {flag:?}: {cargo}"
        );
    }
    assert!(
        runs.iter()
            .any(|r| r.contains(&format!("rustup target add {MUSL_TARGET}")))
    );
    assert!(runs.iter().any(|r| r.contains("musl-tools")));
    let copied: BTreeSet<String> = build.copies().into_iter().flat_map(|c| c.1).collect();
    for input in ["Cargo.lock", "crates", "examples"] {
        assert!(
            copied.contains(input),
            "the build stage does not copy {input}"
        );
    }
    Ok(())
}

#[test]
fn runtime_stage_is_minimal_non_root_and_serves() -> TestResult {
    let image = Image::load()?;
    let runtime = image.runtime();
    assert!(
        runtime.image.starts_with("gcr.io/distroless/static") || runtime.image == "scratch",
        "runtime base {} is not a minimal static base",
        runtime.image
    );
    let user = expand(
        runtime.last("USER").ok_or("no USER")?,
        &runtime.arg_defaults(),
    );
    let uid: u32 = user.split(':').next().unwrap_or_default().parse()?;
    assert_ne!(uid, 0, "USER {user} is root");

    let exposed: Vec<u16> = runtime
        .all("EXPOSE")
        .flat_map(str::split_whitespace)
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    assert_eq!(exposed, vec![image.port], "EXPOSE and PORT disagree");
    assert!(image.volume.starts_with('/'));
    assert_eq!(
        image.workdir, image.volume,
        "relative paths land in the volume"
    );

    // Every file the runtime stage runs was copied into it, from a stage that exists.
    let stage_names: BTreeSet<&str> = image
        .stages
        .iter()
        .filter_map(|s| s.name.as_deref())
        .collect();
    let copies = runtime.copies();
    for (from, _, _) in &copies {
        let from = from.as_deref().ok_or("a runtime COPY from the context")?;
        assert!(
            stage_names.contains(from),
            "COPY --from={from}: no such stage"
        );
    }
    let copied_to = |path: &str| copies.iter().any(|(_, _, to)| to == path);
    assert!(
        copied_to(&image.command[0]),
        "{} is not copied in",
        image.command[0]
    );
    assert!(
        copied_to(&image.healthcheck[0]),
        "{} is not copied in",
        image.healthcheck[0]
    );

    // The command serves the bundle the build stage generated.
    assert_eq!(image.command.get(1).map(String::as_str), Some("serve"));
    let bundle = flag_value(&image.command, "--bundle").ok_or("serve without --bundle")?;
    let generated = image.generate_args()?;
    let out = generated.get("--out").ok_or("generate without --out")?;
    let build = image.build_stage()?.name.as_deref();
    assert!(
        copies
            .iter()
            .any(|(from, sources, to)| from.as_deref() == build
                && sources.contains(out)
                && to == bundle),
        "the bundle generated at {out} is not what serve reads ({bundle})"
    );

    // The HEALTHCHECK asks /health on the port PORT names.
    let check = image.healthcheck.join(" ");
    assert!(check.contains("wget"), "{check}");
    assert!(
        check.contains("/health\"") || check.ends_with("/health"),
        "{check}"
    );
    assert!(
        check.contains("${PORT:-") || check.contains(&format!(":{}/health", image.port)),
        "the health check does not follow PORT: {check}"
    );
    assert_eq!(runtime.last("STOPSIGNAL"), Some("SIGTERM"));
    Ok(())
}

#[test]
fn image_environment_is_a_valid_configuration_with_stores_on_the_volume() -> TestResult {
    let image = Image::load()?;
    let config = image.config()?;
    assert_eq!(config.server.port, image.port);
    assert_eq!(
        config.server.host, "0.0.0.0",
        "the server must listen beyond loopback"
    );
    for (key, path) in [
        ("docs.path", &config.docs.path),
        ("memory.path", &config.memory.path),
        ("replay.path", &config.replay.path),
    ] {
        assert!(
            Path::new(path).starts_with(&image.volume),
            "{key} = {path} is outside the volume {}",
            image.volume
        );
    }
    Ok(())
}

fn flag_value<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    let at = args.iter().position(|a| a == flag)?;
    args.get(at + 1).map(String::as_str)
}

/// The server started from the image's command, killed when dropped.
struct Served {
    child: Child,
    port: u16,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The port in a "serving on http://0.0.0.0:PORT" log line (text or JSON).
fn served_port(line: &str) -> Option<u16> {
    let (_, rest) = line.split_once("serving on http://")?;
    let address: String = rest
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '"' && *c != ')')
        .collect();
    address.rsplit(':').next()?.parse().ok()
}

#[tokio::test]
async fn the_image_command_serves_its_bundle_from_the_volume_and_stops_on_sigterm() -> TestResult {
    let image = Image::load()?;
    let temp = tempfile::tempdir()?;
    let volume = temp.path().join("data");
    std::fs::create_dir_all(&volume)?;

    // The bundle, generated the way the build stage does it.
    let generate = image.generate_args()?;
    let src = generate.get("--src").ok_or("generate without --src")?;
    let bundle_in_image = flag_value(&image.command, "--bundle").ok_or("no --bundle")?;
    let bundle = temp.path().join("bundle");
    let generated = Command::new(env!("CARGO_BIN_EXE_bmad2pf"))
        .args(["generate", "--quiet", "--src"])
        .arg(repo().join(src))
        .arg("--out")
        .arg(&bundle)
        .output()?;
    assert!(generated.status.success(), "{generated:?}");

    // Container paths → temp paths; PORT 0 so the OS picks a free port.
    let host_path = |value: &str| -> String {
        let moved = [(bundle_in_image, &bundle), (image.volume.as_str(), &volume)]
            .into_iter()
            .find_map(|(inside, outside)| {
                let rest = value.strip_prefix(inside)?;
                Some(format!("{}{rest}", outside.display()))
            });
        moved.unwrap_or_else(|| value.to_string())
    };
    let env: Vec<(String, String)> = image
        .env
        .iter()
        .map(|(k, v)| match k.as_str() {
            "PORT" => (k.clone(), "0".to_string()),
            _ => (k.clone(), host_path(v)),
        })
        .collect();
    let args: Vec<String> = image.command[1..].iter().map(|a| host_path(a)).collect();
    let mut child = Command::new(env!("CARGO_BIN_EXE_bmad2pf"))
        .args(&args)
        .env_clear()
        .envs(env)
        .current_dir(host_path(&image.workdir))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(port) = served_port(&line) {
                let _ = tx.send(port);
            }
        }
    });
    let mut served = Served {
        port: rx.recv_timeout(Duration::from_secs(30))?,
        child,
    };

    // The HEALTHCHECK's URL, on the port the server took.
    let url = image
        .healthcheck
        .iter()
        .find_map(|a| {
            a.split_once("http://127.0.0.1:")
                .map(|(_, rest)| rest.to_string())
        })
        .ok_or("no URL in the HEALTHCHECK")?;
    let path = &url[url.find('/').ok_or("no path in the HEALTHCHECK URL")?..];
    let path = path.trim_end_matches('"');
    let base = format!("http://127.0.0.1:{}", served.port);
    let health = common::http_client()?
        .get(format!("{base}{path}"))
        .send()
        .await?;
    assert_eq!(health.status(), 200);
    let health: serde_json::Value = health.json().await?;
    assert_eq!(health["status"], "healthy", "{health}");

    // A document lands in the volume, where backups and restarts find it:
    // in the database and in its own Markdown file when the write is
    // answered.
    let put = common::http_client()?
        .put(format!("{base}/doc/smoke__note"))
        .header("content-type", "text/markdown")
        .body("# written in the container layout\n")
        .send()
        .await?;
    assert_eq!(put.status(), 200);
    let docs_path = host_path(&image.config()?.docs.path);

    let pid = served.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()?
            .success()
    );
    let started = Instant::now();
    loop {
        if let Some(status) = served.child.try_wait()? {
            assert!(status.success(), "exit after SIGTERM: {status:?}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let docs = Path::new(&docs_path);
    assert_eq!(
        std::fs::read_to_string(docs.join("smoke__note.md"))?,
        "# written in the container layout\n"
    );
    let database = host_path(&image.config()?.memory.path);
    assert!(Path::new(&database).join("bmad2pf.db").is_file());
    Ok(())
}

#[test]
fn dockerignore_keeps_build_inputs_and_drops_local_state() -> TestResult {
    let image = Image::load()?;
    let patterns: Vec<String> = read(".dockerignore")?
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.trim_start_matches('/').trim_end_matches('/').to_string())
        .collect();
    for excluded in ["target", ".git", ".bmad2pf"] {
        assert!(
            patterns.iter().any(|p| p == excluded),
            "{excluded} is sent to the Docker daemon"
        );
    }
    for (_, sources, _) in image.build_stage()?.copies() {
        for source in sources {
            let source = source.trim_end_matches('/');
            assert!(
                !patterns.iter().any(|p| source == p
                    || source.starts_with(&format!("{p}/"))
                    || p.starts_with('!')),
                "{source} is copied by the Dockerfile but ignored"
            );
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// TOML subset reader (fly.toml, Cargo manifests)

/// `key = value` lines under `[table]` / `[[array]]` headers, as a map from
/// `table.key` (array tables numbered `name[0]`) to the value's text,
/// strings unquoted. Inline tables and multi-line values are not read.
fn read_toml(text: &str) -> TestResult<BTreeMap<String, String>> {
    let mut values = BTreeMap::new();
    let mut table = String::new();
    let mut array_counts: HashMap<String, usize> = HashMap::new();
    for (number, line) in text.lines().enumerate() {
        let line = strip_toml_comment(line).trim().to_string();
        if line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix("[[").and_then(|l| l.strip_suffix("]]")) {
            let count = array_counts.entry(name.to_string()).or_default();
            table = format!("{name}[{count}]");
            *count += 1;
        } else if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            table = name.to_string();
        } else {
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| format!("line {}: not `key = value`: {line}", number + 1))?;
            let key = key.trim().trim_matches('"');
            let path = if table.is_empty() {
                key.to_string()
            } else {
                format!("{table}.{key}")
            };
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value);
            values.insert(path, value.to_string());
        }
    }
    Ok(values)
}

/// The line without a `#` comment outside double quotes.
fn strip_toml_comment(line: &str) -> &str {
    let mut quoted = false;
    for (at, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '#' if !quoted => return &line[..at],
            _ => {}
        }
    }
    line
}

#[test]
fn fly_config_matches_the_image() -> TestResult {
    let image = Image::load()?;
    let fly = read_toml(&read("fly.toml")?)?;
    let get = |key: &str| {
        fly.get(key)
            .map(String::as_str)
            .ok_or_else(|| format!("fly.toml has no {key}"))
    };
    assert!(!get("app")?.is_empty());
    assert_eq!(get("build.dockerfile")?, "Dockerfile");
    assert_eq!(
        get("http_service.internal_port")?.parse::<u16>()?,
        image.port
    );
    assert_eq!(get("env.PORT")?.parse::<u16>()?, image.port);
    assert_eq!(get("http_service.checks[0].path")?, "/health");
    assert_eq!(get("mounts.destination")?, image.volume);
    assert!(["SIGTERM", "SIGINT"].contains(&get("kill_signal")?));
    // A build argument must be one the Dockerfile declares.
    for key in fly.keys().filter_map(|k| k.strip_prefix("build.args.")) {
        assert!(
            image.runtime().arg_defaults().contains_key(key),
            "fly.toml passes build argument {key}, which the Dockerfile does not declare"
        );
    }
    Ok(())
}

#[test]
fn railway_config_matches_the_image() -> TestResult {
    let railway: serde_json::Value = serde_json::from_str(&read("railway.json")?)?;
    assert_eq!(
        railway["$schema"],
        "https://railway.com/railway.schema.json"
    );
    assert_eq!(railway["build"]["builder"], "DOCKERFILE");
    let dockerfile = railway["build"]["dockerfilePath"]
        .as_str()
        .ok_or("no dockerfilePath")?;
    assert!(repo().join(dockerfile).is_file());
    let deploy = &railway["deploy"];
    assert_eq!(deploy["healthcheckPath"], "/health");
    assert!(
        ["ON_FAILURE", "ALWAYS", "NEVER"]
            .contains(&deploy["restartPolicyType"].as_str().unwrap_or("")),
        "{deploy}"
    );
    // Railway's parser wants numbers here, not strings.
    for key in [
        "healthcheckTimeout",
        "restartPolicyMaxRetries",
        "drainingSeconds",
    ] {
        assert!(
            deploy[key].is_u64(),
            "deploy.{key} must be a number: {deploy}"
        );
    }
    Ok(())
}

/// Parses YAML with the compiler's parser, as JSON for pointer lookups.
fn read_yaml(relative: &str) -> TestResult<serde_json::Value> {
    bmad2pf_compiler::yaml_to_json(&read(relative)?, relative)
        .map_err(|problems| format!("{relative} is not valid YAML: {problems:?}").into())
}

#[test]
fn cloud_run_service_matches_the_image() -> TestResult {
    let image = Image::load()?;
    let service = read_yaml("deploy/cloudrun/service.yaml")?;
    assert_eq!(service["apiVersion"], "serving.knative.dev/v1");
    assert_eq!(service["kind"], "Service");
    let container = service
        .pointer("/spec/template/spec/containers/0")
        .ok_or("no container")?;
    let port = container
        .pointer("/ports/0/containerPort")
        .and_then(serde_json::Value::as_u64)
        .ok_or("no containerPort")?;
    assert_eq!(port, u64::from(image.port));
    for probe in ["startupProbe", "livenessProbe"] {
        assert_eq!(container[probe]["httpGet"]["path"], "/health", "{probe}");
        assert_eq!(container[probe]["httpGet"]["port"], port, "{probe}");
    }
    let limits = &container["resources"]["limits"];
    assert!(
        limits["cpu"].is_string() && limits["memory"].is_string(),
        "{limits}"
    );

    let env = container["env"].as_array().ok_or("no env")?;
    let named = |name: &str| env.iter().find(|e| e["name"] == name);
    assert!(named("PORT").is_none(), "PORT is reserved on Cloud Run");
    assert!(
        named("REDIS_URL").is_some_and(|e| e["valueFrom"]["secretKeyRef"]["name"].is_string()),
        "REDIS_URL should come from Secret Manager"
    );
    // The literal values are what the binary will read: they must apply.
    let literal: Vec<(String, String)> = env
        .iter()
        .filter_map(|e| {
            Some((
                e["name"].as_str()?.to_string(),
                e["value"].as_str()?.to_string(),
            ))
        })
        .collect();
    let mut config = image.config()?;
    config.apply_env(literal)?;
    assert_eq!(
        config.memory.backend,
        bmad2pf_compiler::config::StoreBackend::Redis,
        "instances come and go on Cloud Run: the stores must be in Redis"
    );
    assert!(
        config.runs.shutdown_grace_s < 10,
        "Cloud Run kills an instance 10 s after SIGTERM: runs must be marked before"
    );
    Ok(())
}

#[test]
fn ci_workflow_runs_ci_run_and_builds_the_image() -> TestResult {
    let image = Image::load()?;
    let workflow = read_yaml(".github/workflows/ci.yml")?;
    let jobs = workflow["jobs"].as_object().ok_or("no jobs")?;
    let runs_in = |job: &serde_json::Value, needle: &str| {
        job["steps"].as_array().is_some_and(|steps| {
            steps
                .iter()
                .filter_map(|s| s["run"].as_str())
                .any(|run| run.lines().any(|l| l.trim().starts_with(needle)))
        })
    };
    let checks = jobs
        .values()
        .find(|job| runs_in(job, "bash .ci/run"))
        .ok_or("no job runs .ci/run")?;
    assert_eq!(
        checks["container"]["image"].as_str(),
        Some(image.build_stage()?.image.as_str()),
        "CI and the image should build with the same toolchain"
    );
    assert!(
        checks["steps"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["run"]
                .as_str()
                .is_some_and(|r| r.contains("rustfmt") && r.contains("clippy")))),
        ".ci/run needs rustfmt and clippy"
    );
    assert!(
        jobs.values().any(|job| runs_in(job, "docker build")),
        "no job builds the image"
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// docs/operations.md against the code

/// Every leaf of runtime.yaml as (dotted path, default).
fn runtime_keys() -> TestResult<Vec<(String, serde_json::Value)>> {
    fn walk(prefix: &str, value: &serde_json::Value, out: &mut Vec<(String, serde_json::Value)>) {
        match value.as_object() {
            Some(map) => {
                for (key, child) in map {
                    let path = if prefix.is_empty() {
                        key.clone()
                    } else {
                        format!("{prefix}.{key}")
                    };
                    walk(&path, child, out);
                }
            }
            None => out.push((prefix.to_string(), value.clone())),
        }
    }
    let mut keys = Vec::new();
    walk(
        "",
        &serde_json::to_value(RuntimeConfig::default())?,
        &mut keys,
    );
    Ok(keys)
}

/// Source text without its `#[cfg(test)]` module.
fn source(relative: &str) -> TestResult<String> {
    let text = read(relative)?;
    Ok(text
        .split("#[cfg(test)]")
        .next()
        .unwrap_or_default()
        .to_string())
}

/// One store error of each kind; the match makes a new kind fail to compile here.
fn store_error_examples() -> Vec<StoreError> {
    let text = String::new;
    let examples = vec![
        StoreError::InvalidId(IdError {
            kind: "document id",
            value: text(),
            reason: text(),
        }),
        StoreError::NotFound { what: text() },
        StoreError::AlreadyExists { what: text() },
        StoreError::Conflict { message: text() },
        StoreError::Io {
            message: text(),
            detail: text(),
        },
        StoreError::InvalidValue {
            message: text(),
            max_depth: 0,
        },
        StoreError::Corrupt {
            message: text(),
            detail: text(),
        },
        StoreError::Unavailable {
            message: text(),
            detail: text(),
        },
    ];
    for example in &examples {
        match example {
            StoreError::InvalidId(_)
            | StoreError::NotFound { .. }
            | StoreError::AlreadyExists { .. }
            | StoreError::Conflict { .. }
            | StoreError::Io { .. }
            | StoreError::InvalidValue { .. }
            | StoreError::Corrupt { .. }
            | StoreError::Unavailable { .. } => {}
        }
    }
    examples
}

/// Every `code` the API and run results can carry: the engine's code enums,
/// the store's errors and the HTTP layer's own codes.
fn error_codes() -> BTreeSet<&'static str> {
    let mut codes = BTreeSet::new();
    codes.extend(EngineErrorCode::ALL.iter().map(|c| c.as_str()));
    codes.extend(AgentErrorCode::ALL.iter().map(|c| c.as_str()));
    codes.extend(HaltCode::ALL.iter().map(|c| c.as_str()));
    codes.extend(LlmErrorCode::ALL.iter().map(|c| c.as_str()));
    codes.extend(store_error_examples().iter().map(StoreError::code));
    codes.extend(bmad2pf_server::error::HTTP_CODES.iter().copied());
    codes
}

#[test]
fn operations_doc_lists_every_key_variable_code_and_metric() -> TestResult {
    let doc = read("docs/operations.md")?;
    for (path, default) in runtime_keys()? {
        let row = doc
            .lines()
            .find(|l| l.starts_with(&format!("| `{path}` |")))
            .ok_or_else(|| format!("docs/operations.md has no table row for `{path}`"))?;
        let shown = match &default {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        assert_eq!(
            cells.get(2).copied(),
            Some(format!("`{shown}`").as_str()),
            "default of `{path}` in docs/operations.md"
        );
        let variable = format!("BMAD2PF_{}", path.replace('.', "_").to_ascii_uppercase());
        assert!(
            row.contains(&format!("`{variable}`")),
            "row of `{path}` lacks {variable}"
        );
        // The variable name really reaches the key.
        let text = if default.is_null() {
            String::new()
        } else {
            shown
        };
        RuntimeConfig::default().apply_env([(variable.clone(), text)])?;
    }
    let mut variables = vec!["PORT", "LOG_LEVEL", "MEMORY_BACKEND", "REDIS_URL"];
    for provider in [
        ProviderKind::Openai,
        ProviderKind::Anthropic,
        ProviderKind::Gemini,
    ] {
        variables.extend(provider.default_api_key_env());
    }
    for variable in variables {
        assert!(
            doc.contains(&format!("`{variable}`")),
            "{variable} is not documented"
        );
    }
    let codes = error_codes();
    for expected in [
        "invalid_id",
        "invalid_utf8",
        "run_in_progress",
        "storage_unavailable",
        "llm_rate_limited",
        "loop_limit",
        "unauthorized",
    ] {
        assert!(
            codes.contains(expected),
            "the code enums lack {expected}: {codes:?}"
        );
    }
    for code in &codes {
        assert!(
            doc.contains(&format!("`{code}`")),
            "error code `{code}` is not documented"
        );
    }
    let metrics = source("crates/server/src/metrics.rs")?;
    // Every complete string literal naming a metric family.
    let names: BTreeSet<&str> = metrics
        .split('"')
        .filter(|s| {
            s.starts_with("bmad2pf_")
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        })
        .collect();
    assert!(names.len() >= 5, "{names:?}");
    for name in names {
        assert!(
            doc.contains(&format!("`{name}`")),
            "metric {name} is not documented"
        );
    }
    Ok(())
}
