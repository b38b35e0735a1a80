//! Canonical JSON: pretty-printed (two-space indent, as `serde_json`'s
//! pretty printer writes it) with the keys of every object sorted, written
//! straight from any `Serialize` value.
//!
//! Sorting with `serde_json` alone means building a `serde_json::Value`
//! tree first, which copies every string of the bundle (megabytes of
//! inlined resources) and frees it all again. [`to_canonical_vec`] instead
//! writes everything directly to the output and afterwards moves the
//! entries of each object whose keys came out of order (see
//! [`ObjectWriter`]). The result is byte for byte what `to_value` + sorting
//! + `to_vec_pretty` gives (a test checks it).

use serde::ser::{self, Serialize};
use serde_json::Error;
use std::borrow::Cow;
use std::ops::Range;

/// `value` as pretty JSON with every object's keys sorted (no trailing newline).
pub fn to_canonical_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    write_canonical_at(&mut out, value, 0)?;
    Ok(out)
}

/// Appends `value` to `out` as [`to_canonical_vec`] writes it, for a value
/// that will sit `indent` levels deep in a larger document (its inner
/// lines indented to match), so parts of one document can be written on
/// different threads and joined afterwards.
pub fn write_canonical_at<T: Serialize + ?Sized>(
    out: &mut Vec<u8>,
    value: &T,
    indent: usize,
) -> Result<(), Error> {
    value.serialize(Writer { out, indent })
}

/// Writes one value at a nesting depth (`indent` levels of two spaces).
struct Writer<'a> {
    out: &'a mut Vec<u8>,
    indent: usize,
}

impl Writer<'_> {
    /// A scalar, formatted and escaped exactly as `serde_json` does it.
    fn scalar<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Error> {
        serde_json::to_writer(self.out, value)
    }
}

/// Writes `text` as a JSON string, byte for byte as serde_json does: `"`,
/// `\`, `\b`, `\f`, `\n`, `\r` and `\t` escaped by name, other bytes
/// below 0x20 as `\u00xx`, everything else as it is. Text that needs no
/// escape is skipped eight bytes at a time: most of bundle.json is long
/// strings (resources, templates), which serde_json scans byte by byte.
pub fn write_str(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        if let Some(word) = bytes
            .get(i..i + 8)
            .and_then(|w| <[u8; 8]>::try_from(w).ok())
        {
            match escape_mask(u64::from_le_bytes(word)) {
                0 => {
                    i += 8;
                    continue;
                }
                // Straight to the first byte that needs an escape.
                mask => i += (mask.trailing_zeros() / 8) as usize,
            }
        }
        let byte = bytes[i];
        let named: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x0C => b"\\f",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x00..=0x1F => b"",
            _ => {
                i += 1;
                continue;
            }
        };
        out.extend_from_slice(&bytes[copied..i]);
        if named.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(byte >> 4)]);
            out.push(HEX[usize::from(byte & 0xF)]);
        } else {
            out.extend_from_slice(named);
        }
        i += 1;
        copied = i;
    }
    out.extend_from_slice(&bytes[copied..]);
    out.push(b'"');
}

/// Non-zero when any of the eight bytes of `word` (read little-endian) is
/// below 0x20, `"` or `\`, with the high bit of the first such byte set, so
/// `trailing_zeros() / 8` is its index (the usual "has a zero byte" and "has
/// a byte less than" tricks: a borrow only runs upwards from a byte that
/// matches, so bits above the first match may be spurious, never below it).
fn escape_mask(word: u64) -> u64 {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGHS: u64 = ONES * 0x80;
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v;
    let control = word.wrapping_sub(ONES * 0x20) & !word;
    let quote = has_zero(word ^ (ONES * u64::from(b'"')));
    let backslash = has_zero(word ^ (ONES * u64::from(b'\\')));
    (control | quote | backslash) & HIGHS
}

fn newline_and_indent(out: &mut Vec<u8>, indent: usize) {
    out.push(b'\n');
    out.resize(out.len() + 2 * indent, b' ');
}

