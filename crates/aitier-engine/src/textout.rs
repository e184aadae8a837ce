//! Turning a token stream into client text: bytes to UTF-8 across token
//! boundaries, and stop sequences that never reach the client, even when one
//! spans several tokens.

/// Buffers bytes until they form complete UTF-8 characters.
#[derive(Debug, Default)]
pub struct Utf8Buffer {
    pending: Vec<u8>,
}

impl Utf8Buffer {
    /// Appends `bytes` and returns the text that is complete so far.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        match std::str::from_utf8(&self.pending) {
            Ok(s) => {
                let out = s.to_string();
                self.pending.clear();
                out
            }
            Err(e) => {
                let valid = e.valid_up_to();
                // An invalid sequence (not merely an unfinished one) can never
                // complete: replace it rather than hold it forever.
                let end = match e.error_len() {
                    Some(bad) => valid + bad,
                    None => valid,
                };
                let out = String::from_utf8_lossy(&self.pending[..end]).into_owned();
                self.pending.drain(..end);
                if e.error_len().is_some() {
                    return out + &self.push(&[]);
                }
                out
            }
        }
    }

    /// What is left at the end of generation, lossily.
    pub fn flush(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }
}

/// Holds back text that could be the start of a stop sequence.
#[derive(Debug)]
pub struct StopMatcher {
    stops: Vec<String>,
    held: String,
}

#[derive(Debug, PartialEq, Eq)]
pub enum StopOutcome {
    /// Text safe to send now (may be empty).
    Continue(String),
    /// Stop sequence `.1` (its index among the stops) was found: the text
    /// before it; generation ends.
    Stopped(String, usize),
}

impl StopMatcher {
    pub fn new(stops: Vec<String>) -> Self {
        Self {
            stops,
            held: String::new(),
        }
    }

    pub fn push(&mut self, text: &str) -> StopOutcome {
        if self.stops.is_empty() {
            return StopOutcome::Continue(text.to_string());
        }
        self.held.push_str(text);
        let first = self
            .stops
            .iter()
            .enumerate()
            .filter_map(|(i, s)| self.held.find(s.as_str()).map(|at| (at, i)))
            .min();
        if let Some((at, i)) = first {
            let out = self.held[..at].to_string();
            self.held.clear();
            return StopOutcome::Stopped(out, i);
        }
        let keep = self
            .stops
            .iter()
            .map(|s| longest_suffix_prefix(&self.held, s))
            .max()
            .unwrap_or(0);
        let cut = self.held.len() - keep;
        let out = self.held[..cut].to_string();
        self.held.drain(..cut);
        StopOutcome::Continue(out)
    }

    /// Held text is released when generation ends for another reason.
    pub fn flush(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

/// Length in bytes of the longest suffix of `text` that is a proper prefix of
/// `stop`, cut at a character boundary.
fn longest_suffix_prefix(text: &str, stop: &str) -> usize {
    let max = text.len().min(stop.len().saturating_sub(1));
    (1..=max)
        .rev()
        .find(|&n| {
            let start = text.len() - n;
            text.is_char_boundary(start) && stop.as_bytes().starts_with(&text.as_bytes()[start..])
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_split_across_tokens_is_joined() {
        let mut b = Utf8Buffer::default();
        let euro = "€".as_bytes();
        assert_eq!(b.push(&euro[..1]), "");
        assert_eq!(b.push(&euro[1..2]), "");
        assert_eq!(b.push(&euro[2..]), "€");
    }

    #[test]
    fn invalid_bytes_are_replaced_not_held() {
        let mut b = Utf8Buffer::default();
        assert_eq!(b.push(&[0xff, b'a']), "\u{fffd}a");
        assert_eq!(b.flush(), "");
    }

    #[test]
    fn stop_spanning_tokens_never_leaks() {
        let mut m = StopMatcher::new(vec!["END".into()]);
        let mut sent = String::new();
        for piece in ["Hello E", "N", "D tail"] {
            match m.push(piece) {
                StopOutcome::Continue(t) => sent.push_str(&t),
                StopOutcome::Stopped(t, _) => {
                    sent.push_str(&t);
                    break;
                }
            }
        }
        assert_eq!(sent, "Hello ");
    }

    #[test]
    fn false_start_is_released() {
        let mut m = StopMatcher::new(vec!["END".into()]);
        assert_eq!(m.push("a E"), StopOutcome::Continue("a ".into()));
        assert_eq!(m.push("x"), StopOutcome::Continue("Ex".into()));
        assert_eq!(m.push("EN"), StopOutcome::Continue("".into()));
        assert_eq!(m.flush(), "EN");
    }

    #[test]
    fn earliest_of_several_stops_wins() {
        let mut m = StopMatcher::new(vec!["cd".into(), "b".into()]);
        assert_eq!(m.push("abcd"), StopOutcome::Stopped("a".into(), 1));
    }

    #[test]
    fn multibyte_hold_back_respects_char_boundaries() {
        let mut m = StopMatcher::new(vec!["é!".into()]);
        assert_eq!(m.push("caf"), StopOutcome::Continue("caf".into()));
        assert_eq!(m.push("é"), StopOutcome::Continue("".into()));
        assert_eq!(m.push("!"), StopOutcome::Stopped("".into(), 0));
    }
}
