//! `bmad2pf backup --to FILE`: a consistent copy of the embedded store
//! while servers and runs keep using it.
//!
//! The copy is SQLite's online backup of the database in `memory.path`,
//! which holds memory, orchestration status, run records and every version
//! of every document. Before copying, the documents' Markdown files are
//! reconciled with the database (an edit waiting in a file becomes a
//! version), so the backup has everything people see in the docs
//! directory too. Restoring is copying the file back to
//! `{memory.path}/bmad2pf.db` while nothing runs (docs/operations.md,
//! Backups); the docs directory is rewritten from it at the next start.

use crate::Outcome;
use crate::runtime::{BundleArgs, StartError, init_logging, tokio_runtime};
use bmad2pf_compiler::config::StoreBackend;
use bmad2pf_engine::store::{DATABASE_FILE, Database, Incidents, SqliteDocStore};
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The file to write: a SQLite database; must not exist yet.
    #[arg(long, value_name = "FILE")]
    to: PathBuf,
    /// Where runtime.yaml is found (the store's paths come from it): the
    /// sources, the bundle, or `--config FILE` alone.
    #[command(flatten)]
    bundle: BundleArgs,
}

pub fn run(args: &BackupArgs) -> Outcome {
    StartError::finish(backup(args))
}

fn backup(args: &BackupArgs) -> Result<Outcome, StartError> {
    let config = args.bundle.load_config()?;
    init_logging(&config, true);
    let failed = |message: String| StartError {
        message,
        invalid_sources: false,
    };
    if config.memory.backend == StoreBackend::Redis {
        return Err(failed(
            "`bmad2pf backup` copies the embedded store; with `memory.backend: redis` back up \
             Redis itself (its RDB or AOF files)"
                .into(),
        ));
    }
    let data_dir = PathBuf::from(&config.memory.path);
    let database = data_dir.join(DATABASE_FILE);
    if !database.is_file() {
        return Err(failed(format!(
            "there is no database to back up at {}",
            database.display()
        )));
    }
    if args.to.exists() {
        return Err(failed(format!(
            "{} exists already; back up to a new file",
            args.to.display()
        )));
    }
    let runtime = tokio_runtime()?;
    runtime.block_on(async {
        let db =
            Database::open(&data_dir, Incidents::default()).map_err(|e| failed(e.to_string()))?;
        SqliteDocStore::open(db.clone(), &config.docs.path)
            .await
            .map_err(|e| failed(e.to_string()))?;
        db.backup_to(&args.to)
            .await
            .map_err(|e| failed(format!("{e} ({})", e.detail().unwrap_or_default())))?;
        let bytes = std::fs::metadata(&args.to).map_or(0, |m| m.len());
        println!(
            "backed up {} to {} ({bytes} bytes)",
            database.display(),
            args.to.display()
        );
        Ok(Outcome::Success)
    })
}
