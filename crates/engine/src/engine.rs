//! `Engine`: the public face of the crate — run flows, execute single agents,
//! check readiness, reach the stores.
//!
//! One engine serves one bundle. It is built once ([`Engine::start`]) from a
//! bundle and a [`RuntimeConfig`]: stores are opened, LLM providers built
//! (a missing API key fails here, not halfway through a run), and every flow
//! is turned into a PocketFlow graph. After that it is shared (`Arc<Engine>`)
//! by the CLI or the HTTP server; all methods take `&self`.

use crate::core::Core;
use crate::error::EngineError;
use crate::outcome::{ExecuteOutcome, ExecuteRequest, Readiness, RunEvent, RunOutcome, RunRequest};
use crate::run::{RunState, graph::build_flow, run_flow};
use crate::stats::{Counters, EngineStats};
use crate::store::{
    CLAIM_TTL, Database, DocStore, Incidents, MemoryStore, RedisConnection, RedisDocStore,
    RedisMemoryStore, RedisRunStore, RedisStatusStore, RunRecord, RunStore, SqliteDocStore,
    SqliteMemoryStore, SqliteRunStore, SqliteStatusStore, StatusStore, StoreError,
    ids::check_story_id,
};
use crate::story_limit::StoryLimit;
use crate::tools::ToolBox;
use bmad2pf_compiler::bundle::Bundle;
use bmad2pf_compiler::config::{RuntimeConfig, StoreBackend};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio::sync::mpsc::UnboundedSender;

/// The stores an engine works with; the embedded ones unless the caller
/// supplies others (Redis, test doubles).
pub struct Stores {
    pub docs: Arc<dyn DocStore>,
    pub memory: Arc<dyn MemoryStore>,
    pub status: Arc<dyn StatusStore>,
    pub runs: Arc<dyn RunStore>,
    /// Where the backends count their failures (see [`Incidents`]).
    pub incidents: Incidents,
}

impl Stores {
    /// The stores runtime.yaml selects with `memory.backend`.
    ///
    /// `file`: the embedded store, the SQLite database in `memory.path`
    /// with documents mirrored in `docs.path` (SPEC 4.4); a database this
    /// program must not use stops here with a message naming it.
    /// `redis`: all four on one Redis (`memory.redis`), shared by every
    /// replica pointed at it (SPEC 6). The Redis connection is made lazily:
    /// a Redis that does not answer yet is logged and the process starts
    /// `degraded` (503 from the stores) until it does.
    pub async fn open(config: &RuntimeConfig) -> Result<Self, EngineError> {
        let incidents = Incidents::default();
        match config.memory.backend {
            StoreBackend::File => {
                let data_dir = std::path::PathBuf::from(&config.memory.path);
                let for_open = incidents.clone();
                let db = tokio::task::spawn_blocking(move || Database::open(&data_dir, for_open))
                    .await
                    .map_err(|e| {
                        EngineError::Config(format!("opening the database failed: {e}"))
                    })??;
                Ok(Self {
                    docs: Arc::new(SqliteDocStore::open(db.clone(), &config.docs.path).await?),
                    memory: Arc::new(SqliteMemoryStore::new(db.clone())),
                    status: Arc::new(SqliteStatusStore::new(db.clone())),
                    runs: Arc::new(SqliteRunStore::new(db)),
                    incidents,
                })
            }
            StoreBackend::Redis => {
                let settings = &config.memory.redis;
                let redis = RedisConnection::open(settings, incidents.clone())
                    .map_err(|e| EngineError::Config(e.to_string()))?;
                match redis.ping().await {
                    Ok(()) => tracing::info!(
                        server = redis.server(),
                        prefix = redis.prefix(),
                        "stores on Redis"
                    ),
                    Err(error) => tracing::warn!(
                        server = redis.server(),
                        %error,
                        detail = error.detail(),
                        "Redis does not answer yet; serving degraded until it does"
                    ),
                }
                Ok(Self {
                    docs: Arc::new(RedisDocStore::new(redis.clone())),
                    memory: Arc::new(RedisMemoryStore::new(redis.clone(), settings.ttl)),
                    status: Arc::new(RedisStatusStore::new(redis.clone())),
                    runs: Arc::new(RedisRunStore::new(redis)),
                    incidents,
                })
            }
        }
    }
}

