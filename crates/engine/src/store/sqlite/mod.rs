//! The embedded store (SPEC 4.4): one SQLite database in the data
//! directory, `{memory.path}/bmad2pf.db`, holding memory, orchestration
//! status, run records and claims, webhook deliveries, and every version
//! of every document (mirrored as Markdown files in `docs.path`).
//!
//! # Layout
//! - [`Database`] (`database.rs`): the connection layer every table family
//!   shares — the checks at open, the writer thread that commits queued
//!   writes together, the read connections, backups.
//! - `schema.rs`: the tables and their migrations.
//! - One module per table family, each implementing its store trait:
//!   [`SqliteMemoryStore`], [`SqliteStatusStore`], [`SqliteRunStore`],
//!   [`SqliteDeliveryStore`], [`SqliteDocStore`] (with `mirror.rs`, the Markdown files).
//!
//! Any number of processes may use one data directory at once: they share
//! the file through SQLite's locks, so nothing is cached between calls and
//! every answer reflects the last commit of any of them.

mod database;
mod deliveries;
mod docs;
mod memory;
mod mirror;
mod runs;
mod schema;
mod status;

pub use database::{DATABASE_FILE, Database};
pub use deliveries::SqliteDeliveryStore;
pub use docs::SqliteDocStore;
pub use memory::SqliteMemoryStore;
pub use runs::SqliteRunStore;
pub use status::SqliteStatusStore;
