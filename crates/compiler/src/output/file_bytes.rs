//! [`FileBytes`]: the content of one generated file, owned or borrowed.
//!
//! Prompt files borrow the previews they are made from (megabytes for a
//! large project), so rendering a bundle copies none of them; the other
//! files own their bytes.

use sha2::{Digest, Sha256};
use std::borrow::Cow;

/// The bytes of one generated file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileBytes<'a>(Cow<'a, [u8]>);

impl FileBytes<'_> {
    /// Size of the file in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The file's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The file's bytes, copied.
    pub fn to_vec(&self) -> Vec<u8> {
        self.0.to_vec()
    }

    /// Lower-case hex sha256 of the file.
    pub fn sha256(&self) -> String {
        hex::encode(Sha256::digest(&self.0))
    }
}

impl From<Vec<u8>> for FileBytes<'_> {
    fn from(bytes: Vec<u8>) -> Self {
        Self(Cow::Owned(bytes))
    }
}

impl<'a> From<&'a [u8]> for FileBytes<'a> {
    fn from(bytes: &'a [u8]) -> Self {
        Self(Cow::Borrowed(bytes))
    }
}

impl<'a> From<Cow<'a, [u8]>> for FileBytes<'a> {
    fn from(bytes: Cow<'a, [u8]>) -> Self {
        Self(bytes)
    }
}
