//! `RuntimeConfig`: the typed form of runtime.yaml, with defaults and env overrides.
//!
//! Every key has a default, so an empty file is valid; unknown keys are
//! rejected (with positions and "did you mean", via `source::runtime_file`).
//! Environment overrides are applied in one place, [`RuntimeConfig::apply_env`],
//! so nothing deeper in the code reads environment variables for settings.
//! Secrets are never stored here: only the *names* of the variables that hold them.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    pub llm: LlmConfig,
    pub memory: MemoryConfig,
    pub docs: DocsConfig,
    pub logging: LoggingConfig,
    pub server: ServerConfig,
    pub orchestrator: OrchestratorConfig,
    pub on_missing_doc: OnMissingDoc,
    pub replay: ReplayConfig,
    pub bmad: BmadConfig,
    pub runs: RunsConfig,
    /// Model name (as configured) → its price (SPEC 8.4). No built-in list:
    /// a model without an entry has no cost, never a guessed one.
    pub pricing: std::collections::BTreeMap<String, ModelPrice>,
    pub webhooks: WebhooksConfig,
}

impl RuntimeConfig {
    /// The directories bmad2pf writes state into (the data directory, the
    /// documents' files, recorded replies), as configured: never sources.
    pub fn data_dirs(&self) -> Vec<std::path::PathBuf> {
        [&self.memory.path, &self.docs.path, &self.replay.path]
            .into_iter()
            .map(std::path::PathBuf::from)
            .collect()
    }
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            llm: LlmConfig::default(),
            memory: MemoryConfig::default(),
            docs: DocsConfig::default(),
            logging: LoggingConfig::default(),
            server: ServerConfig::default(),
            orchestrator: OrchestratorConfig::default(),
            on_missing_doc: OnMissingDoc::Wait,
            replay: ReplayConfig::default(),
            bmad: BmadConfig::default(),
            runs: RunsConfig::default(),
            pricing: std::collections::BTreeMap::new(),
            webhooks: WebhooksConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    Openai,
    Anthropic,
    Gemini,
    OpenaiCompatible,
    Mock,
}

