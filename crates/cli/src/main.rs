//! The `bmad2pf` binary.
fn main() {}
