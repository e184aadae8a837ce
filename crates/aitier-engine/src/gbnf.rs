//! llama.cpp's GBNF grammars rewritten as llguidance's Lark, so the
//! `grammar` field llama.cpp's clients send works unchanged. GBNF rules
//! (`name ::= ...`, names with dashes, `root` first) become Lark rules
//! (`r_name: ...`, `start: r_root`); literals are re-escaped, character
//! classes and `.` become regular expressions; `| ( ) * + ? {m,n}` mean the
//! same in both.

/// A Lark string literal.
pub fn literal(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

fn rule_name(name: &str) -> String {
    // Lark rule names are lower case; keep distinct GBNF names distinct.
    let mut out = String::from("r_");
    for c in name.chars() {
        match c {
            '-' => out.push('_'),
            c if c.is_ascii_uppercase() => {
                out.push('_');
                out.push(c.to_ascii_lowercase());
                out.push('_');
            }
            c => out.push(c),
        }
    }
    out
}

struct Scanner<'a> {
    src: &'a [u8],
    text: &'a str,
    pos: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.src.get(self.pos).copied()
    }

    fn next_char(&mut self) -> Result<char, String> {
        let ch = self.text[self.pos..]
            .chars()
            .next()
            .ok_or_else(|| self.err("unexpected end"))?;
        self.pos += ch.len_utf8();
        Ok(ch)
    }

    fn err(&self, what: &str) -> String {
        format!("GBNF: {what} at byte {}", self.pos)
    }

    /// Skips spaces and comments; newlines too when `newlines`.
    fn skip(&mut self, newlines: bool) {
        while let Some(c) = self.peek() {
            match c {
                b' ' | b'\t' | b'\r' => self.pos += 1,
                b'\n' if newlines => self.pos += 1,
                b'#' => {
                    while self.peek().is_some_and(|c| c != b'\n') {
                        self.pos += 1;
                    }
                }
                _ => break,
            }
        }
    }

    fn name(&mut self) -> Option<&'a str> {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        {
            self.pos += 1;
        }
        (self.pos > start).then(|| &self.text[start..self.pos])
    }

    /// Whether a rule definition (`name ::=`) starts here.
    fn at_definition(&self) -> bool {
        let mut p = self.pos;
        while self
            .src
            .get(p)
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_')
        {
            p += 1;
        }
        if p == self.pos {
            return false;
        }
        while self.src.get(p).is_some_and(|c| *c == b' ' || *c == b'\t') {
            p += 1;
        }
        self.src[p..].starts_with(b"::=")
    }

    /// One escaped character after a backslash, as llama.cpp reads it.
    fn escape(&mut self) -> Result<char, String> {
        let c = self.peek().ok_or_else(|| self.err("unfinished escape"))?;
        self.pos += 1;
        let hex = |s: &mut Self, n: usize| -> Result<char, String> {
            let digits = s
                .text
                .get(s.pos..s.pos + n)
                .ok_or_else(|| s.err("short escape"))?;
            let v = u32::from_str_radix(digits, 16).map_err(|_| s.err("bad hex escape"))?;
            s.pos += n;
            char::from_u32(v).ok_or_else(|| s.err("escape is not a character"))
        };
        Ok(match c {
            b'n' => '\n',
            b't' => '\t',
            b'r' => '\r',
            b'x' => hex(self, 2)?,
            b'u' => hex(self, 4)?,
            b'U' => hex(self, 8)?,
            _ => {
                self.pos -= 1;
                self.next_char()?
            }
        })
    }

    fn literal(&mut self) -> Result<String, String> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return Err(self.err("unterminated string")),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(literal(&out));
                }
                Some(b'\\') => {
                    self.pos += 1;
                    out.push(self.escape()?);
                }
                Some(_) => {
                    let ch = self.next_char()?;
                    out.push(ch);
                }
            }
        }
    }

    /// `[...]` as a regular expression: every member escaped for it.
    fn class(&mut self) -> Result<String, String> {
        self.pos += 1;
        let mut out = String::from("/[");
        if self.peek() == Some(b'^') {
            self.pos += 1;
            out.push('^');
        }
        loop {
            let ch = match self.peek() {
                None => return Err(self.err("unterminated character class")),
                Some(b']') => {
                    self.pos += 1;
                    out.push_str("]/");
                    return Ok(out);
                }
                Some(b'-') => {
                    self.pos += 1;
                    out.push('-');
                    continue;
                }
                Some(b'\\') => {
                    self.pos += 1;
                    self.escape()?
                }
                Some(_) => self.next_char()?,
            };
            push_class_char(&mut out, ch);
        }
    }

    /// One rule's body, up to the next definition or the end.
    fn body(&mut self) -> Result<String, String> {
        let mut out = String::new();
        loop {
            self.skip(false);
            let Some(c) = self.peek() else {
                return Ok(out);
            };
            if c == b'\n' {
                self.skip(true);
                if self.peek().is_none() || self.at_definition() {
                    return Ok(out);
                }
                continue;
            }
            let piece = match c {
                b'"' => self.literal()?,
                b'[' => self.class()?,
                b'.' => {
                    self.pos += 1;
                    "/(?s:.)/".to_string()
                }
                b'|' | b'(' | b')' | b'*' | b'+' | b'?' => {
                    self.pos += 1;
                    (c as char).to_string()
                }
                b'{' => {
                    let end = self.text[self.pos..]
                        .find('}')
                        .ok_or_else(|| self.err("unterminated repetition"))?;
                    let rep = self.text[self.pos..self.pos + end + 1].replace(' ', "");
                    self.pos += end + 1;
                    rep
                }
                _ => match self.name() {
                    Some(n) => rule_name(n),
                    None => return Err(self.err(&format!("unexpected '{}'", c as char))),
                },
            };
            if !out.is_empty()
                && !matches!(piece.as_str(), "*" | "+" | "?")
                && !piece.starts_with('{')
            {
                out.push(' ');
            }
            out.push_str(&piece);
        }
    }
}

