//! Builds the provider runtime.yaml asks for: the only place that reads
//! environment variables for LLM settings (through the `env` argument, so it
//! stays testable and the process environment is read in one spot).

use std::sync::Arc;

use bmad2pf_compiler::config::{LlmConfig, ProviderKind, ReplayConfig, ReplayMode};

use super::{
    AnthropicProvider, GeminiProvider, LlmError, LlmProvider, MockProvider, OpenAiProvider,
    ReplayProvider,
};

/// The provider for `config`, wrapped for recording or replaying when
/// `replay.mode` says so.
///
/// The API key comes from the variable named by `llm.api_key_env`, else the
/// provider's default (`OPENAI_API_KEY`, `ANTHROPIC_API_KEY`, `GEMINI_API_KEY`);
/// it is required for those three, optional for `openai_compatible` unless
/// `api_key_env` names a variable. `llm.base_url` overrides every vendor's URL
/// and is required for `openai_compatible`. In replay mode nothing is called,
/// so no key is needed.
pub fn build_provider(
    config: &LlmConfig,
    replay: &ReplayConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Arc<dyn LlmProvider>, LlmError> {
    match replay.mode {
        ReplayMode::Replay => Ok(Arc::new(ReplayProvider::replaying(
            config.provider.as_str(),
            &replay.path,
        ))),
        ReplayMode::Record => Ok(Arc::new(ReplayProvider::recording(
            build_vendor(config, env)?,
            &replay.path,
        ))),
        ReplayMode::Off => build_vendor(config, env),
    }
}

fn build_vendor(
    config: &LlmConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Arc<dyn LlmProvider>, LlmError> {
    let base_url = config.base_url.as_deref().filter(|u| !u.trim().is_empty());
    let provider: Arc<dyn LlmProvider> = match config.provider {
        ProviderKind::Openai => Arc::new(OpenAiProvider::openai(
            required_key(config, env)?,
            base_url,
        )?),
        ProviderKind::Anthropic => Arc::new(AnthropicProvider::new(
            required_key(config, env)?,
            base_url,
        )?),
        ProviderKind::Gemini => {
            Arc::new(GeminiProvider::new(required_key(config, env)?, base_url)?)
        }
        ProviderKind::OpenaiCompatible => {
            let Some(base_url) = base_url else {
                return Err(LlmError::Config(
                    "llm.base_url is required for provider openai_compatible \
                     (e.g. http://127.0.0.1:11434/v1 for Ollama)"
                        .into(),
                ));
            };
            let key = match &config.api_key_env {
                Some(_) => Some(required_key(config, env)?),
                None => None,
            };
            Arc::new(OpenAiProvider::compatible(base_url, key)?)
        }
        ProviderKind::Mock => Arc::new(MockProvider::new(&config.mock)?),
    };
    Ok(provider)
}

/// The key from the configured or default variable; missing or empty is an error naming it.
fn required_key(
    config: &LlmConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, LlmError> {
    let var = config
        .api_key_env
        .as_deref()
        .or_else(|| config.provider.default_api_key_env())
        .ok_or_else(|| {
            LlmError::Config(format!(
                "provider {} needs llm.api_key_env to name the API key variable",
                config.provider.as_str()
            ))
        })?;
    env(var)
        .map(|k| k.trim().to_string())
        .filter(|k| !k.is_empty())
        .ok_or_else(|| LlmError::MissingApiKey {
            provider: config.provider.as_str().to_string(),
            env_var: var.to_string(),
        })
}
