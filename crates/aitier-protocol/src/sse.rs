//! Server-sent events as OpenAI streams use them: each event's `data` is
//! a JSON chunk, an `{"error": ...}` body, or the final `[DONE]`. Encoding
//! gives the text of one `data` field; parsing turns bytes, however the
//! network cut them, back into complete payloads.
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::ErrorBody;

/// The final SSE event of every OpenAI stream.
pub const DONE: &str = "[DONE]";

/// What one event of an OpenAI stream carries.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload<T> {
    Chunk(T),
    /// A failure after the stream started; the stream ends with it.
    Error(ErrorBody),
    Done,
}

impl<T: Serialize> Payload<T> {
    /// The `data` field's text.
    pub fn encode(&self) -> String {
        let json = match self {
            Payload::Chunk(c) => serde_json::to_string(c),
            Payload::Error(e) => serde_json::to_string(e),
            Payload::Done => return DONE.to_string(),
        };
        // Plain data with string keys: serde_json cannot fail on it.
        json.unwrap_or_default()
    }
}

impl<T: DeserializeOwned> Payload<T> {
    pub fn decode(data: &str) -> Result<Self, serde_json::Error> {
        if data.trim() == DONE {
            return Ok(Payload::Done);
        }
        let value: serde_json::Value = serde_json::from_str(data)?;
        if value.get("error").is_some_and(|e| !e.is_null()) {
            return serde_json::from_value(value).map(Payload::Error);
        }
        serde_json::from_value(value).map(Payload::Chunk)
    }
}

#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
    data: Vec<String>,
}

impl SseParser {
    /// Feeds bytes; returns the payloads of the events they completed.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(nl) = self.buf.iter().position(|&b| b == b'\n') {
            let mut line: Vec<u8> = self.buf.drain(..=nl).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if line.is_empty() {
                if !self.data.is_empty() {
                    out.push(self.data.join("\n"));
                    self.data.clear();
                }
                continue;
            }
            let line = String::from_utf8_lossy(&line);
            if let Some(rest) = line.strip_prefix("data:") {
                self.data
                    .push(rest.strip_prefix(' ').unwrap_or(rest).to_string());
            }
        }
        out
    }

    /// What is left when the stream ends: an event missing its blank line.
    pub fn finish(&mut self) -> Option<String> {
        let tail = String::from_utf8_lossy(&std::mem::take(&mut self.buf)).into_owned();
        if let Some(rest) = tail.trim_end().strip_prefix("data:") {
            self.data.push(rest.trim_start().to_string());
        }
        (!self.data.is_empty()).then(|| std::mem::take(&mut self.data).join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_anywhere_come_out_whole() {
        let text = b"data: {\"a\":1}\n\n: keep-alive\n\nevent: x\ndata: [DONE]\r\n\r\n";
        for cut in 0..text.len() {
            let mut p = SseParser::default();
            let mut got = p.push(&text[..cut]);
            got.extend(p.push(&text[cut..]));
            assert_eq!(
                got,
                vec!["{\"a\":1}".to_string(), "[DONE]".to_string()],
                "cut {cut}"
            );
        }
    }

    #[test]
    fn payloads_round_trip() {
        use crate::error::ErrorDetail;
        type P = Payload<serde_json::Value>;
        let chunk = P::Chunk(serde_json::json!({"a": 1}));
        let error = P::Error(ErrorBody {
            error: ErrorDetail {
                message: "boom".into(),
                kind: "server_error".into(),
                param: None,
                code: Some("upstream_error".into()),
            },
        });
        for p in [chunk, error, P::Done] {
            assert_eq!(P::decode(&p.encode()).expect("decodes"), p);
        }
        assert!(P::decode("{not json").is_err());
    }

    #[test]
    fn an_unterminated_last_event_is_kept() {
        let mut p = SseParser::default();
        assert!(p.push(b"data: tail").is_empty());
        assert_eq!(p.finish().as_deref(), Some("tail"));
    }
}
