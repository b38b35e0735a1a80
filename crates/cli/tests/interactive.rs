//! Black-box tests of runs whose agents ask a person (SPEC 8.3), on the
//! real binary and the mock LLM, which asks one free-text question per
//! agent that lists `ask_human`: the shipped `kickoff` flow of
//! examples/planning (one question), and a two-agent project where both
//! ask (a run that asks again after an answer). Off a terminal: `run`
//! stops with exit 4 and the resume command, `resume` answers (and refuses
//! what does not fit), `--headless` answers on assumptions, `cancel` ends
//! a waiting run. Through a real pseudo-terminal: questions asked inline by
//! `run` and by `resume`, Ctrl-C and Ctrl-D while one waits.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// How long anything may take before the test fails rather than hangs.
const PATIENCE: Duration = Duration::from_secs(60);

/// pm (asks) writes prd.md; po (asks) reads it and writes review.md; the
/// flow `default` runs them in that order. Stores in `data/` of the dir.
fn project() -> std::io::Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    let agents = dir.path().join("src/agents");
    std::fs::create_dir_all(&agents)?;
    std::fs::write(
        agents.join("pm.md"),
        "---\nid: pm\ncreates: [prd.md]\ntools: [ask_human]\n---\nYou are the PM.\n",
    )?;
    std::fs::write(
        agents.join("po.md"),
        "---\nid: po\nrequires: [prd.md]\ncreates: [review.md]\ntools: [ask_human]\n---\nYou are the PO.\n",
    )?;
    std::fs::write(
        dir.path().join("src/runtime.yaml"),
        "llm: {provider: mock}\nmemory: {path: ./data}\ndocs: {path: ./data/docs}\n",
    )?;
    Ok(dir)
}

/// The shipped example, whose `kickoff` flow's interviewer asks once. Its
/// stores land in `.bmad2pf/` of the directory the binary runs in.
fn planning() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/planning")
}

/// The binary, run in `cwd` with `args` then `--src src` (a relative `src`
/// is the test project's).
fn command(cwd: &Path, args: &[&str], src: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_bmad2pf"));
    command
        .current_dir(cwd)
        .args(args)
        .arg("--src")
        .arg(src)
        .env("LOG_LEVEL", "warn");
    command
}

/// Runs the binary on the test project of `cwd`, off a terminal (stdin
/// closed, stdout and stderr piped).
fn bmad2pf(cwd: &Path, args: &[&str]) -> std::io::Result<Output> {
    command(cwd, args, Path::new("src"))
        .stdin(Stdio::null())
        .output()
}

