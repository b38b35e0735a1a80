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
use crate::outcome::{ExecuteOutcome, ExecuteRequest, Readiness, RunEvent, RunRequest};
use crate::run::graph::build_flow;
use crate::runs::interrupts::Answer;
use crate::runs::{Cancelled, Run, RunFilter, RunMode, RunPage, RunUsage, Runner, Webhooks};
use crate::stats::{Counters, EngineStats};
use crate::store::{
    Database, DeliveryStore, DocStore, Incidents, MemoryStore, RedisConnection, RedisDeliveryStore,
    RedisDocStore, RedisMemoryStore, RedisRunStore, RedisStatusStore, RunStore,
    SqliteDeliveryStore, SqliteDocStore, SqliteMemoryStore, SqliteRunStore, SqliteStatusStore,
    StatusStore, StoreError, StoredEvent, ids::check_story_id,
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
    /// The webhook outbox (SPEC 8.5).
    pub deliveries: Arc<dyn DeliveryStore>,
    /// Where the backends count their failures (see [`Incidents`]).
    pub incidents: Incidents,
}

impl Stores {
    /// The stores runtime.yaml selects with `memory.backend`.
    ///
    /// `file`: the embedded store, the SQLite database in `memory.path`
    /// with documents mirrored in `docs.path` (SPEC 4.4); a database this
    /// program must not use stops here with a message naming it.
    /// `redis`: all five on one Redis (`memory.redis`), shared by every
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
                    deliveries: Arc::new(SqliteDeliveryStore::new(db.clone())),
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
                    deliveries: Arc::new(RedisDeliveryStore::new(redis.clone())),
                    runs: Arc::new(RedisRunStore::new(redis)),
                    incidents,
                })
            }
        }
    }
}