impl<'a> ser::Serializer for Writer<'a> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = ArrayWriter<'a>;
    type SerializeTuple = ArrayWriter<'a>;
    type SerializeTupleStruct = ArrayWriter<'a>;
    type SerializeTupleVariant = Wrapped<ArrayWriter<'a>>;
    type SerializeMap = ObjectWriter<'a>;
    type SerializeStruct = ObjectWriter<'a>;
    type SerializeStructVariant = Wrapped<ObjectWriter<'a>>;

    fn serialize_bool(self, v: bool) -> Result<(), Error> {
        self.scalar(&v)
    }
    fn serialize_i8(self, v: i8) -> Result<(), Error> {
        self.scalar(&v)
    }
    fn serialize_i16(self, v: i16) -> Result<(), Error> {
        self.scalar(&v)
    }
    fn serialize_i32(self, v: i32) -> Result<(), Error> {
        self.scalar(&v)
    }
    fn serialize_i64(self, v: i64) -> Result<(), Error> {
        self.scalar(&v)
    }
    fn serialize_u8(self, v: u8) -> Result<(), Error> {
        self.scalar(&v)
    }
    fn serialize_u16(self, v: u16) -> Result<(), Error> {
        self.scalar(&v)
    }
    fn serialize_u32(self, v: u32) -> Result<(), Error> {
        self.scalar(&v)
    }
    fn serialize_u64(self, v: u64) -> Result<(), Error> {
        self.scalar(&v)
    }
    fn serialize_f32(self, v: f32) -> Result<(), Error> {
        // A serde_json::Value holds every float as f64, and prints it so.
        self.scalar(&f64::from(v))
    }
    fn serialize_f64(self, v: f64) -> Result<(), Error> {
        self.scalar(&v)
    }
    fn serialize_char(self, v: char) -> Result<(), Error> {
        self.scalar(&v)
    }
    fn serialize_str(self, v: &str) -> Result<(), Error> {
        write_str(self.out, v);
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), Error> {
        // Bytes are an array of numbers, as serde_json writes them.
        let mut array = self.serialize_seq(Some(v.len()))?;
        for byte in v {
            ser::SerializeSeq::serialize_element(&mut array, byte)?;
        }
        ser::SerializeSeq::end(array)
    }
    fn serialize_none(self) -> Result<(), Error> {
        self.scalar(&())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Error> {
        self.scalar(&())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), Error> {
        self.scalar(&())
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), Error> {
        self.scalar(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        // `{"variant": value}`: an object of one entry, nothing to sort.
        let indent = self.indent;
        let out = self.out;
        out.push(b'{');
        newline_and_indent(out, indent + 1);
        serde_json::to_writer(&mut *out, variant)?;
        out.extend_from_slice(b": ");
        value.serialize(Writer {
            out: &mut *out,
            indent: indent + 1,
        })?;
        newline_and_indent(out, indent);
        out.push(b'}');
        Ok(())
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<ArrayWriter<'a>, Error> {
        self.out.push(b'[');
        Ok(ArrayWriter {
            out: self.out,
            indent: self.indent,
            empty: true,
        })
    }
    fn serialize_tuple(self, len: usize) -> Result<ArrayWriter<'a>, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Result<ArrayWriter<'a>, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Wrapped<ArrayWriter<'a>>, Error> {
        let indent = self.indent;
        let out = open_wrapper(self.out, indent, variant)?;
        let inner = Writer {
            out,
            indent: indent + 1,
        }
        .serialize_seq(Some(len))?;
        Ok(Wrapped { inner, indent })
    }
    fn serialize_map(self, len: Option<usize>) -> Result<ObjectWriter<'a>, Error> {
        Ok(ObjectWriter::new(self.out, self.indent, len.unwrap_or(0)))
    }
    fn serialize_struct(self, _name: &'static str, len: usize) -> Result<ObjectWriter<'a>, Error> {
        self.serialize_map(Some(len))
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Wrapped<ObjectWriter<'a>>, Error> {
        let indent = self.indent;
        let out = open_wrapper(self.out, indent, variant)?;
        let inner = Writer {
            out,
            indent: indent + 1,
        }
        .serialize_map(Some(len))?;
        Ok(Wrapped { inner, indent })
    }
}

/// The elements of an array, written as they come.
struct ArrayWriter<'a> {
    out: &'a mut Vec<u8>,
    indent: usize,
    empty: bool,
}

impl<'a> ArrayWriter<'a> {
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
        newline_and_indent(self.out, self.indent + 1);
        value.serialize(Writer {
            out: &mut *self.out,
            indent: self.indent + 1,
        })
    }

    /// Closes the array and hands back the output (a wrapper still has to close).
    fn finish(self) -> Result<&'a mut Vec<u8>, Error> {
        if !self.empty {
            newline_and_indent(self.out, self.indent);
        }
        self.out.push(b']');
        Ok(self.out)
    }
}

impl ser::SerializeSeq for ArrayWriter<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.element(value)
    }
    fn end(self) -> Result<(), Error> {
        self.finish().map(drop)
    }
}

impl ser::SerializeTuple for ArrayWriter<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.element(value)
    }
    fn end(self) -> Result<(), Error> {
        self.finish().map(drop)
    }
}

impl ser::SerializeTupleStruct for ArrayWriter<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.element(value)
    }
    fn end(self) -> Result<(), Error> {
        self.finish().map(drop)
    }
}