fn push_class_char(out: &mut String, ch: char) {
    match ch {
        '\\' | ']' | '[' | '^' | '-' | '/' => {
            out.push('\\');
            out.push(ch);
        }
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if c.is_control() => out.push_str(&format!("\\x{{{:x}}}", c as u32)),
        c => out.push(c),
    }
}

/// The Lark grammar for a GBNF one, or what is wrong with it.
pub fn to_lark(src: &str) -> Result<String, String> {
    let mut s = Scanner {
        src: src.as_bytes(),
        text: src,
        pos: 0,
    };
    let mut rules = Vec::new();
    loop {
        s.skip(true);
        if s.peek().is_none() {
            break;
        }
        let name = s.name().ok_or_else(|| s.err("expected a rule name"))?;
        s.skip(false);
        if !s.src[s.pos..].starts_with(b"::=") {
            return Err(s.err(&format!("expected '::=' after '{name}'")));
        }
        s.pos += 3;
        let body = s.body()?;
        rules.push(format!("{}: {body}", rule_name(name)));
    }
    if !rules.iter().any(|r| r.starts_with("r_root:")) {
        return Err("GBNF: the grammar has no 'root' rule".into());
    }
    Ok(format!("start: r_root\n{}\n", rules.join("\n")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_literals_and_classes_are_rewritten() {
        let src = "root ::= answer (\" \" answer)*  # a comment\nanswer ::= \"yes\\n\" | [a-z/]{2,3}\n  | .\n";
        let lark = to_lark(src).expect("converts");
        assert_eq!(
            lark,
            "start: r_root\nr_root: r_answer ( \" \" r_answer )*\nr_answer: \"yes\\n\" | /[a-z\\/]/{2,3} | /(?s:.)/\n"
        );
    }

    proptest::proptest! {
        /// Hostile grammars get an answer, never a panic.
        #[test]
        fn any_text_converts_or_is_refused(src in "(root ::= )?(\\PC|[\"\\[\\]\\\\{}:=#\n])*") {
            let _ = to_lark(&src);
        }
    }

    #[test]
    fn a_grammar_without_root_is_refused() {
        assert!(to_lark("a ::= \"x\"")
            .expect_err("no root")
            .contains("root"));
        assert!(to_lark("root = \"x\"").is_err());
    }
}
