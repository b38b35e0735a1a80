//! PocketFlow's graph model in async Rust (being written; see issue 3).