/// The entries of an object. They are written straight to the output as
/// they come; only when the keys did not come in sorted order (struct
/// fields in declaration order, an unsorted map) is the object's text cut
/// out and written again in key order, so each object costs at most one
/// extra copy of itself, and sorted maps (`BTreeMap`s of agents) none.
struct ObjectWriter<'a> {
    out: &'a mut Vec<u8>,
    indent: usize,
    /// Where the object's entries start in `out` (just after its `{`).
    body_start: usize,
    /// Each entry's key and where its `"key": value` text is in `out`.
    entries: Vec<(Cow<'static, str>, Range<usize>)>,
    /// Every key so far was greater than the one before it.
    in_order: bool,
    /// A map key waiting for its value.
    key: Option<String>,
}

impl<'a> ObjectWriter<'a> {
    fn new(out: &'a mut Vec<u8>, indent: usize, len: usize) -> Self {
        out.push(b'{');
        Self {
            body_start: out.len(),
            out,
            indent,
            entries: Vec::with_capacity(len),
            in_order: true,
            key: None,
        }
    }

    fn entry<T: Serialize + ?Sized>(
        &mut self,
        key: Cow<'static, str>,
        value: &T,
    ) -> Result<(), Error> {
        if let Some((last, _)) = self.entries.last() {
            self.in_order &= *last < key;
            self.out.push(b',');
        }
        newline_and_indent(self.out, self.indent + 1);
        let start = self.out.len();
        write_str(self.out, key.as_ref());
        self.out.extend_from_slice(b": ");
        value.serialize(Writer {
            out: &mut *self.out,
            indent: self.indent + 1,
        })?;
        self.entries.push((key, start..self.out.len()));
        Ok(())
    }

    /// Puts the entries in key order if they are not, closes the object
    /// and hands back the output (a wrapper may still have to close).
    fn finish(mut self) -> Result<&'a mut Vec<u8>, Error> {
        if !self.in_order {
            self.reorder();
        }
        if !self.entries.is_empty() {
            newline_and_indent(self.out, self.indent);
        }
        self.out.push(b'}');
        Ok(self.out)
    }

    /// Rewrites the object's entries in key order. Stable sort, then the
    /// last of equal keys wins: a map that repeats a key ends up like a
    /// serde_json object built from it.
    fn reorder(&mut self) {
        let written = self.out.split_off(self.body_start);
        self.entries.sort_by(|a, b| a.0.cmp(&b.0));
        let mut kept: Vec<&Range<usize>> = Vec::with_capacity(self.entries.len());
        let mut last_key: Option<&str> = None;
        for (key, range) in &self.entries {
            match kept.last_mut() {
                Some(last) if last_key == Some(key.as_ref()) => *last = range,
                _ => kept.push(range),
            }
            last_key = Some(key.as_ref());
        }
        for (i, range) in kept.iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            newline_and_indent(self.out, self.indent + 1);
            let text = (range.start - self.body_start)..(range.end - self.body_start);
            self.out.extend_from_slice(&written[text]);
        }
    }
}

/// An object key as serde_json would write it: strings as they are,
/// numbers and booleans as their text.
fn key_text<T: Serialize + ?Sized>(key: &T) -> Result<String, Error> {
    match serde_json::to_value(key)? {
        serde_json::Value::String(text) => Ok(text),
        serde_json::Value::Number(n) => Ok(n.to_string()),
        serde_json::Value::Bool(b) => Ok(b.to_string()),
        other => Err(ser::Error::custom(format!(
            "an object key must be a string, not {other}"
        ))),
    }
}

impl ser::SerializeMap for ObjectWriter<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
        self.key = Some(key_text(key)?);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        let key = self
            .key
            .take()
            .ok_or_else(|| <Error as ser::Error>::custom("a map value came without its key"))?;
        self.entry(Cow::Owned(key), value)
    }
    fn end(self) -> Result<(), Error> {
        self.finish().map(drop)
    }
}

impl ser::SerializeStruct for ObjectWriter<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.entry(Cow::Borrowed(key), value)
    }
    fn end(self) -> Result<(), Error> {
        self.finish().map(drop)
    }
}

/// A tuple or struct variant: `{"variant": <inner>}` around an array or object.
struct Wrapped<W> {
    inner: W,
    /// Depth of the wrapping object.
    indent: usize,
}

/// Writes `{`, the line break and `"variant": ` of a [`Wrapped`] value.
fn open_wrapper<'a>(
    out: &'a mut Vec<u8>,
    indent: usize,
    variant: &str,
) -> Result<&'a mut Vec<u8>, Error> {
    out.push(b'{');
    newline_and_indent(out, indent + 1);
    serde_json::to_writer(&mut *out, variant)?;
    out.extend_from_slice(b": ");
    Ok(out)
}