/// Runs the binary on examples/planning in `cwd`, off a terminal.
fn on_planning(cwd: &Path, args: &[&str]) -> std::io::Result<Output> {
    command(cwd, args, &planning())
        .stdin(Stdio::null())
        .output()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The run id in an outcome table's first line (`run run-…: status …`).
fn run_id(stdout: &str) -> Result<String, String> {
    stdout
        .split_whitespace()
        .find(|word| word.starts_with("run-"))
        .map(|id| id.trim_end_matches(':').to_string())
        .ok_or_else(|| format!("no run id in {stdout}"))
}

#[test]
fn off_a_terminal_a_question_stops_the_run_and_resume_answers_it() -> TestResult {
    let dir = project()?;
    let cwd = dir.path();
    let run = bmad2pf(cwd, &["run", "default", "--story", "s", "--input", "x"])?;
    let (stdout, stderr) = (text(&run.stdout), text(&run.stderr));
    assert_eq!(run.status.code(), Some(4), "{stdout}{stderr}");
    assert!(stdout.contains(": interrupted in"), "{stdout}");
    // The questions and how to answer them: on stderr, for the person.
    assert!(stderr.contains("int-"), "{stderr}");
    assert!(stderr.contains("pm (step"), "{stderr}");
    assert!(stderr.contains("mock question"), "{stderr}");
    let id = run_id(&stdout)?;
    assert!(
        stderr.contains(&format!("bmad2pf resume {id} --interrupt int-")),
        "{stderr}"
    );
    assert!(
        stderr.contains("--answer 'YOUR ANSWER' --src src"),
        "{stderr}"
    );
    assert!(!cwd.join("data/docs/s__prd.md").exists());

    // Refused answers: the run stays as it is.
    let no_such = bmad2pf(
        cwd,
        &[
            "resume",
            &id,
            "--interrupt",
            "int-0000000000000000",
            "--answer",
            "a",
        ],
    )?;
    let stderr = text(&no_such.stderr);
    assert_eq!(no_such.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("error[interrupt_not_open]"), "{stderr}");
    assert!(
        stderr.contains("mock question"),
        "the open ones are listed: {stderr}"
    );
    let wrong_kind = bmad2pf(cwd, &["resume", &id, "--approve"])?;
    let stderr = text(&wrong_kind.stderr);
    assert_eq!(wrong_kind.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("error[invalid_answer]"), "{stderr}");
    let unknown = bmad2pf(cwd, &["resume", "run-0000000000000000", "--answer", "a"])?;
    assert_eq!(unknown.status.code(), Some(2));
    assert!(text(&unknown.stderr).contains("error[not_found]"));
    for usage in [
        vec!["resume", &id],
        vec!["resume", &id, "--answer", "a", "--approve"],
        vec!["resume", &id, "--approve", "--feedback", "f"],
    ] {
        let refused = bmad2pf(cwd, &usage)?;
        assert_eq!(refused.status.code(), Some(2), "{usage:?}");
    }

    // pm's answer: pm finishes, then po asks (the same loop as `run`).
    let first = bmad2pf(cwd, &["resume", &id, "--answer", "a todo app for teams"])?;
    let (stdout, stderr) = (text(&first.stdout), text(&first.stderr));
    assert_eq!(first.status.code(), Some(4), "{stdout}{stderr}");
    assert!(
        stderr
            .lines()
            .any(|line| line.trim_start().starts_with("pm ") && line.contains("completed")),
        "pm's progress: {stderr}"
    );
    assert!(stderr.contains("po (step"), "the next question: {stderr}");
    assert!(cwd.join("data/docs/s__prd.md").is_file());

    // po's answer, to the default (oldest open) question: the run ends.
    let second = bmad2pf(cwd, &["resume", &id, "--answer", "looks fine"])?;
    let stdout = text(&second.stdout);
    assert_eq!(
        second.status.code(),
        Some(0),
        "{stdout}{}",
        text(&second.stderr)
    );
    assert!(stdout.contains(": success in"), "{stdout}");
    assert!(cwd.join("data/docs/s__review.md").is_file());

    let again = bmad2pf(cwd, &["resume", &id, "--answer", "once more"])?;
    let stderr = text(&again.stderr);
    assert_eq!(again.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("error[not_interrupted]"), "{stderr}");
    Ok(())
}

#[test]
fn run_json_off_a_terminal_is_the_interrupted_run_and_cancel_ends_it() -> TestResult {
    let dir = project()?;
    let cwd = dir.path();
    let run = bmad2pf(cwd, &["run", "default", "--story", "s", "--json"])?;
    assert_eq!(run.status.code(), Some(4), "{}", text(&run.stderr));
    let body: serde_json::Value = serde_json::from_slice(&run.stdout)?;
    assert_eq!(body["status"], "interrupted");
    assert_eq!(body["interrupts"][0]["status"], "open");
    assert_eq!(body["interrupts"][0]["kind"], "ask");
    assert_eq!(body["interrupts"][0]["agent"], "pm");
    // How to answer goes to stderr, beside the JSON.
    assert!(text(&run.stderr).contains("bmad2pf resume"));
    let id = body["run_id"].as_str().ok_or("no run_id")?;

    let cancel = bmad2pf(cwd, &["cancel", id])?;
    let stderr = text(&cancel.stderr);
    assert_eq!(cancel.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("is cancelled"), "{stderr}");
    let after = bmad2pf(cwd, &["resume", id, "--answer", "too late"])?;
    let stderr = text(&after.stderr);
    assert_eq!(after.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("is cancelled, not interrupted"), "{stderr}");
    Ok(())
}

#[test]
fn a_headless_run_answers_on_assumptions_and_lists_the_questions() -> TestResult {
    let dir = project()?;
    let run = bmad2pf(
        dir.path(),
        &["run", "default", "--story", "s", "--headless"],
    )?;
    let stdout = text(&run.stdout);
    assert_eq!(run.status.code(), Some(0), "{stdout}{}", text(&run.stderr));
    assert!(stdout.contains(": success in"), "{stdout}");
    assert!(stdout.contains("open questions"), "{stdout}");
    assert!(stdout.contains("pm (step"), "{stdout}");
    assert!(stdout.contains("po (step"), "{stdout}");
    // What the mock named as its assumption when it asked.
    assert!(
        stdout.contains("assumed: nothing beyond the input"),
        "{stdout}"
    );
    assert!(dir.path().join("data/docs/s__review.md").is_file());
    Ok(())
}

/// The binary with stdin and stderr on a real pseudo-terminal (stdout
/// piped: it carries the outcome), and what it has written there so far.
struct Terminal {
    child: Child,
    /// The terminal's side the person types into.
    keys: File,
    /// Everything shown on the terminal so far (stderr and the echo).
    screen: Arc<Mutex<String>>,
}

impl Terminal {
    /// Starts the binary in `cwd` on the sources `src` (see [`command`]).
    fn start(cwd: &Path, args: &[&str], src: &Path) -> Result<Self, Box<dyn std::error::Error>> {
        let pty = nix::pty::openpty(None, None)?;
        let child = {
            let mut command = command(cwd, args, src);
            command
                .stdin(Stdio::from(pty.slave.try_clone()?))
                .stderr(Stdio::from(pty.slave))
                .stdout(Stdio::piped());
            command.spawn()?
            // The command, and with it this side's copies of the terminal,
            // is dropped here: reads then end once the child exits.
        };
        let keys = File::from(pty.master);
        let mut reader = keys.try_clone()?;
        let screen = Arc::new(Mutex::new(String::new()));
        let shown = screen.clone();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            // Linux answers EIO once no process holds the terminal.
            while let Ok(n @ 1..) = reader.read(&mut buffer) {
                if let Ok(mut screen) = shown.lock() {
                    screen.push_str(&String::from_utf8_lossy(&buffer[..n]));
                }
            }
        });
        Ok(Self {
            child,
            keys,
            screen,
        })
    }

    fn screen(&self) -> String {
        self.screen.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Waits until `text` is on the terminal `count` times.
    fn wait_for(&self, text: &str, count: usize) -> Result<(), String> {
        let started = Instant::now();
        while self.screen().matches(text).count() < count {
            if started.elapsed() > PATIENCE {
                return Err(format!(
                    "{text:?} ×{count} never showed:\n{}",
                    self.screen()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    fn type_keys(&mut self, keys: &str) -> std::io::Result<()> {
        self.keys.write_all(keys.as_bytes())?;
        self.keys.flush()
    }

    /// The exit status and stdout, once the child has exited.
    fn finish(mut self) -> Result<(ExitStatus, String, String), Box<dyn std::error::Error>> {
        let started = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait()? {
                break status;
            }
            if started.elapsed() > PATIENCE {
                return Err(format!("still running:\n{}", self.screen()).into());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stdout = String::new();
        if let Some(mut out) = self.child.stdout.take() {
            out.read_to_string(&mut stdout)?;
        }
        Ok((status, stdout, self.screen()))
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        // A test that failed early leaves no process behind.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn on_a_terminal_each_question_is_asked_inline_until_the_run_ends() -> TestResult {
    let dir = project()?;
    let mut terminal = Terminal::start(
        dir.path(),
        &["run", "default", "--story", "s"],
        Path::new("src"),
    )?;
    terminal.wait_for("? pm asks (int-", 1)?;
    terminal.wait_for("mock question", 1)?;
    terminal.wait_for("> ", 1)?;
    // An empty line is asked again.
    terminal.type_keys("\n")?;
    terminal.wait_for("an answer is needed", 1)?;
    terminal.type_keys("a todo app for teams\n")?;
    // pm goes on, then po asks: the next pass, in the same process.
    terminal.wait_for("? po asks (int-", 1)?;
    terminal.wait_for("> ", 3)?;
    terminal.type_keys("looks fine\n")?;
    let (status, stdout, screen) = terminal.finish()?;
    assert_eq!(status.code(), Some(0), "{stdout}\n{screen}");
    assert!(stdout.contains(": success in"), "{stdout}");
    assert!(screen.contains("completed"), "progress on stderr: {screen}");
    assert!(dir.path().join("data/docs/s__review.md").is_file());
    Ok(())
}

#[test]
fn ctrl_c_while_a_question_waits_cancels_the_run() -> TestResult {
    let dir = project()?;
    let terminal = Terminal::start(
        dir.path(),
        &["run", "default", "--story", "s"],
        Path::new("src"),
    )?;
    terminal.wait_for("> ", 1)?;
    let sent = Command::new("kill")
        .args(["-INT", &terminal.child.id().to_string()])
        .status()?;
    assert!(sent.success());
    let (status, stdout, screen) = terminal.finish()?;
    assert_eq!(status.code(), Some(130), "{stdout}\n{screen}");
    assert!(screen.contains("interrupted: cancelling run"), "{screen}");
    assert!(stdout.contains(": cancelled in"), "{stdout}");
    // The story is free again at once.
    let next = bmad2pf(
        dir.path(),
        &["run", "default", "--story", "s", "--headless"],
    )?;
    assert_eq!(next.status.code(), Some(0), "{}", text(&next.stderr));
    Ok(())
}

#[test]
fn the_end_of_input_at_a_question_leaves_the_run_waiting() -> TestResult {
    let dir = project()?;
    let mut terminal = Terminal::start(
        dir.path(),
        &["run", "default", "--story", "s"],
        Path::new("src"),
    )?;
    terminal.wait_for("> ", 1)?;
    // Ctrl-D at the start of a line: the end of input.
    terminal.type_keys("\u{4}")?;
    let (status, stdout, screen) = terminal.finish()?;
    assert_eq!(status.code(), Some(4), "{stdout}\n{screen}");
    assert!(screen.contains("no answer (end of input)"), "{screen}");
    let id = run_id(&stdout)?;
    assert!(screen.contains(&format!("bmad2pf resume {id}")), "{screen}");
    // It is answered later, off the terminal.
    let resumed = bmad2pf(dir.path(), &["resume", &id, "--answer", "later"])?;
    assert_eq!(
        resumed.status.code(),
        Some(4),
        "po asks next: {}",
        text(&resumed.stdout)
    );
    Ok(())
}

#[test]
fn kickoff_on_a_terminal_asks_and_writes_the_answer_down() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut terminal = Terminal::start(
        dir.path(),
        &["run", "kickoff", "--story", "s", "--input", "a todo app"],
        &planning(),
    )?;
    terminal.wait_for("? interviewer asks (int-", 1)?;
    terminal.wait_for("> ", 1)?;
    terminal.type_keys("Families first\n")?;
    let (status, stdout, screen) = terminal.finish()?;
    assert_eq!(status.code(), Some(0), "{stdout}\n{screen}");
    assert!(stdout.contains(": success in"), "{stdout}");
    assert!(
        dir.path()
            .join(".bmad2pf/docs/s__kickoff-notes.md")
            .is_file()
    );
    // The question is answered: nothing is left to resume.
    let id = run_id(&stdout)?;
    let run = on_planning(dir.path(), &["resume", &id, "--answer", "again"])?;
    assert!(
        text(&run.stderr).contains("error[not_interrupted]"),
        "{}",
        text(&run.stderr)
    );
    Ok(())
}

#[test]
fn kickoff_off_a_terminal_exits_4_and_resume_finishes_it() -> TestResult {
    let dir = tempfile::tempdir()?;
    let cwd = dir.path();
    let run = on_planning(cwd, &["run", "kickoff", "--story", "s", "--json"])?;
    let stderr = text(&run.stderr);
    assert_eq!(run.status.code(), Some(4), "{stderr}");
    let body: serde_json::Value = serde_json::from_slice(&run.stdout)?;
    assert_eq!(body["status"], "interrupted", "{body}");
    assert_eq!(body["interrupts"][0]["agent"], "interviewer", "{body}");
    let id = body["run_id"].as_str().ok_or("no run_id")?;
    let interrupt = body["interrupts"][0]["id"]
        .as_str()
        .ok_or("no interrupt id")?;
    // The exact command, the example's path included.
    let src = planning();
    let command = format!(
        "bmad2pf resume {id} --interrupt {interrupt} --answer 'YOUR ANSWER' --src {}",
        src.display()
    );
    assert!(stderr.contains(&command), "{command}\nnot in:\n{stderr}");
    assert!(!cwd.join(".bmad2pf/docs/s__kickoff-notes.md").exists());

    let resumed = on_planning(
        cwd,
        &[
            "resume",
            id,
            "--interrupt",
            interrupt,
            "--answer",
            "Families first",
            "--json",
        ],
    )?;
    assert_eq!(resumed.status.code(), Some(0), "{}", text(&resumed.stderr));
    let body: serde_json::Value = serde_json::from_slice(&resumed.stdout)?;
    assert_eq!(body["status"], "success", "{body}");
    assert_eq!(body["interrupts"][0]["status"], "answered", "{body}");
    assert_eq!(body["interrupts"][0]["answer"], "Families first", "{body}");
    assert!(cwd.join(".bmad2pf/docs/s__kickoff-notes.md").is_file());

    let again = on_planning(cwd, &["resume", id, "--answer", "twice"])?;
    let stderr = text(&again.stderr);
    assert_eq!(again.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("error[not_interrupted]"), "{stderr}");
    Ok(())
}

#[test]
fn kickoff_headless_proceeds_on_assumptions_and_lists_the_question() -> TestResult {
    let dir = tempfile::tempdir()?;
    let run = on_planning(
        dir.path(),
        &["run", "kickoff", "--story", "s", "--headless", "--json"],
    )?;
    assert_eq!(run.status.code(), Some(0), "{}", text(&run.stderr));
    let body: serde_json::Value = serde_json::from_slice(&run.stdout)?;
    assert_eq!(body["status"], "success", "{body}");
    assert_eq!(body["mode"], "headless", "{body}");
    assert_eq!(body["open_questions"][0]["agent"], "interviewer", "{body}");
    assert_eq!(
        body["interrupts"].as_array().map(Vec::len),
        Some(0),
        "{body}"
    );
    assert!(
        dir.path()
            .join(".bmad2pf/docs/s__kickoff-notes.md")
            .is_file()
    );
    Ok(())
}

#[test]
fn resume_on_a_terminal_asks_the_next_question_inline() -> TestResult {
    let dir = project()?;
    let run = bmad2pf(dir.path(), &["run", "default", "--story", "s"])?;
    assert_eq!(run.status.code(), Some(4), "{}", text(&run.stderr));
    let id = run_id(&text(&run.stdout))?;
    // pm's answer on the command line; po then asks on the terminal.
    let mut terminal = Terminal::start(
        dir.path(),
        &["resume", &id, "--answer", "a todo app for teams"],
        Path::new("src"),
    )?;
    terminal.wait_for("? po asks (int-", 1)?;
    terminal.wait_for("> ", 1)?;
    terminal.type_keys("looks fine\n")?;
    let (status, stdout, screen) = terminal.finish()?;
    assert_eq!(status.code(), Some(0), "{stdout}\n{screen}");
    assert!(stdout.contains(": success in"), "{stdout}");
    assert!(dir.path().join("data/docs/s__review.md").is_file());
    Ok(())
}
