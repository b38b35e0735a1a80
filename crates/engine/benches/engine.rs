//! What the engine itself costs around the LLM, measured on the mock provider.
//!
//! - `run_chain`: a derived flow of `AGENTS` agents in a chain on a
//!   zero-latency mock, forced to re-run every time; divan's item counter
//!   gives the per-agent cost, including rendering, the document write
//!   (a committed version and its Markdown file) and the status update.
//!   The embedded store lives in the directory `BMAD2PF_BENCH_DIR` names,
//!   else a temp dir: point it at a tmpfs (`/dev/shm`) to see the engine
//!   without the disk's fsync cost.
//!   The run is spawned on the runtime, as `serve` runs it (a handler is a
//!   task on a worker thread), rather than driven from the bench's own
//!   thread, which would add two thread hand-offs to every store call.
//! - `parallel_step`: one step of 8 parallel agents on a 200 ms mock; the
//!   time is the step's wall time (ideal: 200 ms).
//! - `execute`: one stateless execute on a zero-latency mock.
//!
//! Run with `cargo bench -p bmad2pf-engine`.

use bmad2pf_compiler::compile;
use bmad2pf_compiler::config::RuntimeConfig;
use bmad2pf_engine::Engine;
use bmad2pf_engine::outcome::{ExecuteRequest, RunRequest};
use bmad2pf_engine::runs::RunMode;
use divan::Bencher;
use divan::counter::ItemsCount;
use std::path::Path;
use std::sync::Arc;

fn main() {
    divan::main();
}

const AGENTS: usize = 50;

/// Writes a project whose agents are chained by documents (or all parallel).
fn write_project(dir: &Path, agents: usize, parallel: bool) {
    for i in 0..agents {
        let mut front = format!("id: a{i}\ncreates: [doc{i}.md]\n");
        if parallel {
            front.push_str("parallel: true\n");
        } else if i > 0 {
            front.push_str(&format!("requires: [doc{}.md]\n", i - 1));
        }
        let body =
            "You are a careful writer. Story {{ story_id }}. Input: {{ input }}\n".repeat(20);
        let path = dir.join("agents").join(format!("a{i}.md"));
        std::fs::create_dir_all(dir.join("agents")).expect("mkdir");
        std::fs::write(path, format!("---\n{front}---\n{body}")).expect("write agent");
    }
}

struct Setup {
    runtime: tokio::runtime::Runtime,
    engine: Engine,
    _dir: tempfile::TempDir,
}

fn setup(agents: usize, parallel: bool, latency_ms: u64) -> Setup {
    let base = std::env::var("BMAD2PF_BENCH_DIR")
        .unwrap_or_else(|_| std::env::temp_dir().display().to_string());
    let dir = tempfile::tempdir_in(base).expect("temp dir");
    let src = dir.path().join("src");
    write_project(&src, agents, parallel);
    let bundle = compile(&src).bundle.expect("bench project compiles");
    let mut config = RuntimeConfig::default();
    config.docs.path = dir.path().join("docs").display().to_string();
    config.memory.path = dir.path().join("memory").display().to_string();
    config.llm.mock.latency_ms = latency_ms;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let engine = runtime
        .block_on(Engine::start(Arc::new(bundle), config, &|_| None))
        .expect("engine");
    Setup {
        runtime,
        engine,
        _dir: dir,
    }
}

fn request() -> RunRequest {
    RunRequest {
        flow: "default".into(),
        story_id: "bench".into(),
        input: "Plan a small service".into(),
        force: true,
        budget: None,
    }
}

#[divan::bench(sample_count = 20)]
fn run_chain(bencher: Bencher) {
    let s = setup(AGENTS, false, 0);
    let engine = Arc::new(s.engine);
    bencher.counter(ItemsCount::new(AGENTS)).bench_local(|| {
        let engine = Arc::clone(&engine);
        s.runtime
            .block_on(async move {
                tokio::spawn(async move { engine.run(request(), RunMode::Headless, None).await })
                    .await
            })
            .expect("task")
            .expect("run")
    });
}

#[divan::bench(sample_count = 5, sample_size = 1)]
fn parallel_step(bencher: Bencher) {
    let s = setup(8, true, 200);
    bencher.bench_local(|| {
        s.runtime
            .block_on(s.engine.run(request(), RunMode::Headless, None))
            .expect("run")
    });
}

#[divan::bench(sample_count = 50)]
fn execute(bencher: Bencher) {
    let s = setup(1, false, 0);
    let request = ExecuteRequest {
        instruction: "Summarise the plan".into(),
        ..ExecuteRequest::default()
    };
    bencher.bench_local(|| {
        s.runtime
            .block_on(s.engine.execute("a0", request.clone()))
            .expect("execute")
    });
}
