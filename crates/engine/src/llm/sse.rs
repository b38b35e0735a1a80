//! A Server-Sent Events decoder for the vendors' streaming replies.
//!
//! Bytes arrive in network chunks that cut lines and events anywhere (even
//! inside a UTF-8 character); [`SseDecoder::push`] buffers them and returns the
//! events that are complete. It follows the SSE rules the three vendors rely
//! on: lines end with `\n`, `\r\n` or `\r`; a blank line ends an event; several
//! `data:` lines join with `\n`; lines starting with `:` are comments
//! (keep-alives); one space after the colon is dropped.

/// One complete event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field; `None` means the default type, `message`.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// Incremental decoder: feed it chunks, collect events.
#[derive(Debug, Default)]
pub struct SseDecoder {
    /// Bytes of the line being read (kept as bytes so a split UTF-8 character
    /// is decoded only once the line is whole).
    line: Vec<u8>,
    /// The previous chunk ended with `\r`: a `\n` at the start of the next one
    /// belongs to the same line ending.
    after_cr: bool,
    event: Option<String>,
    data: Option<String>,
}

impl SseDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a chunk of bytes and returns the events it completed, in order.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        let mut events = Vec::new();
        for &byte in chunk {
            match byte {
                b'\n' if self.after_cr => self.after_cr = false,
                b'\n' | b'\r' => {
                    self.after_cr = byte == b'\r';
                    let line = std::mem::take(&mut self.line);
                    if let Some(event) = self.take_line(&line) {
                        events.push(event);
                    }
                }
                _ => {
                    self.after_cr = false;
                    self.line.push(byte);
                }
            }
        }
        events
    }

    /// Ends the stream: an event whose closing blank line never came is still
    /// delivered (some servers close right after the last `data:` line).
    pub fn finish(&mut self) -> Option<SseEvent> {
        let line = std::mem::take(&mut self.line);
        let from_line = if line.is_empty() {
            None
        } else {
            self.take_line(&line)
        };
        from_line.or_else(|| self.dispatch())
    }

    fn take_line(&mut self, line: &[u8]) -> Option<SseEvent> {
        if line.is_empty() {
            return self.dispatch();
        }
        let line = String::from_utf8_lossy(line);
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_ref(), ""),
        };
        match field {
            "data" => match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_string()),
            },
            "event" => self.event = Some(value.to_string()),
            // `id` and `retry` matter for reconnecting browsers, not for one reply.
            _ => {}
        }
        None
    }

    /// The event the fields so far make. As the SSE rules say, one whose
    /// data is empty (a bare `data:` line, as some servers send to keep the
    /// connection open) is no event.
    fn dispatch(&mut self) -> Option<SseEvent> {
        let event = self.event.take();
        let data = self.data.take().filter(|data| !data.is_empty())?;
        Some(SseEvent { event, data })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_in_pieces(text: &str, piece: usize) -> Vec<SseEvent> {
        let mut decoder = SseDecoder::new();
        let mut events = Vec::new();
        for chunk in text.as_bytes().chunks(piece) {
            events.extend(decoder.push(chunk));
        }
        events.extend(decoder.finish());
        events
    }

    fn ev(event: Option<&str>, data: &str) -> SseEvent {
        SseEvent {
            event: event.map(str::to_string),
            data: data.to_string(),
        }
    }

    #[test]
    fn events_survive_any_chunking() {
        let text = "event: message_start\r\ndata: {\"a\":1}\r\n\r\n: keep-alive\n\ndata: é→ü\ndata: second\n\nevent: ping\ndata:x\r\rdata: [DONE]\n\n";
        let expected = vec![
            ev(Some("message_start"), "{\"a\":1}"),
            ev(None, "é→ü\nsecond"),
            ev(Some("ping"), "x"),
            ev(None, "[DONE]"),
        ];
        for piece in 1..=text.len() {
            assert_eq!(
                decode_in_pieces(text, piece),
                expected,
                "piece size {piece}"
            );
        }
    }

    #[test]
    fn comments_and_fieldless_blocks_produce_nothing() {
        assert!(decode_in_pieces(": ping\n\nevent: x\n\nid: 4\n\n", 3).is_empty());
    }

    #[test]
    fn an_event_without_data_is_none() {
        assert_eq!(
            decode_in_pieces("data:\n\nevent: ping\ndata: \n\ndata: {}\n\n", 5),
            vec![ev(None, "{}")]
        );
    }

    #[test]
    fn an_unterminated_last_event_is_delivered() {
        assert_eq!(decode_in_pieces("data: tail", 4), vec![ev(None, "tail")]);
        assert_eq!(decode_in_pieces("data: tail\n", 4), vec![ev(None, "tail")]);
    }
}
