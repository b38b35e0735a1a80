//! Tests of the BMAD importer as a whole: real file trees (the shipped
//! example pack and the loose shapes of published packs) read through
//! [`super::read`], property tests of its parsers, and the helpers of this
//! module.

mod example;
mod props;
mod support;
mod variations;

use super::*;
use crate::diag::Diagnostics;

#[test]
fn flattens_nested_prose() {
    let mut d = Diagnostics::new();
    let node = parse_yaml_lenient(
        "- plain\n- CRITICAL: read it\n- rules:\n    - a\n    - b\n",
        "f",
        0,
        &mut d,
    );
    let text = node.as_ref().map(node_text).unwrap_or_default();
    assert_eq!(text, "plain\nCRITICAL: read it\nrules:\n  a\n  b");
}

#[test]
fn yaml_errors_become_warnings() {
    let mut d = Diagnostics::new();
    let node = parse_yaml_lenient("a: 1\na: 2\n", "f.yaml", 0, &mut d);
    assert!(node.is_some());
    assert!(!d.has_errors());
    assert_eq!(d.warning_count(), 1);
}

#[test]
fn names_are_sanitised() {
    assert!(is_valid_name("game-dev_2"));
    assert!(!is_valid_name("2game"));
    assert!(!is_valid_name("game dev"));
    assert_eq!(sanitize_name("game dev!"), "game-dev");
    assert_eq!(sanitize_name("2d game"), "x-2d-game");
    assert_eq!(sanitize_name("  "), "unnamed");
}
