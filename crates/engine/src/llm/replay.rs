//! Record and replay: reproducible runs without calling a vendor twice.
//!
//! In `record` mode every call goes to the real provider and its response is
//! stored as `<dir>/<key>.json`, where the key is the sha256 of the canonical
//! JSON (keys sorted) of what determines the answer: provider name, model,
//! system prompt, messages, tools, temperature, max_tokens and json_output.
//! In `replay` mode the response comes from that file, and a request that was
//! never recorded fails with [`LlmError::ReplayMiss`]. A replaying provider has
//! no inner provider at all, so it cannot call a vendor (and needs no API key).
//!
//! Files are written atomically (temporary file, then rename), so a crash never
//! leaves a half-written recording, and they hold the request next to the
//! response so a reviewer can see what was asked.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{LlmError, LlmProvider, LlmRequest, LlmResponse, TokenSink};
use crate::canonical::canonical_hash;

/// Version of the recording file layout.
const RECORDING_VERSION: u32 = 1;

/// Tells concurrent writes of one process apart in temporary file names.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

enum Mode {
    /// Calls this provider and stores what it says.
    Record(Arc<dyn LlmProvider>),
    /// Answers from recordings made with the provider of this name.
    Replay(String),
}

pub struct ReplayProvider {
    mode: Mode,
    /// Where recordings live (created on the first recording).
    dir: PathBuf,
}

/// One recording on disk.
#[derive(Serialize, Deserialize)]
struct Recording {
    version: u32,
    /// The hashed inputs, for people reading the file.
    request: Value,
    response: LlmResponse,
}

impl ReplayProvider {
    /// Calls `inner` and records every response in `dir`.
    pub fn recording(inner: Arc<dyn LlmProvider>, dir: impl Into<PathBuf>) -> Self {
        Self {
            mode: Mode::Record(inner),
            dir: dir.into(),
        }
    }

    /// Answers only from recordings in `dir` that were made with the provider
    /// named `provider` (`openai`, `mock`…), never calling anything.
    pub fn replaying(provider: impl Into<String>, dir: impl Into<PathBuf>) -> Self {
        Self {
            mode: Mode::Replay(provider.into()),
            dir: dir.into(),
        }
    }

    /// The recorded provider's name (part of every key).
    pub fn provider_name(&self) -> &str {
        match &self.mode {
            Mode::Record(inner) => inner.name(),
            Mode::Replay(name) => name,
        }
    }

    /// The key of `request`: hex sha256 of its canonical JSON.
    pub fn key(&self, request: &LlmRequest) -> String {
        canonical_hash(&key_inputs(self.provider_name(), request))
    }

    /// Where the recording of `request` lives.
    pub fn recording_path(&self, request: &LlmRequest) -> PathBuf {
        self.dir.join(format!("{}.json", self.key(request)))
    }

    async fn replay(
        &self,
        request: &LlmRequest,
        on_token: Option<&TokenSink>,
    ) -> Result<LlmResponse, LlmError> {
        let path = self.recording_path(request);
        let bytes = match tokio::fs::read(&path).await {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(LlmError::ReplayMiss {
                    key: self.key(request),
                    dir: self.dir.display().to_string(),
                });
            }
            Err(e) => return Err(store_error(&path, e)),
        };
        let recording: Recording = serde_json::from_slice(&bytes)
            .map_err(|e| store_error(&path, format!("not a recording: {e}")))?;
        if let Some(sink) = on_token.filter(|_| !recording.response.text.is_empty()) {
            sink(&recording.response.text);
        }
        Ok(recording.response)
    }

    async fn record(
        &self,
        inner: &dyn LlmProvider,
        request: &LlmRequest,
        on_token: Option<&TokenSink>,
    ) -> Result<LlmResponse, LlmError> {
        let response = inner.complete(request, on_token).await?;
        let recording = Recording {
            version: RECORDING_VERSION,
            request: key_inputs(inner.name(), request),
            response,
        };
        let text = serde_json::to_vec_pretty(&recording)
            .map_err(|e| store_error(&self.dir, format!("cannot serialise: {e}")))?;
        write_atomically(&self.dir, &self.recording_path(request), &text).await?;
        Ok(recording.response)
    }
}

#[async_trait]
impl LlmProvider for ReplayProvider {
    fn name(&self) -> &str {
        "replay"
    }

    async fn complete(
        &self,
        request: &LlmRequest,
        on_token: Option<&TokenSink>,
    ) -> Result<LlmResponse, LlmError> {
        match &self.mode {
            Mode::Record(inner) => self.record(inner.as_ref(), request, on_token).await,
            Mode::Replay(_) => self.replay(request, on_token).await,
        }
    }
}

/// What determines an answer, as JSON.
fn key_inputs(provider: &str, request: &LlmRequest) -> Value {
    json!({
        "provider": provider,
        "model": request.model,
        "system": request.system,
        "messages": request.messages,
        "tools": request.tools,
        "temperature": request.temperature,
        "max_tokens": request.max_tokens,
        "json_output": request.json_output,
        "output_schema": request.output_schema,
    })
}

async fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), LlmError> {
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| store_error(dir, e))?;
    let temp = dir.join(format!(
        ".{}.{}.{}.tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("recording"),
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    if let Err(e) = tokio::fs::write(&temp, bytes).await {
        return Err(store_error(&temp, e));
    }
    if let Err(e) = tokio::fs::rename(&temp, path).await {
        // Best effort: the rename error is the one worth reporting.
        let _ = tokio::fs::remove_file(&temp).await;
        return Err(store_error(path, e));
    }
    Ok(())
}

fn store_error(path: &Path, error: impl std::fmt::Display) -> LlmError {
    LlmError::ReplayStore {
        path: path.display().to_string(),
        message: error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_depend_on_provider_and_parameters() {
        let request = LlmRequest::new("m", "hello");
        let openai = ReplayProvider::replaying("openai", "/nonexistent");
        let gemini = ReplayProvider::replaying("gemini", "/nonexistent");
        assert_ne!(openai.key(&request), gemini.key(&request));
        let mut warmer = request.clone();
        warmer.temperature = Some(0.9);
        assert_ne!(openai.key(&request), openai.key(&warmer));
        assert_eq!(openai.key(&request), openai.key(&request.clone()));
        assert_eq!(openai.key(&request).len(), 64);
    }
}
