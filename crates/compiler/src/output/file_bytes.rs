//! [`FileBytes`]: the content of one generated file, kept as the pieces it
//! was produced in.
//!
//! bundle.json is rendered one agent at a time on all cores; joining those
//! pieces into one buffer would cost a copy of the whole file (megabytes
//! for a large project) only to hash it, compare it and write it, which
//! all work as well piece by piece. Prompt files are one piece borrowed
//! from the previews they come from.

use sha2::{Digest, Sha256};
use std::borrow::Cow;

/// The bytes of one generated file, in one or more pieces.
#[derive(Debug, Clone, Default)]
pub struct FileBytes<'a> {
    pieces: Vec<Cow<'a, [u8]>>,
    /// Total length of the pieces.
    len: usize,
}

impl<'a> FileBytes<'a> {
    /// The file as the given pieces, in order.
    pub fn from_pieces(pieces: Vec<Cow<'a, [u8]>>) -> Self {
        let len = pieces.iter().map(|piece| piece.len()).sum();
        Self { pieces, len }
    }

    /// Size of the file in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The pieces, whose concatenation is the file.
    pub fn pieces(&self) -> impl Iterator<Item = &[u8]> {
        self.pieces.iter().map(|piece| piece.as_ref())
    }

    /// The whole file in one buffer (a copy).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(self.len);
        self.pieces()
            .for_each(|piece| bytes.extend_from_slice(piece));
        bytes
    }

    /// Lower-case hex sha256 of the file.
    pub fn sha256(&self) -> String {
        let mut hasher = Sha256::new();
        self.pieces().for_each(|piece| hasher.update(piece));
        hex::encode(hasher.finalize())
    }

    /// Reads the file front to back, for comparing it with other bytes
    /// that arrive in chunks of any size.
    pub(super) fn reader(&self) -> PieceReader<'_> {
        PieceReader {
            pieces: self.pieces.iter(),
            current: &[],
        }
    }
}

impl From<Vec<u8>> for FileBytes<'_> {
    fn from(bytes: Vec<u8>) -> Self {
        Self::from_pieces(vec![Cow::Owned(bytes)])
    }
}

impl<'a> From<&'a [u8]> for FileBytes<'a> {
    fn from(bytes: &'a [u8]) -> Self {
        Self::from_pieces(vec![Cow::Borrowed(bytes)])
    }
}

impl<'a> From<Cow<'a, [u8]>> for FileBytes<'a> {
    fn from(bytes: Cow<'a, [u8]>) -> Self {
        Self::from_pieces(vec![bytes])
    }
}

/// Equal when the bytes are, however they are split into pieces.
impl PartialEq for FileBytes<'_> {
    fn eq(&self, other: &Self) -> bool {
        if self.len != other.len {
            return false;
        }
        let mut reader = other.reader();
        self.pieces().all(|piece| reader.take_equal(piece))
    }
}

impl Eq for FileBytes<'_> {}

/// A position in a [`FileBytes`], see [`FileBytes::reader`].
pub(super) struct PieceReader<'p> {
    pieces: std::slice::Iter<'p, Cow<'p, [u8]>>,
    /// What is left of the piece being read.
    current: &'p [u8],
}

impl PieceReader<'_> {
    /// Whether the next `chunk.len()` bytes equal `chunk` (false when fewer
    /// are left); they are consumed either way.
    pub(super) fn take_equal(&mut self, mut chunk: &[u8]) -> bool {
        while !chunk.is_empty() {
            if self.current.is_empty() {
                match self.pieces.next() {
                    Some(piece) => self.current = piece,
                    None => return false,
                }
                continue;
            }
            let n = chunk.len().min(self.current.len());
            if chunk[..n] != self.current[..n] {
                return false;
            }
            chunk = &chunk[n..];
            self.current = &self.current[n..];
        }
        true
    }

    /// Every byte has been read.
    pub(super) fn is_at_end(&self) -> bool {
        self.current.is_empty() && self.pieces.as_slice().iter().all(|p| p.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(text: &'static [u8], at: &[usize]) -> FileBytes<'static> {
        let mut pieces = Vec::new();
        let mut start = 0;
        for &end in at.iter().chain([&text.len()]) {
            pieces.push(Cow::Borrowed(&text[start..end]));
            start = end;
        }
        FileBytes::from_pieces(pieces)
    }

    #[test]
    fn pieces_behave_like_the_joined_bytes() {
        let text: &[u8] = b"hello, pieces";
        let whole = FileBytes::from(text);
        let parts = split(text, &[0, 3, 3, 7]);
        assert_eq!(parts.len(), text.len());
        assert_eq!(parts.to_vec(), text);
        assert_eq!(parts, whole);
        assert_eq!(parts.sha256(), whole.sha256());
        assert_eq!(
            parts.sha256(),
            hex::encode(Sha256::digest(text)),
            "hash of the joined bytes"
        );
        assert_ne!(split(b"hello, pieceS", &[5]), whole);
        assert_ne!(FileBytes::from(&text[..5]), whole);
    }

    #[test]
    fn reader_compares_chunks_across_pieces() {
        let parts = split(b"abcdefgh", &[2, 5]);
        let mut reader = parts.reader();
        assert!(reader.take_equal(b"abc"));
        assert!(!reader.is_at_end());
        assert!(reader.take_equal(b"defg"));
        assert!(reader.take_equal(b"h"));
        assert!(reader.is_at_end());
        assert!(!reader.take_equal(b"i"), "past the end");

        let mut reader = parts.reader();
        assert!(!reader.take_equal(b"abX"));
    }
}