/// Each backend's name and whether it works (the error message when not).
pub type BackendHealth = Vec<(&'static str, Result<(), String>)>;

/// How long a health check's answer is reused while no backend fails.
pub const HEALTH_TTL: Duration = Duration::from_secs(1);

/// A health report, when it was taken, and the failure count then.
struct HealthReport {
    taken: Instant,
    incidents: u64,
    backends: BackendHealth,
}

pub struct Engine {
    core: Arc<Core>,
    /// The last health report.
    health: tokio::sync::Mutex<Option<HealthReport>>,
    /// Where the stores count their failures.
    incidents: Incidents,
    /// Flow name → its PocketFlow graph.
    graphs: BTreeMap<String, pocketflow::Flow<RunState>>,
    /// Flow name → the longest story id its runs accept, for flows that have a limit.
    flow_limits: BTreeMap<String, StoryLimit>,
    /// Agent id → the longest story id its readiness check accepts, where limited.
    agent_limits: BTreeMap<String, StoryLimit>,
}

impl Engine {
    /// Opens the stores named by `config` ([`Stores::open`]) and starts an engine on them.
    /// `env` looks up environment variables (API keys).
    pub async fn start(
        bundle: Arc<Bundle>,
        config: RuntimeConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, EngineError> {
        let stores = Stores::open(&config).await?;
        Self::with_stores(bundle, config, stores, env)
    }

    /// Starts an engine on the given stores.
    pub fn with_stores(
        bundle: Arc<Bundle>,
        config: RuntimeConfig,
        stores: Stores,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, EngineError> {
        let providers =
            Core::build_providers(&bundle, &config, env).map_err(EngineError::Config)?;
        let core = Arc::new(Core {
            tools: ToolBox::new(&bundle.tools),
            prompts: Core::prepare_prompts(&bundle),
            agent_permits: Semaphore::new(config.server.max_parallel_agents.max(1)),
            counters: Counters::default(),
            docs: stores.docs,
            memory: stores.memory,
            status: stores.status,
            runs: stores.runs,
            providers,
            bundle,
            config,
        });
        let graphs = core
            .bundle
            .flows
            .values()
            .map(|flow| (flow.name.clone(), build_flow(&core, flow)))
            .collect();
        let flow_limits = core
            .bundle
            .flows
            .values()
            .filter_map(|flow| Some((flow.name.clone(), StoryLimit::of_flow(&core, flow)?)))
            .collect();
        let agent_limits = core
            .bundle
            .agents
            .values()
            .filter_map(|agent| Some((agent.id.clone(), StoryLimit::of_agent(&core, agent)?)))
            .collect();
        Ok(Self {
            core,
            graphs,
            flow_limits,
            agent_limits,
            health: tokio::sync::Mutex::new(None),
            incidents: stores.incidents,
        })
    }

    /// The stores this engine works on, to start another engine on the same
    /// data (a new bundle under `serve --watch`).
    pub fn stores(&self) -> Stores {
        Stores {
            docs: self.core.docs.clone(),
            memory: self.core.memory.clone(),
            status: self.core.status.clone(),
            runs: self.core.runs.clone(),
            incidents: self.incidents.clone(),
        }
    }

    pub fn bundle(&self) -> &Arc<Bundle> {
        &self.core.bundle
    }

    pub fn config(&self) -> &RuntimeConfig {
        &self.core.config
    }

    pub fn docs(&self) -> &Arc<dyn DocStore> {
        &self.core.docs
    }

    pub fn memory(&self) -> &Arc<dyn MemoryStore> {
        &self.core.memory
    }

    pub fn status(&self) -> &Arc<dyn StatusStore> {
        &self.core.status
    }

    /// Runs a flow for a story to its end.
    ///
    /// Progress, token and result events go to `events` as they happen; a
    /// receiver that went away is ignored (the run finishes and writes its
    /// documents). Failures of agents are part of the outcome; an `Err` is
    /// about the request: unknown flow, bad story id, a story id too long for
    /// the flow's documents ([`EngineError::StoryIdTooLong`], before anything
    /// runs), or the flow already running for this story
    /// ([`EngineError::RunInProgress`]).
    pub async fn run(
        &self,
        request: RunRequest,
        events: Option<UnboundedSender<RunEvent>>,
    ) -> Result<RunOutcome, EngineError> {
        let graph = self
            .graphs
            .get(&request.flow)
            .ok_or_else(|| EngineError::UnknownFlow(request.flow.clone()))?;
        // A story id names documents: a bad one is an id error (400) like
        // every other id, whoever sends it.
        check_story_id(&request.story_id).map_err(StoreError::from)?;
        StoryLimit::check(
            self.flow_limits.get(&request.flow),
            &format!("flow `{}`", request.flow),
            &request.story_id,
        )?;
        let run_id = format!("run-{}", hex::encode(rand::random::<[u8; 8]>()));
        let core = &self.core;
        if let Some(active) = core
            .runs
            .claim(&request.flow, &request.story_id, &run_id)
            .await?
        {
            return Err(EngineError::RunInProgress { run_id: active });
        }
        let mut claim = Claim::held(
            core.runs.clone(),
            request.flow.clone(),
            request.story_id.clone(),
            run_id.clone(),
        );
        tracing::info!(
            run_id,
            flow = claim.flow,
            story = claim.story,
            "run started"
        );
        let finished = run_flow(core, graph, request, run_id.clone(), events).await;
        let mut outcome = finished.outcome;
        if let Err(error) = claim.finish(finished.record.as_ref()).await {
            tracing::error!(run_id, %error, "the run record could not be saved; the next run will redo this one");
            outcome
                .errors
                .insert("run_record".into(), error.to_string());
        }
        tracing::info!(run_id, status = ?outcome.status, duration_ms = outcome.duration_ms, "run finished");
        Ok(outcome)
    }

    /// Executes one agent statelessly (SPEC 5, `POST /agent/{id}/execute`).
    pub async fn execute(
        &self,
        agent_id: &str,
        request: ExecuteRequest,
    ) -> Result<ExecuteOutcome, EngineError> {
        crate::execute::execute(&self.core, agent_id, request).await
    }

    /// Whether `agent_id` could run now for `story_id`. A story id too long
    /// for the agent's documents is refused ([`EngineError::StoryIdTooLong`]).
    pub async fn readiness(
        &self,
        agent_id: &str,
        story_id: &str,
    ) -> Result<Readiness, EngineError> {
        check_story_id(story_id).map_err(StoreError::from)?;
        StoryLimit::check(
            self.agent_limits.get(agent_id),
            &format!("agent `{agent_id}`"),
            story_id,
        )?;
        crate::execute::readiness(&self.core, agent_id, story_id).await
    }

    /// Each backend's health: `docs`, `memory`, `status`. A backend check
    /// does real I/O (a read and a write, a PING), so the answer is reused
    /// for [`HEALTH_TTL`] — a flood of `/health` requests costs one check a
    /// second — unless a backend has failed since it was taken: then the
    /// check runs again, so a failure shows at once.
    pub async fn health(&self) -> BackendHealth {
        let mut cached = self.health.lock().await;
        let incidents = self.incidents.count();
        if let Some(report) = cached
            .as_ref()
            .filter(|r| r.taken.elapsed() < HEALTH_TTL && r.incidents == incidents)
        {
            return report.backends.clone();
        }
        let core = &self.core;
        let backends = vec![
            ("docs", core.docs.health().await.map_err(|e| e.to_string())),
            (
                "memory",
                core.memory.health().await.map_err(|e| e.to_string()),
            ),
            (
                "status",
                core.status.health().await.map_err(|e| e.to_string()),
            ),
        ];
        // Counted after the checks, so their own failures do not make the
        // next request check again.
        *cached = Some(HealthReport {
            taken: Instant::now(),
            incidents: self.incidents.count(),
            backends: backends.clone(),
        });
        backends
    }

    pub fn stats(&self) -> EngineStats {
        self.core.counters.snapshot()
    }

    /// Waits for running agents to finish their LLM calls, then refuses
    /// new ones. Every store write is durable when its call returns, and
    /// runs write their memory before they end, so nothing is left to flush.
    pub async fn shutdown(&self) {
        let permits =
            u32::try_from(self.core.config.server.max_parallel_agents.max(1)).unwrap_or(u32::MAX);
        if let Ok(all) = self.core.agent_permits.acquire_many(permits).await {
            all.forget();
        }
        self.core.agent_permits.close();
    }
}

/// A held (flow, story) claim, renewed every third of [`CLAIM_TTL`] while
/// the run lives. Released when the run ends; if the run's future is
/// dropped midway (a cancelled caller), released from `Drop` on a spawned
/// task, so the pair is never left blocked.
struct Claim {
    runs: Arc<dyn RunStore>,
    flow: String,
    story: String,
    run_id: String,
    released: bool,
    renewal: tokio::task::JoinHandle<()>,
}

impl Claim {
    /// A claim just taken by `run_id`; starts its renewal.
    fn held(runs: Arc<dyn RunStore>, flow: String, story: String, run_id: String) -> Self {
        let renewal = tokio::spawn({
            let (runs, flow, story, run_id) =
                (runs.clone(), flow.clone(), story.clone(), run_id.clone());
            async move {
                loop {
                    tokio::time::sleep(CLAIM_TTL / 3).await;
                    match runs.renew(&flow, &story, &run_id).await {
                        Ok(true) => {}
                        Ok(false) => {
                            tracing::warn!(
                                run_id,
                                flow,
                                story,
                                "the run's claim expired before it was renewed; another run may take this story"
                            );
                            break;
                        }
                        // The store is down: keep trying while the claim lives.
                        Err(error) => {
                            tracing::warn!(run_id, %error, "renewing the run claim failed")
                        }
                    }
                }
            }
        });
        Self {
            runs,
            flow,
            story,
            run_id,
            released: false,
            renewal,
        }
    }

    /// Ends the run: saves its `record` (when it has one) and gives up
    /// the claim, in one write where the store can. Should that fail, the
    /// claim is still released, and the error says the record was not saved.
    async fn finish(&mut self, record: Option<&RunRecord>) -> Result<(), StoreError> {
        self.released = true;
        self.renewal.abort();
        let (flow, story, run_id) = (&self.flow, &self.story, &self.run_id);
        let finished = self.runs.finish(flow, story, run_id, record).await;
        if finished.is_err()
            && let Err(error) = self.runs.release(flow, story, run_id).await
        {
            tracing::error!(run_id, %error, "releasing the run claim failed");
        }
        finished
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.renewal.abort();
        if self.released {
            return;
        }
        let (runs, flow, story, run_id) = (
            self.runs.clone(),
            std::mem::take(&mut self.flow),
            std::mem::take(&mut self.story),
            std::mem::take(&mut self.run_id),
        );
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                if let Err(error) = runs.release(&flow, &story, &run_id).await {
                    tracing::error!(run_id, %error, "releasing the claim of a cancelled run failed");
                }
            });
        }
    }
}
