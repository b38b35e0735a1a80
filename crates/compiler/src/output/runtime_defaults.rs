//! The `runtime.yaml` written into a bundle whose sources have none.
//!
//! It spells out every default with a comment, so a user who opens it sees
//! what can be set. A test parses it and checks it equals
//! [`RuntimeConfig::default`](crate::config::RuntimeConfig), so it cannot
//! drift from the code.

/// Commented runtime configuration holding exactly the defaults.
pub const DEFAULT_RUNTIME_YAML: &str = r#"# bmad2pf runtime configuration.
# Written by `bmad2pf generate` because the sources had no runtime.yaml;
# generate never overwrites this file, so edit it freely. Every key is
# optional: the values below are the defaults. Environment variables win over
# this file: LOG_LEVEL, MEMORY_BACKEND, REDIS_URL, PORT and
# BMAD2PF_<SECTION>_<KEY> (e.g. BMAD2PF_LLM_PROVIDER). Relative paths resolve
# against the working directory of the process.

llm:
  provider: mock            # openai | anthropic | gemini | openai_compatible | mock
  model: gpt-4o-mini
  base_url: null            # required for openai_compatible (Ollama, vLLM, llama.cpp server)
  api_key_env: null         # default per provider: OPENAI_API_KEY, ANTHROPIC_API_KEY, GEMINI_API_KEY
  temperature: 0.2          # null: none sent, the vendor's default (OpenAI reasoning models)
  max_tokens: 2000
  timeout: 120              # seconds per attempt
  max_retries: 2
  mock:                     # the mock provider's behaviour
    latency_ms: 0
    failure_rate: 0.0
    seed: 0

memory:
  backend: file             # file (the embedded SQLite store) | redis
  path: ./.bmad2pf          # data directory: the database bmad2pf.db lives here
  redis:
    url: "redis://127.0.0.1:6379/0"
    pool_size: 16
    ttl: 86400              # seconds
    key_prefix: "bmad2pf:"

docs:
  path: ./docs              # each document's latest version as Markdown, to read and edit

logging:
  level: info
  format: json              # json | text

server:
  host: 127.0.0.1
  port: 8000
  api_key_env: null         # when set, requests need `Authorization: Bearer <key>`
  cors_origins: []
  max_body_bytes: 1048576
  max_parallel_agents: 8

orchestrator:
  retention_days: 7

on_missing_doc: wait        # wait | skip | error

replay:
  mode: off                 # off | record | replay
  path: ./replay

bmad:                       # BMAD v6 and skills sources
  project_root: null        # what {project-root} means outside an install; null: the working directory
  vars: {}                  # variables for BMAD text, e.g. {user_name: Ada}

runs:                       # runs as resources
  max_running_runs: 32      # per process; the rest wait queued
  max_queued_runs: 1000     # above this, 503 queue_full
  shutdown_grace_s: 30      # on SIGTERM, before running runs are marked
  retention_days: 7         # an ended run is deleted this long after it ended
  interrupt_timeout_s: null # seconds a question may wait for a person; null: for ever
  budget_usd: null          # default per-run budget in US dollars
  budget_tokens: null       # default per-run budget in tokens (input + output)

pricing: {}                 # model -> {input_per_mtok, output_per_mtok, cache_read_per_mtok, cache_write_per_mtok}, USD

webhooks:
  secret_env: BMAD2PF_WEBHOOK_SECRET   # deliveries are signed with this variable's value
  timeout: 10               # seconds per attempt
  max_attempts: 6
  allowed_hosts: []         # empty: any host
"#;
