//! The bmad2pf compiler: sources → [`bundle::Bundle`].