impl ProviderKind {
    /// The environment variable that holds the key when `api_key_env` is not set.
    pub fn default_api_key_env(self) -> Option<&'static str> {
        match self {
            Self::Openai => Some("OPENAI_API_KEY"),
            Self::Anthropic => Some("ANTHROPIC_API_KEY"),
            Self::Gemini => Some("GEMINI_API_KEY"),
            Self::OpenaiCompatible | Self::Mock => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Openai => "openai",
            Self::Anthropic => "anthropic",
            Self::Gemini => "gemini",
            Self::OpenaiCompatible => "openai_compatible",
            Self::Mock => "mock",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(name.to_string())).ok()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LlmConfig {
    pub provider: ProviderKind,
    pub model: String,
    /// Required for `openai_compatible`; overrides the vendor URL for the others.
    pub base_url: Option<String>,
    /// Name of the environment variable holding the API key.
    pub api_key_env: Option<String>,
    /// Sampling temperature; `None` (`null` in runtime.yaml) sends none, so
    /// the vendor's default applies (OpenAI's reasoning models accept no other).
    pub temperature: Option<f64>,
    pub max_tokens: u32,
    /// Seconds per attempt.
    pub timeout: u64,
    pub max_retries: u32,
    pub mock: MockConfig,
}

impl Default for LlmConfig {
    fn default() -> Self {
        Self {
            provider: ProviderKind::Mock,
            model: "gpt-4o-mini".into(),
            base_url: None,
            api_key_env: None,
            temperature: Some(0.2),
            max_tokens: 2000,
            timeout: 120,
            max_retries: 2,
            mock: MockConfig::default(),
        }
    }
}

/// The mock provider's behaviour, so tests and benchmarks can model slow, flaky vendors.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MockConfig {
    pub latency_ms: u64,
    /// Probability in [0, 1] that a call fails with a 503-like error.
    pub failure_rate: f64,
    pub seed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreBackend {
    /// The embedded store: one SQLite database in `memory.path`, documents
    /// mirrored as files in `docs.path` (SPEC 4.4). Named `file` because it
    /// keeps everything in local files.
    File,
    /// Redis, shared by every replica (SPEC 6).
    Redis,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryConfig {
    pub backend: StoreBackend,
    /// The data directory: the embedded store's database lives here.
    pub path: String,
    pub redis: RedisConfig,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self {
            backend: StoreBackend::File,
            path: "./.bmad2pf".into(),
            redis: RedisConfig::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    pub url: String,
    pub pool_size: u32,
    /// Seconds a memory scope lives after its last write.
    pub ttl: u64,
    pub key_prefix: String,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379/0".into(),
            pool_size: 16,
            ttl: 86_400,
            key_prefix: "bmad2pf:".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DocsConfig {
    pub path: String,
}

impl Default for DocsConfig {
    fn default() -> Self {
        Self {
            path: "./docs".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingConfig {
    /// A tracing filter: `info`, `debug`, `bmad2pf_engine=trace,info`…
    pub level: String,
    pub format: LogFormat,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Json,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub host: String,
    pub port: u16,
    /// When set, requests need this variable's value as a Bearer token.
    pub api_key_env: Option<String>,
    pub cors_origins: Vec<String>,
    pub max_body_bytes: usize,
    pub max_parallel_agents: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 8000,
            api_key_env: None,
            cors_origins: Vec::new(),
            max_body_bytes: 1_048_576,
            max_parallel_agents: 8,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OrchestratorConfig {
    pub retention_days: u32,
}

impl Default for OrchestratorConfig {
    fn default() -> Self {
        Self { retention_days: 7 }
    }
}

/// What a run does when a required document is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnMissingDoc {
    /// Do not run the agent; the run answers `pending` listing the documents.
    Wait,
    /// Run the agent with an empty string for the document.
    Skip,
    /// Fail the agent with `dependency_missing`.
    Error,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplayMode {
    Off,
    Record,
    Replay,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReplayConfig {
    pub mode: ReplayMode,
    pub path: String,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        Self {
            mode: ReplayMode::Off,
            path: "./replay".into(),
        }
    }
}

/// BMAD v6 and skills sources (SPEC 1.7).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BmadConfig {
    /// What `{project-root}` means outside an installed project; `None`:
    /// the working directory.
    pub project_root: Option<String>,
    /// Variables for BMAD text, over every config layer but a flow's own.
    pub vars: std::collections::BTreeMap<String, String>,
}

/// Runs as resources (SPEC 8.1, 8.8).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunsConfig {
    /// Runs executing at once in one process; the rest wait queued.
    pub max_running_runs: usize,
    /// Queued runs accepted before `queue_full`.
    pub max_queued_runs: usize,
    /// Seconds running runs get to end on SIGTERM before they are marked.
    pub shutdown_grace_s: u64,
    /// Days an ended run is kept.
    pub retention_days: u32,
    /// Seconds an interrupt may stay open; `None`: for ever.
    pub interrupt_timeout_s: Option<u64>,
    /// Default budget of a run in US dollars; `None`: none.
    pub budget_usd: Option<f64>,
    /// Default budget of a run in tokens (input + output); `None`: none.
    pub budget_tokens: Option<u64>,
}

impl Default for RunsConfig {
    fn default() -> Self {
        Self {
            max_running_runs: 32,
            max_queued_runs: 1000,
            shutdown_grace_s: 30,
            retention_days: 7,
            interrupt_timeout_s: None,
            budget_usd: None,
            budget_tokens: None,
        }
    }
}

/// The price of one model, in US dollars per million tokens (SPEC 8.4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPrice {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
    #[serde(default)]
    pub cache_read_per_mtok: Option<f64>,
    #[serde(default)]
    pub cache_write_per_mtok: Option<f64>,
}

/// Signed webhook deliveries (SPEC 8.5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// The environment variable holding the signing secret.
    pub secret_env: String,
    /// Seconds per delivery attempt.
    pub timeout: u64,
    /// Attempts per delivery, the first included.
    pub max_attempts: u32,
    /// Hosts webhooks may be sent to; empty: any.
    pub allowed_hosts: Vec<String>,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            secret_env: "BMAD2PF_WEBHOOK_SECRET".into(),
            timeout: 10,
            max_attempts: 6,
            allowed_hosts: Vec::new(),
        }
    }
}

/// An environment override that could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("environment variable {var}: {message}")]
pub struct EnvOverrideError {
    pub var: String,
    pub message: String,
}

impl RuntimeConfig {
    /// Applies environment overrides, which win over the file:
    /// `LOG_LEVEL`, `MEMORY_BACKEND`, `REDIS_URL`, `PORT`, and
    /// `BMAD2PF_<SECTION>_<KEY>` for any key (`BMAD2PF_LLM_PROVIDER`,
    /// `BMAD2PF_SERVER_MAX_BODY_BYTES`, `BMAD2PF_MEMORY_REDIS_URL`, `BMAD2PF_ON_MISSING_DOC`).
    /// A variable that names a section but no key of it (`BMAD2PF_LLM_PROVIDR`)
    /// is an error; other `BMAD2PF_` variables (`BMAD2PF_TEST_REDIS_URL`) are
    /// not settings and are left alone.
    ///
    /// `vars` is the environment (pass `std::env::vars()`); taking it as an
    /// argument keeps this testable and keeps env reads in one place.
    pub fn apply_env(
        &mut self,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(), EnvOverrideError> {
        let mut tree = serde_json::to_value(&*self).map_err(|e| EnvOverrideError {
            var: String::new(),
            message: e.to_string(),
        })?;
        let defaults = serde_json::to_value(Self::default()).map_err(|e| EnvOverrideError {
            var: String::new(),
            message: e.to_string(),
        })?;
        let mut vars: Vec<(String, String)> = vars.into_iter().collect();
        // Generic names first, so the short aliases below (documented ones) win.
        vars.sort_by_key(|(name, _)| !name.starts_with("BMAD2PF_"));
        for (name, value) in vars {
            let path: Option<Vec<String>> = match name.as_str() {
                "LOG_LEVEL" => Some(vec!["logging".into(), "level".into()]),
                "MEMORY_BACKEND" => Some(vec!["memory".into(), "backend".into()]),
                "REDIS_URL" => Some(vec!["memory".into(), "redis".into(), "url".into()]),
                "PORT" => Some(vec!["server".into(), "port".into()]),
                _ => match name.strip_prefix("BMAD2PF_") {
                    Some(rest) => {
                        let flat = rest.to_ascii_lowercase();
                        match resolve_key_path(&tree, &flat) {
                            Some(path) => Some(path),
                            // `BMAD2PF_LLM_PROVIDR`: a section we know, a key we don't — a typo.
                            None if names_a_section(&tree, &flat) => {
                                return Err(EnvOverrideError {
                                    var: name.clone(),
                                    message: "does not name a runtime.yaml key".into(),
                                });
                            }
                            // `BMAD2PF_BIN`, `BMAD2PF_TEST_…`: not a setting at all.
                            None => None,
                        }
                    }
                    None => None,
                },
            };
            let Some(path) = path else { continue };
            set_path(&mut tree, &defaults, &path, &value);
            *self = serde_json::from_value(tree.clone()).map_err(|e| EnvOverrideError {
                var: name.clone(),
                message: format!("invalid value {value:?}: {e}"),
            })?;
            // The file's values were checked when it was read; this one now.
            if let Some(breach) = self.rule_breaches().into_iter().find(|b| b.path == path) {
                return Err(EnvOverrideError {
                    var: name,
                    message: breach.message,
                });
            }
        }
        Ok(())
    }
}

/// A value that breaks a rule serde cannot express (a range, a minimum).
#[derive(Debug, Clone, PartialEq)]
pub struct RuleBreach {
    /// The dotted key, as its parts (`["llm", "temperature"]`).
    pub path: Vec<String>,
    pub message: String,
}

impl RuntimeConfig {
    /// Every value out of its range: temperatures and rates, prices, sizes
    /// and counts that must be at least 1. runtime.yaml is checked against
    /// these at compile time, environment overrides when they are applied.
    pub fn rule_breaches(&self) -> Vec<RuleBreach> {
        let mut breaches = Vec::new();
        let mut breach = |path: &[&str], message: String| {
            breaches.push(RuleBreach {
                path: path.iter().map(|p| p.to_string()).collect(),
                message,
            });
        };
        let llm = &self.llm;
        let ranges: [(&[&str], Option<f64>, f64, f64); 2] = [
            (&["llm", "temperature"], llm.temperature, 0.0, 2.0),
            (
                &["llm", "mock", "failure_rate"],
                Some(llm.mock.failure_rate),
                0.0,
                1.0,
            ),
        ];
        for (path, value, min, max) in ranges {
            if let Some(value) = value.filter(|v| !(min..=max).contains(v)) {
                let key = path.join(".");
                breach(
                    path,
                    format!("`{key}` must be between {min} and {max}, found {value}"),
                );
            }
        }
        for (model, price) in &self.pricing {
            let rates = [
                ("input_per_mtok", Some(price.input_per_mtok)),
                ("output_per_mtok", Some(price.output_per_mtok)),
                ("cache_read_per_mtok", price.cache_read_per_mtok),
                ("cache_write_per_mtok", price.cache_write_per_mtok),
            ];
            for (key, rate) in rates {
                if rate.is_some_and(|r| !r.is_finite() || r < 0.0) {
                    breach(
                        &["pricing", model, key],
                        format!("`pricing.{model}.{key}` must be a price of 0 or more"),
                    );
                }
            }
        }
        let at_least_one: [(&[&str], u64); 7] = [
            (&["llm", "max_tokens"], u64::from(llm.max_tokens)),
            (&["llm", "timeout"], llm.timeout),
            (
                &["memory", "redis", "pool_size"],
                u64::from(self.memory.redis.pool_size),
            ),
            (
                &["server", "max_body_bytes"],
                self.server.max_body_bytes as u64,
            ),
            (
                &["server", "max_parallel_agents"],
                self.server.max_parallel_agents as u64,
            ),
            (
                &["runs", "max_running_runs"],
                self.runs.max_running_runs as u64,
            ),
            (
                &["webhooks", "max_attempts"],
                u64::from(self.webhooks.max_attempts),
            ),
        ];
        for (path, value) in at_least_one {
            if value == 0 {
                breach(path, format!("`{}` must be at least 1", path.join(".")));
            }
        }
        breaches
    }
}

/// Whether `flat` starts with a top-level key of runtime.yaml (`llm_…`, `server_…`).
fn names_a_section(tree: &serde_json::Value, flat: &str) -> bool {
    tree.as_object().is_some_and(|sections| {
        sections.keys().any(|k| {
            flat == k
                || flat
                    .strip_prefix(k.as_str())
                    .is_some_and(|r| r.starts_with('_'))
        })
    })
}

/// Finds the key path that `flat` (e.g. `server_max_body_bytes`) spells, by
/// matching known keys greedily, since keys themselves contain underscores.
fn resolve_key_path(tree: &serde_json::Value, flat: &str) -> Option<Vec<String>> {
    let map = tree.as_object()?;
    for (key, child) in map {
        if flat == key && !child.is_object() {
            return Some(vec![key.clone()]);
        }
        if let Some(rest) = flat
            .strip_prefix(key.as_str())
            .and_then(|r| r.strip_prefix('_'))
            && let Some(mut tail) = resolve_key_path(child, rest)
        {
            tail.insert(0, key.clone());
            return Some(tail);
        }
    }
    None
}

/// Sets a leaf from environment text, read as the leaf's kind: strings
/// verbatim (empty clears an optional one), lists as JSON or comma-separated,
/// numbers and booleans as JSON (anything else then fails deserialisation).
/// A leaf that is null (`temperature: null` in the file) has the kind of its
/// default in `defaults`.
fn set_path(
    tree: &mut serde_json::Value,
    defaults: &serde_json::Value,
    path: &[String],
    raw: &str,
) {
    use serde_json::Value as J;
    let mut leaf = tree;
    let mut default = Some(defaults);
    for key in path {
        leaf = &mut leaf[key.as_str()];
        default = default.and_then(|d| d.get(key.as_str()));
    }
    let kind = match (&*leaf, default) {
        (J::Null, Some(default)) => default,
        _ => &*leaf,
    };
    *leaf = match kind {
        J::String(_) => J::String(raw.to_string()),
        J::Null if raw.is_empty() => J::Null,
        J::Null => J::String(raw.to_string()),
        J::Array(_) => serde_json::from_str(raw).unwrap_or_else(|_| {
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| J::String(s.to_string()))
                .collect()
        }),
        _ => serde_json::from_str(raw).unwrap_or_else(|_| J::String(raw.to_string())),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_match_the_spec() {
        let c = RuntimeConfig::default();
        assert_eq!(c.llm.provider, ProviderKind::Mock);
        assert_eq!(c.server.port, 8000);
        assert_eq!(c.server.max_body_bytes, 1_048_576);
        assert_eq!(c.memory.redis.key_prefix, "bmad2pf:");
        assert_eq!(c.on_missing_doc, OnMissingDoc::Wait);
    }

    #[test]
    fn env_overrides_win_and_are_typed() -> Result<(), EnvOverrideError> {
        let mut c = RuntimeConfig::default();
        c.apply_env(env(&[
            ("PORT", "9001"),
            ("BMAD2PF_LLM_PROVIDER", "openai"),
            ("BMAD2PF_SERVER_MAX_BODY_BYTES", "2048"),
            ("BMAD2PF_MEMORY_REDIS_URL", "redis://h:1/2"),
            ("BMAD2PF_ON_MISSING_DOC", "skip"),
            ("BMAD2PF_LLM_BASE_URL", "http://127.0.0.1:9/v1"),
            ("BMAD2PF_LLM_MODEL", "123"),
            ("HOME", "/root"),
        ]))?;
        assert_eq!(c.server.port, 9001);
        assert_eq!(c.llm.provider, ProviderKind::Openai);
        assert_eq!(c.server.max_body_bytes, 2048);
        assert_eq!(c.memory.redis.url, "redis://h:1/2");
        assert_eq!(c.on_missing_doc, OnMissingDoc::Skip);
        assert_eq!(c.llm.base_url.as_deref(), Some("http://127.0.0.1:9/v1"));
        assert_eq!(c.llm.model, "123");
        Ok(())
    }

    #[test]
    fn a_temperature_can_be_unset_and_set_again() -> Result<(), EnvOverrideError> {
        let mut c = RuntimeConfig::default();
        c.apply_env(env(&[("BMAD2PF_LLM_TEMPERATURE", "null")]))?;
        assert_eq!(c.llm.temperature, None);
        // Null in the file: the variable is still read as a number.
        c.apply_env(env(&[("BMAD2PF_LLM_TEMPERATURE", "0.7")]))?;
        assert_eq!(c.llm.temperature, Some(0.7));
        Ok(())
    }

    #[test]
    fn bad_env_values_are_errors() {
        let mut c = RuntimeConfig::default();
        let err = c.apply_env(env(&[("PORT", "eighty")]));
        assert!(err.is_err_and(|e| e.var == "PORT"));
        // Out of the range runtime.yaml is held to.
        for (var, value, says) in [
            ("BMAD2PF_LLM_TEMPERATURE", "7", "between 0 and 2"),
            ("BMAD2PF_SERVER_MAX_PARALLEL_AGENTS", "0", "at least 1"),
        ] {
            let err = RuntimeConfig::default().apply_env(env(&[(var, value)]));
            assert!(
                err.as_ref()
                    .is_err_and(|e| e.var == var && e.message.contains(says)),
                "{err:?}"
            );
        }
        let err = RuntimeConfig::default().apply_env(env(&[("BMAD2PF_LLM_PROVIDR", "x")]));
        assert!(err.is_err_and(|e| e.message.contains("does not name")));
        let mut c = RuntimeConfig::default();
        let unrelated = c.apply_env(env(&[
            ("BMAD2PF_BIN", "/x"),
            ("BMAD2PF_TEST_REDIS_URL", "redis://h"),
        ]));
        assert_eq!(unrelated, Ok(()));
        assert_eq!(c, RuntimeConfig::default());
    }
}
