//! `StoreError`: the one error type of every store backend.
//!
//! Its variants are the things a caller can act on (a bad id is the client's
//! fault, a missing workflow is a 404, a duplicate a 409, a broken disk or an
//! unreachable Redis a 500/503). Messages are written for clients and never
//! contain file-system paths; the path and the OS error go into a separate
//! `detail` that is meant for logs only ([`StoreError::detail`]).

use std::path::Path;

use super::ids::IdError;

/// What went wrong in a store. `Clone`, so that one failure (a commit
/// that failed) can answer every writer it concerns.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// An id, scope or key broke the id rules (client error, 400).
    #[error(transparent)]
    InvalidId(#[from] IdError),
    /// The thing asked for does not exist (404). Plain lookups return
    /// `Option` instead; this is for operations that need the thing.
    #[error("{what} not found")]
    NotFound {
        /// What was missing, e.g. "workflow `wf-1`".
        what: String,
    },
    /// A create for something that already exists (409).
    #[error("{what} already exists")]
    AlreadyExists {
        /// What exists, e.g. "workflow `wf-1`".
        what: String,
    },
    /// A write that contradicts what is stored (409), such as an update
    /// naming a different story than its workflow belongs to.
    #[error("{message}")]
    Conflict {
        /// Client-facing explanation.
        message: String,
    },
    /// Reading or writing the backing storage failed (500).
    #[error("{message}")]
    Io {
        /// Client-facing summary, without paths.
        message: String,
        /// Path and OS error, for logs.
        detail: String,
    },
    /// A value a store will not keep (client error, 422): see
    /// [`MAX_VALUE_DEPTH`](super::MAX_VALUE_DEPTH).
    #[error("{message}")]
    InvalidValue {
        /// Client-facing explanation.
        message: String,
        /// The deepest nesting stored.
        max_depth: usize,
    },
    /// Stored data could not be understood (500); nothing was overwritten.
    #[error("{message}")]
    Corrupt {
        /// Client-facing summary, without paths.
        message: String,
        /// Where and what, for logs.
        detail: String,
    },
    /// The backend cannot serve requests right now (503): a directory that
    /// cannot be written, a Redis server that does not answer.
    #[error("{message}")]
    Unavailable {
        /// Client-facing summary.
        message: String,
        /// Cause, for logs.
        detail: String,
    },
}

impl StoreError {
    /// A stable snake_case code for the HTTP layer's `error.code`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidId(_) => "invalid_id",
            Self::NotFound { .. } => "not_found",
            Self::AlreadyExists { .. } => "already_exists",
            Self::Conflict { .. } => "conflict",
            Self::InvalidValue { .. } => "invalid_request",
            Self::Io { .. } => "storage_io",
            Self::Corrupt { .. } => "storage_corrupt",
            Self::Unavailable { .. } => "storage_unavailable",
        }
    }

    /// Whether this is the backend failing (I/O, damaged data, an
    /// unavailable database or Redis), rather than a request it refused.
    pub fn is_backend_failure(&self) -> bool {
        matches!(
            self,
            Self::Io { .. } | Self::Corrupt { .. } | Self::Unavailable { .. }
        )
    }

    /// The log-only detail (paths, OS errors), when there is one.
    pub fn detail(&self) -> Option<&str> {
        match self {
            Self::Io { detail, .. }
            | Self::Corrupt { detail, .. }
            | Self::Unavailable { detail, .. } => Some(detail),
            Self::InvalidId(_)
            | Self::NotFound { .. }
            | Self::AlreadyExists { .. }
            | Self::Conflict { .. }
            | Self::InvalidValue { .. } => None,
        }
    }

    /// An I/O failure on `path` while doing `action` ("write document `x`").
    pub(crate) fn io(action: impl AsRef<str>, path: &Path, err: &std::io::Error) -> Self {
        let action = action.as_ref();
        Self::Io {
            message: format!("storage error: could not {action}"),
            detail: format!("{action}: {}: {err}", path.display()),
        }
    }

    /// Unreadable stored data: `what` names it for clients ("memory key
    /// `k` of scope `s`"), `cause` says why, for logs.
    pub(crate) fn corrupt(what: impl AsRef<str>, cause: impl std::fmt::Display) -> Self {
        let what = what.as_ref();
        Self::Corrupt {
            message: format!("stored data is corrupt: {what}"),
            detail: format!("{what}: {cause}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_keep_paths_out_of_the_message() {
        let err = StoreError::io(
            "write document `a`",
            Path::new("/srv/secret/docs/a.md"),
            &std::io::Error::other("disk full"),
        );
        assert_eq!(err.code(), "storage_io");
        assert!(!err.to_string().contains("/srv"));
        assert!(
            err.detail()
                .is_some_and(|d| d.contains("/srv/secret/docs/a.md") && d.contains("disk full"))
        );
    }
}
