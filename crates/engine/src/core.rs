//! `Core`: what every part of a run needs, built once per engine.
//!
//! The bundle, the configuration, the stores, the LLM providers, the tools,
//! the limit on concurrently running agents and the counters. Nodes of a
//! running flow hold an `Arc<Core>`; nothing in it changes after start-up.

use crate::llm::{LlmProvider, RetryPolicy, build_provider};
use crate::stats::Counters;
use crate::store::RunStore;
use crate::store::{DocStore, MemoryStore, StatusStore};
use crate::tools::ToolBox;
use bmad2pf_compiler::bundle::{AgentSpec, Bundle, StepSpec};
use bmad2pf_compiler::config::{ProviderKind, RuntimeConfig};
use bmad2pf_compiler::prompt::PreparedPrompt;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

pub(crate) struct Core {
    pub bundle: Arc<Bundle>,
    pub config: RuntimeConfig,
    pub docs: Arc<dyn DocStore>,
    pub memory: Arc<dyn MemoryStore>,
    pub status: Arc<dyn StatusStore>,
    pub runs: Arc<dyn RunStore>,
    /// One provider per provider kind in use (the default and agents' overrides).
    pub providers: BTreeMap<ProviderKind, Arc<dyn LlmProvider>>,
    pub tools: ToolBox,
    /// Each agent's prompt, parsed once (an error is reported when the agent runs).
    pub prompts: BTreeMap<String, Result<PreparedPrompt, String>>,
    /// Bounds how many agents call their LLM at once (`server.max_parallel_agents`).
    pub agent_permits: Semaphore,
    pub counters: Counters,
}

/// The LLM settings one agent runs with: its overrides over runtime.yaml.
pub(crate) struct AgentLlm {
    pub provider: Arc<dyn LlmProvider>,
    pub model: String,
    /// `None`: the vendor's default (none is sent).
    pub temperature: Option<f64>,
    pub max_tokens: u32,
    pub policy: RetryPolicy,
}

impl Core {
    /// Builds a provider for every provider kind the bundle uses. A missing
    /// API key or base URL is an error here, at start-up, naming who needs it.
    pub fn build_providers(
        bundle: &Bundle,
        config: &RuntimeConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<BTreeMap<ProviderKind, Arc<dyn LlmProvider>>, String> {
        let mut wanted: BTreeMap<ProviderKind, String> = BTreeMap::new();
        wanted.insert(config.llm.provider, "runtime.yaml llm.provider".to_string());
        for agent in bundle.agents.values() {
            if let Some(name) = &agent.llm.provider {
                let kind = ProviderKind::parse(name).ok_or_else(|| {
                    format!("agent `{}`: unknown llm provider `{name}`", agent.id)
                })?;
                wanted
                    .entry(kind)
                    .or_insert_with(|| format!("agent `{}`", agent.id));
            }
        }
        wanted
            .into_iter()
            .map(|(kind, who)| {
                let mut llm = config.llm.clone();
                llm.provider = kind;
                build_provider(&llm, &config.replay, env)
                    .map(|p| (kind, p))
                    .map_err(|e| format!("LLM provider `{}` (needed by {who}): {e}", kind.as_str()))
            })
            .collect()
    }

    pub fn prepare_prompts(bundle: &Bundle) -> BTreeMap<String, Result<PreparedPrompt, String>> {
        bundle
            .agents
            .iter()
            .map(|(id, agent)| {
                (
                    id.clone(),
                    PreparedPrompt::new(agent).map_err(|e| e.to_string()),
                )
            })
            .collect()
    }

    /// The prepared prompt of agent `id`.
    pub fn prompt(&self, id: &str) -> Result<&PreparedPrompt, String> {
        match self.prompts.get(id) {
            Some(Ok(prompt)) => Ok(prompt),
            Some(Err(message)) => Err(message.clone()),
            None => Err(format!("unknown agent `{id}`")),
        }
    }

    /// Documents `agent` cannot run without, as (key in `docs`, document
    /// name): its `requires` and `wait_for.docs`, then `extra` (a step's own
    /// `requires`), then the outputs of its `wait_for.agents` — a named
    /// output under its name, a default output under the agent's id. Each
    /// document once.
    pub fn required_documents(&self, agent: &AgentSpec, extra: &[String]) -> Vec<(String, String)> {
        let mut names: Vec<(String, String)> = Vec::new();
        let mut push = |key: &str, doc: &str| {
            if !names.iter().any(|(_, d)| d == doc) {
                names.push((key.to_string(), doc.to_string()));
            }
        };
        for name in agent
            .requires
            .iter()
            .chain(&agent.wait_for.docs)
            .chain(extra)
        {
            push(name, name);
        }
        for upstream in &agent.wait_for.agents {
            match self.agent(upstream) {
                Some(spec) if spec.creates.is_empty() => push(upstream, &spec.default_output()),
                Some(spec) => spec.creates.iter().for_each(|name| push(name, name)),
                None => {}
            }
        }
        names
    }

    pub fn agent(&self, id: &str) -> Option<&AgentSpec> {
        self.bundle.agents.get(id)
    }
}

/// Documents `agent` writes in `step` (none for the agent on its own): its
/// `creates`, the step's `creates`, its `updates`, the step's `updates`,
/// each once — or its default output when none is named.
pub(crate) fn output_documents(agent: &AgentSpec, step: Option<&StepSpec>) -> Vec<String> {
    let (step_creates, step_updates): (&[String], &[String]) = match step {
        Some(step) => (&step.creates, &step.updates),
        None => (&[], &[]),
    };
    let mut names: Vec<String> = Vec::new();
    for name in agent
        .creates
        .iter()
        .chain(step_creates)
        .chain(&agent.updates)
        .chain(step_updates)
    {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    if names.is_empty() {
        names.push(agent.default_output());
    }
    names
}

impl Core {
    /// The provider, model and limits `agent` runs with.
    pub fn llm_for(&self, agent: &AgentSpec) -> Result<AgentLlm, String> {
        let kind = match &agent.llm.provider {
            Some(name) => {
                ProviderKind::parse(name).ok_or_else(|| format!("unknown llm provider `{name}`"))?
            }
            None => self.config.llm.provider,
        };
        let provider = self
            .providers
            .get(&kind)
            .cloned()
            .ok_or_else(|| format!("provider `{}` was not set up", kind.as_str()))?;
        Ok(AgentLlm {
            provider,
            model: agent
                .llm
                .model
                .clone()
                .unwrap_or_else(|| self.config.llm.model.clone()),
            temperature: agent.llm.temperature.or(self.config.llm.temperature),
            max_tokens: agent.llm.max_tokens.unwrap_or(self.config.llm.max_tokens),
            policy: RetryPolicy {
                max_retries: agent.retry_count.unwrap_or(self.config.llm.max_retries),
                attempt_timeout: Duration::from_secs(
                    agent.timeout_s.unwrap_or(self.config.llm.timeout),
                ),
                ..RetryPolicy::from_config(&self.config.llm)
            },
        })
    }
}
