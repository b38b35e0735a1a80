//! The label a node's `post` returns to choose what runs next.
//!
//! PocketFlow routes on plain strings, with `None` meaning `"default"`. An
//! [`Action`] is the same string, made from a literal without allocating, so
//! following an edge costs a map lookup and nothing more.

use std::borrow::{Borrow, Cow};
use std::fmt;

/// The name of an outgoing edge: `"default"` unless a node says otherwise.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Action(Cow<'static, str>);

impl Action {
    /// The action a plain `flow.next(a, b)` edge listens for.
    pub const DEFAULT: Action = Action(Cow::Borrowed("default"));

    /// An action with the given name.
    pub fn new(name: impl Into<Cow<'static, str>>) -> Self {
        Action(name.into())
    }

    /// The action's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Action {
    fn default() -> Self {
        Action::DEFAULT
    }
}

impl From<&'static str> for Action {
    fn from(name: &'static str) -> Self {
        Action(Cow::Borrowed(name))
    }
}

impl From<String> for Action {
    fn from(name: String) -> Self {
        Action(Cow::Owned(name))
    }
}

/// Lets successor maps keyed by `Action` be searched with a `&str`.
impl Borrow<str> for Action {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for Action {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Action {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