/// Each backend's name and whether it works (the error message when not).
/// MCP servers are listed as `mcp:<name>`.
pub type BackendHealth = Vec<(String, Result<(), String>)>;

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
    /// Starts, watches and cancels runs (SPEC 8).
    runner: Arc<Runner>,
    /// The webhooks of runs (SPEC 8.5), shared with the runner.
    webhooks: Arc<Webhooks>,
    /// The webhook outbox, handed on by [`stores`](Self::stores).
    deliveries: Arc<dyn DeliveryStore>,
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

    /// Starts an engine on the given stores. `env` looks up environment
    /// variables: API keys, the webhook signing secret (`webhooks.secret_env`).
    pub fn with_stores(
        bundle: Arc<Bundle>,
        config: RuntimeConfig,
        stores: Stores,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, EngineError> {
        let providers =
            Core::build_providers(&bundle, &config, env).map_err(EngineError::Config)?;
        let webhooks = Arc::new(Webhooks::new(
            &config.webhooks,
            env(&config.webhooks.secret_env),
            stores.deliveries.clone(),
        ));
        let tools = ToolBox::new(&bundle.tools, env).map_err(EngineError::Config)?;
        tools.connect_mcp_servers();
        let core = Arc::new(Core {
            tools,
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
            .map(|flow| (flow.name.clone(), Arc::new(build_flow(&core, flow))))
            .collect();
        let runner = Arc::new(Runner::new(core.clone(), graphs, webhooks.clone()));
        runner.start_background();
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
            runner,
            webhooks,
            deliveries: stores.deliveries,
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
            deliveries: self.deliveries.clone(),
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

    /// Runs a flow for a story to its end (`POST /run`, `bmad2pf run`):
    /// [`submit`](Self::submit), then waits for the run to end.
    ///
    /// Progress, token and result events also go to `observer` as they
    /// happen; an observer that went away is ignored (the run finishes
    /// and writes its documents).
    pub async fn run(
        &self,
        request: RunRequest,
        mode: RunMode,
        observer: Option<UnboundedSender<RunEvent>>,
    ) -> Result<Run, EngineError> {
        let (_, mut end) = self.begin_run(request, mode, observer).await?;
        end.wait().await
    }

    /// Starts a run like [`submit`](Self::submit) and hands back, with the
    /// run as stored, a [`RunEnd`] to wait for its end (the CLI waits, and
    /// cancels it on Ctrl-C).
    pub async fn begin_run(
        &self,
        request: RunRequest,
        mode: RunMode,
        observer: Option<UnboundedSender<RunEvent>>,
    ) -> Result<(Run, RunEnd), EngineError> {
        let (run, ended) = self.start_run(request, mode, observer, None).await?;
        Ok((run, RunEnd(ended)))
    }

    /// Starts a run like [`begin_run`](Self::begin_run), whose `webhook`
    /// is told when it ends or waits for a person (SPEC 8.5): an http(s)
    /// URL with a host in `webhooks.allowed_hosts` (when that is set), else
    /// [`EngineError::InvalidWebhook`]; refused with
    /// [`EngineError::WebhookSecretMissing`] while the signing secret is
    /// unset. `POST /runs` and `POST /run` start runs here.
    pub async fn begin_run_with_webhook(
        &self,
        request: RunRequest,
        mode: RunMode,
        webhook: Option<&str>,
    ) -> Result<(Run, RunEnd), EngineError> {
        let (run, ended) = self.start_run(request, mode, None, webhook).await?;
        Ok((run, RunEnd(ended)))
    }

    /// Starts a run in the background (`POST /runs`): stored `queued`, it
    /// runs once a slot is free. The run as stored.
    ///
    /// An `Err` is about the request: unknown flow, bad story id, a story id
    /// too long for the flow's documents ([`EngineError::StoryIdTooLong`],
    /// before anything runs), the flow already queued or running for this
    /// story ([`EngineError::RunInProgress`]), too many runs queued.
    pub async fn submit(&self, request: RunRequest, mode: RunMode) -> Result<Run, EngineError> {
        self.start_run(request, mode, None, None)
            .await
            .map(|(run, _)| run)
    }

    async fn start_run(
        &self,
        request: RunRequest,
        mode: RunMode,
        observer: Option<UnboundedSender<RunEvent>>,
        webhook: Option<&str>,
    ) -> Result<(Run, tokio::sync::watch::Receiver<Option<Arc<Run>>>), EngineError> {
        let request = through_alias(&self.core.bundle, request);
        self.check_run(&request)?;
        let webhook = webhook.map(|url| self.webhooks.check(url)).transpose()?;
        self.runner.submit(request, mode, observer, webhook).await
    }

    /// Refuses, as starting it would, a run of an unknown flow (or alias),
    /// or for a story id that is invalid or too long for the flow's
    /// documents; nothing is started. The server checks a request with this
    /// before holding it to its own, bundle-wide, limit on story ids.
    pub fn check_run(&self, request: &RunRequest) -> Result<(), EngineError> {
        let flow = flow_name(&self.core.bundle, &request.flow);
        if !self.runner.has_flow(flow) {
            return Err(EngineError::UnknownFlow(request.flow.clone()));
        }
        // A story id names documents: a bad one is an id error (400) like
        // every other id, whoever sends it.
        check_story_id(&request.story_id).map_err(StoreError::from)?;
        StoryLimit::check(
            self.flow_limits.get(flow),
            &format!("flow `{flow}`"),
            &request.story_id,
        )
    }

    /// Makes this engine take over the queued runs of processes that died
    /// (a server's engine does; a one-run CLI process does not, as it exits
    /// after its own run).
    pub fn take_over_queued_runs(&self) {
        self.runner.take_over_queued_runs();
    }

    /// A run, from any process on the store.
    pub async fn get_run(&self, run_id: &str) -> Result<Run, EngineError> {
        self.runner.get(run_id).await
    }

    /// A page of runs, newest first.
    pub async fn list_runs(&self, filter: RunFilter) -> Result<RunPage, EngineError> {
        if let Some(story_id) = &filter.story_id {
            check_story_id(story_id).map_err(StoreError::from)?;
        }
        self.runner.list(filter).await
    }

    /// The run's events after id `after` (0: all): the stored ones, then
    /// live ones until it ends.
    pub async fn follow_run(
        &self,
        run_id: &str,
        after: u64,
    ) -> Result<tokio::sync::mpsc::Receiver<Arc<StoredEvent>>, EngineError> {
        self.runner.follow(run_id, after).await
    }

    /// The run once it has ended, or as it is after `timeout`.
    pub async fn wait_run(&self, run_id: &str, timeout: Duration) -> Result<Run, EngineError> {
        self.runner.wait(run_id, timeout).await
    }

    /// What a run's LLM calls used; each call too when `calls`.
    pub async fn run_usage(&self, run_id: &str, calls: bool) -> Result<RunUsage, EngineError> {
        self.runner.usage(run_id, calls).await
    }

    /// Answers an open question of an interrupted run and continues it in
    /// this process (SPEC 8.3); the run as queued, and a [`RunEnd`] to wait
    /// for the end of its pass. `observer` gets its events as they happen.
    pub async fn resume_run(
        &self,
        run_id: &str,
        answer: &Answer,
        observer: Option<UnboundedSender<RunEvent>>,
    ) -> Result<(Run, RunEnd), EngineError> {
        let (run, ended) = self.runner.resume(run_id, answer, observer).await?;
        Ok((run, RunEnd(ended)))
    }

    /// Cancels a queued or running run (SPEC 8.2).
    pub async fn cancel_run(&self, run_id: &str) -> Result<Cancelled, EngineError> {
        self.runner.cancel(run_id).await
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

    /// The documents stateless execute of `agent_id` needs, as (name it is
    /// supplied under, document name); `None` for an unknown agent.
    pub fn required_documents(&self, agent_id: &str) -> Option<Vec<(String, String)>> {
        let agent = self.core.agent(agent_id)?;
        Some(self.core.required_documents(agent, &[]))
    }

    /// The longest story id a run of `flow` accepts (see `story_limit`).
    pub fn flow_story_limit(&self, flow: &str) -> usize {
        self.flow_limits
            .get(flow)
            .map_or(crate::store::ids::MAX_ID_LEN, |limit| limit.max_len)
    }

    /// Each backend's health: `docs`, `memory`, `status`, then each MCP
    /// server of tools.yaml as `mcp:<name>` (as last seen: that costs no
    /// I/O, so it is never reused from an earlier report). A store check
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
            let mut backends = report.backends.clone();
            backends.extend(self.core.tools.mcp_health());
            return backends;
        }
        let core = &self.core;
        let mut backends = vec![
            (
                "docs".to_string(),
                core.docs.health().await.map_err(|e| e.to_string()),
            ),
            (
                "memory".to_string(),
                core.memory.health().await.map_err(|e| e.to_string()),
            ),
            (
                "status".to_string(),
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
        backends.extend(core.tools.mcp_health());
        backends
    }

    pub fn stats(&self) -> EngineStats {
        EngineStats {
            webhook_deliveries: self.webhooks.outcomes(),
            runs_now: self.runner.runs_now(),
            ..self.core.counters.snapshot()
        }
    }

    /// Shuts this engine's runs down (SIGTERM, SPEC 8.1): no queued run
    /// starts (they stay queued for the next process on the store),
    /// running runs get `runs.shutdown_grace_s` to end, the rest are
    /// stopped and marked `interrupted_by_restart` with `details.graceful`.
    /// Returns once they have ended; streams following runs end too.
    pub async fn stop_runs(&self) {
        let grace = Duration::from_secs(self.core.config.runs.shutdown_grace_s);
        self.runner.shut_down(grace).await;
    }

    /// Waits for running agents to finish their LLM calls (after
    /// [`stop_runs`](Self::stop_runs), those of stateless executes), then
    /// refuses new ones. Every store write is durable when its call
    /// returns, and runs write their memory before they end, so nothing is
    /// left to flush.
    pub async fn shutdown(&self) {
        let permits =
            u32::try_from(self.core.config.server.max_parallel_agents.max(1)).unwrap_or(u32::MAX);
        if let Ok(all) = self.core.agent_permits.acquire_many(permits).await {
            all.forget();
        }
        self.core.agent_permits.close();
    }
}

/// The end of a run started by [`Engine::begin_run`], to wait for.
#[derive(Debug)]
pub struct RunEnd(tokio::sync::watch::Receiver<Option<Arc<Run>>>);

impl RunEnd {
    /// The run, once it has ended.
    pub async fn wait(&mut self) -> Result<Run, EngineError> {
        match self.0.wait_for(Option::is_some).await {
            Ok(ended) => ended
                .as_ref()
                .map(|run| run.as_ref().clone())
                .ok_or_else(|| EngineError::Internal("the run ended without its state".into())),
            Err(_) => Err(EngineError::Internal(
                "the run's task stopped before the run ended".into(),
            )),
        }
    }
}

/// The flow a run of `name` runs: the flow of that id, else the flow it is
/// an alias of (see [`through_alias`]), else `name` itself.
fn flow_name<'a>(bundle: &'a Bundle, name: &'a str) -> &'a str {
    if bundle.flows.contains_key(name) {
        return name;
    }
    alias_target(bundle, name).map_or(name, |(id, _)| id)
}

/// The id of the flow that has `alias` among its `aliases`, and the alias's intent.
fn alias_target<'a>(bundle: &'a Bundle, alias: &str) -> Option<(&'a str, &'a serde_json::Value)> {
    bundle
        .flows
        .iter()
        .find_map(|(id, flow)| Some((id.as_str(), flow.metadata.get("aliases")?.get(alias)?)))
}

/// `request` for the flow it names: a name that is no flow's id but one of
/// a flow's `aliases` (a BMAD shim's name, SPEC 1.7) runs that flow, with
/// the alias's intent before the input.
fn through_alias(bundle: &Bundle, request: RunRequest) -> RunRequest {
    if bundle.flows.contains_key(&request.flow) {
        return request;
    }
    let target = alias_target(bundle, &request.flow).map(|(id, intent)| {
        (
            id.to_string(),
            intent.as_str().unwrap_or_default().trim().to_string(),
        )
    });
    match target {
        Some((flow, intent)) => RunRequest {
            flow,
            input: match (intent.is_empty(), request.input.trim().is_empty()) {
                (true, _) => request.input,
                (false, true) => intent,
                (false, false) => format!("{intent}\n\n{}", request.input),
            },
            ..request
        },
        None => request,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(flow: &str, input: &str) -> RunRequest {
        RunRequest {
            flow: flow.into(),
            story_id: "s1".into(),
            input: input.into(),
            force: false,
            budget: None,
        }
    }

    #[test]
    fn a_shim_name_runs_its_target_with_the_intent_first() {
        let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
        let bundle = bmad2pf_compiler::compile(&examples.join("bmad-skills"))
            .bundle
            .expect("the skills example compiles");
        let through = through_alias(&bundle, request("bmad-old-beds", "Three beds"));
        assert_eq!(through.flow, "bmad-plan-beds");
        assert_eq!(through.input, "plan from the old menu\n\nThree beds");
        assert_eq!(
            through_alias(&bundle, request("bmad-old-beds", " ")).input,
            "plan from the old menu"
        );
        // Flow ids and unknown names pass as they are.
        assert_eq!(
            through_alias(&bundle, request("bmad-plan-beds", "x")),
            request("bmad-plan-beds", "x")
        );
        assert_eq!(
            through_alias(&bundle, request("nope", "x")),
            request("nope", "x")
        );
    }
}