impl ser::SerializeTupleVariant for Wrapped<ArrayWriter<'_>> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.inner.element(value)
    }
    fn end(self) -> Result<(), Error> {
        let indent = self.indent;
        let out = self.inner.finish()?;
        newline_and_indent(out, indent);
        out.push(b'}');
        Ok(())
    }
}

impl ser::SerializeStructVariant for Wrapped<ObjectWriter<'_>> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.inner.entry(Cow::Borrowed(key), value)
    }
    fn end(self) -> Result<(), Error> {
        let indent = self.indent;
        let out = self.inner.finish()?;
        newline_and_indent(out, indent);
        out.push(b'}');
        Ok(())
    }
}

/// What canonical JSON was defined as before this module: a `Value` tree
/// with sorted keys, pretty-printed (what the writer's tests compare with).
#[cfg(test)]
pub(crate) fn via_value<T: Serialize>(value: &T) -> Vec<u8> {
    fn sort(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(map) => {
                map.sort_keys();
                map.values_mut().for_each(sort);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(sort),
            _ => {}
        }
    }
    let mut tree = serde_json::to_value(value).unwrap_or_default();
    sort(&mut tree);
    serde_json::to_vec_pretty(&tree).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;
    use std::collections::BTreeMap;

    #[derive(Serialize)]
    enum Shape {
        Dot,
        Circle(f64),
        Line(i32, i32),
        Rect { w: u8, h: u8 },
    }

    #[derive(Serialize)]
    #[serde(tag = "kind", content = "namespace")]
    enum Scope {
        Shared(String),
    }

    #[derive(Serialize)]
    struct Sample {
        zeta: Vec<Shape>,
        alpha: Option<String>,
        nothing: Option<u8>,
        empty_list: Vec<u8>,
        empty_map: BTreeMap<String, u8>,
        numbers: (u64, i64, f64, f32, bool),
        text: String,
        scope: Scope,
        bytes: serde_bytes_like::Bytes,
        map: BTreeMap<u32, &'static str>,
        value: serde_json::Value,
    }

    mod serde_bytes_like {
        /// Serialises through `serialize_bytes`.
        pub struct Bytes(pub Vec<u8>);
        impl serde::Serialize for Bytes {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(&self.0)
            }
        }
    }

    #[test]
    fn matches_sorted_value_tree_byte_for_byte() -> Result<(), Error> {
        let value: serde_json::Value = serde_json::from_str(
            r#"{"b": {"z": 1, "a": [{"y": null, "x": "\u0001\"\\é"}, [], {}]}, "a": -0.5, "": true}"#,
        )?;
        let sample = Sample {
            zeta: vec![
                Shape::Dot,
                Shape::Circle(1.0),
                Shape::Line(-1, 2),
                Shape::Rect { w: 3, h: 4 },
            ],
            alpha: Some("tab\tnewline\n".into()),
            nothing: None,
            empty_list: Vec::new(),
            empty_map: BTreeMap::new(),
            numbers: (u64::MAX, i64::MIN, f64::NAN, 0.1, false),
            text: "emoji ✈️ and U+2028 \u{2028}".into(),
            scope: Scope::Shared("team".into()),
            bytes: serde_bytes_like::Bytes(vec![0, 255]),
            map: BTreeMap::from([(10, "ten"), (2, "two")]),
            value,
        };
        assert_eq!(
            String::from_utf8_lossy(&to_canonical_vec(&sample)?),
            String::from_utf8_lossy(&via_value(&sample))
        );
        assert_eq!(to_canonical_vec(&Vec::<u8>::new())?, b"[]");
        assert_eq!(to_canonical_vec("x")?, b"\"x\"");
        Ok(())
    }

    proptest::proptest! {
        #[test]
        fn strings_are_escaped_as_serde_json_escapes_them(text in "(?s).{0,40}", pick in 0usize..4) {
            // Mix in the bytes that need escaping, often and next to each other.
            let special = ["\"", "\\", "\u{1}\u{1f}\u{7f}", "\n\r\t\u{8}\u{c}"][pick];
            for text in [text.clone(), format!("{special}{text}{special}"), text.replace('a', special)] {
                let mut ours = Vec::new();
                write_str(&mut ours, &text);
                proptest::prop_assert_eq!(ours, serde_json::to_vec(&text).unwrap_or_default());
            }
        }
    }

    #[test]
    fn a_repeated_key_keeps_the_last_value() -> Result<(), Error> {
        struct Twice;
        impl Serialize for Twice {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeMap;
                let mut map = s.serialize_map(None)?;
                map.serialize_entry("k", &1)?;
                map.serialize_entry("a", &0)?;
                map.serialize_entry("k", &2)?;
                map.end()
            }
        }
        assert_eq!(to_canonical_vec(&Twice)?, via_value(&Twice));
        Ok(())
    }
}
