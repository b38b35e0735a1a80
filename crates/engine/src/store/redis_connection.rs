//! `RedisConnection`: the one Redis connection every Redis backend of a
//! process shares, plus the key prefix and the error mapping they all use.
//!
//! The connection is a redis-rs [`ConnectionManager`]: one multiplexed TCP
//! connection that any number of tasks use at once (commands are pipelined,
//! so a pool of connections would add nothing but sockets) and that
//! reconnects by itself when Redis goes away and comes back. `pool_size`
//! from runtime.yaml becomes the limit on commands in flight at once, which
//! is what a pool of that size would bound.
//!
//! It is opened *lazily*: a replica starts even while Redis is down and
//! reports `degraded` on `/health` until Redis answers, instead of failing to
//! start (an orchestrator restarting it would not bring Redis back). The
//! reconnect back-off is short, so a request during an outage gets its 503
//! within a fraction of a second instead of waiting on long retries, and the
//! first request after Redis returns reconnects.
//!
//! Every Redis failure becomes [`StoreError::Unavailable`] (HTTP 503) with a
//! message that names Redis, the action and a short cause, never the URL
//! (it may hold a password); the full error goes to the log-only detail.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, RedisError};

use bmad2pf_compiler::config::RedisConfig;

use super::{Incidents, StoreError};

/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a command may wait for its reply.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(3);
/// Connection attempts after the first one, each time the connection is
/// rebuilt; kept low so that requests during an outage fail fast.
const RECONNECT_RETRIES: usize = 2;
/// Back-off before the first retry (doubled for each further one).
const RECONNECT_MIN_DELAY: Duration = Duration::from_millis(50);
/// Cap on the back-off between two attempts.
const RECONNECT_MAX_DELAY: Duration = Duration::from_millis(500);

/// A shared Redis connection and the key prefix of this deployment.
/// Cloning is cheap and shares the connection.
#[derive(Clone)]
pub struct RedisConnection {
    /// The multiplexed, self-reconnecting connection.
    manager: ConnectionManager,
    /// `memory.redis.key_prefix`: prepended to every key, so several
    /// deployments (or test runs) can share one Redis.
    prefix: String,
    /// `host:port` of the server, for logs (the URL may carry a password).
    server: String,
    /// Where every failure is counted, for `/health`.
    incidents: Incidents,
}

impl std::fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConnection")
            .field("server", &self.server)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisConnection {
    /// Prepares the connection described by `config` (`url`, `pool_size`,
    /// `key_prefix`) without contacting Redis yet; the first command
    /// connects. Must be called inside a tokio runtime. Fails only for a
    /// URL this build cannot use (not a Redis URL, or `rediss://`).
    pub fn open(config: &RedisConfig, incidents: Incidents) -> Result<Self, StoreError> {
        let client = Client::open(config.url.as_str()).map_err(|err| StoreError::Unavailable {
            message: format!(
                "memory.redis.url is not a usable Redis URL ({}); expected \
                 redis://[:password@]host:port/db or unix:///path (TLS is not built in)",
                err.category()
            ),
            detail: err.to_string(),
        })?;
        let server = client.get_connection_info().addr().to_string();
        let mut manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(RECONNECT_RETRIES)
            .set_min_delay(RECONNECT_MIN_DELAY)
            .set_max_delay(RECONNECT_MAX_DELAY);
        if config.pool_size > 0 {
            let limit = usize::try_from(config.pool_size).unwrap_or(usize::MAX);
            manager_config = manager_config.set_concurrency_limit(limit);
        }
        let manager =
            ConnectionManager::new_lazy_with_config(client, manager_config).map_err(|err| {
                StoreError::Unavailable {
                    message: format!("Redis connection could not be set up ({})", err.category()),
                    detail: format!("{server}: {err}"),
                }
            })?;
        Ok(Self {
            manager,
            prefix: config.key_prefix.clone(),
            server,
            incidents,
        })
    }

    /// `host:port` of the server (never the full URL).
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The key prefix every key of this connection's stores starts with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The full key for `suffix`: `{prefix}{suffix}`.
    pub(crate) fn key(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }

    /// A handle to send commands on (shares the one connection).
    pub(crate) fn handle(&self) -> ConnectionManager {
        self.manager.clone()
    }

    /// Sends `PING`; the health check of every Redis backend.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut handle = self.handle();
        let reply: String = redis::cmd("PING")
            .query_async(&mut handle)
            .await
            .map_err(|err| self.unavailable("reach the server", &err))?;
        if reply == "PONG" {
            Ok(())
        } else {
            self.incidents.record();
            Err(StoreError::Unavailable {
                message: "Redis is unavailable: PING got an unexpected reply".into(),
                detail: format!("{}: PING answered {reply:?}", self.server),
            })
        }
    }

    /// The error for a Redis failure while doing `action` ("read document `x`").
    pub(crate) fn unavailable(&self, action: &str, err: &RedisError) -> StoreError {
        self.incidents.record();
        StoreError::Unavailable {
            message: format!("Redis is unavailable: could not {action} ({})", cause(err)),
            detail: format!("{action}: redis at {}: {err}", self.server),
        }
    }

    /// The error for a value in Redis this program did not write in that
    /// shape (another program, or a key prefix shared by mistake).
    pub(crate) fn corrupt(&self, what: &str, cause: impl std::fmt::Display) -> StoreError {
        self.incidents.record();
        StoreError::Corrupt {
            message: format!("stored data is corrupt: {what}"),
            detail: format!(
                "{what}: redis at {} (prefix {:?}): {cause}",
                self.server, self.prefix
            ),
        }
    }
}

/// A short, credential-free description of what went wrong.
fn cause(err: &RedisError) -> String {
    if err.is_connection_refusal() {
        "connection refused".into()
    } else if err.is_timeout() {
        "timed out".into()
    } else if err.is_connection_dropped() || err.is_io_error() {
        "connection lost".into()
    } else {
        err.category().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_bad_url_is_refused_without_echoing_it() {
        let config = RedisConfig {
            url: "http://user:secret@example.invalid/0".into(),
            ..RedisConfig::default()
        };
        let err = RedisConnection::open(&config, Incidents::default()).err();
        let message = err.as_ref().map(ToString::to_string).unwrap_or_default();
        assert!(message.contains("not a usable Redis URL"), "{message}");
        assert!(!message.contains("secret"), "{message}");
    }

    #[tokio::test]
    async fn opening_does_not_connect_and_keys_carry_the_prefix() -> Result<(), StoreError> {
        // Nothing listens on port 1: opening still succeeds (lazy), PING fails as 503.
        let config = RedisConfig {
            url: "redis://127.0.0.1:1/0".into(),
            key_prefix: "app:".into(),
            ..RedisConfig::default()
        };
        let redis = RedisConnection::open(&config, Incidents::default())?;
        assert_eq!(redis.key("doc:a"), "app:doc:a");
        assert_eq!(redis.server(), "127.0.0.1:1");
        let down = redis.ping().await.err();
        assert_eq!(
            down.as_ref().map(StoreError::code),
            Some("storage_unavailable")
        );
        let message = down.map(|e| e.to_string()).unwrap_or_default();
        assert!(message.starts_with("Redis is unavailable"), "{message}");
        Ok(())
    }
}
