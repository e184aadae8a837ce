//! Whose limit a count belongs to, and the names of the counters: typed, so
//! that nothing builds a bucket name as text and parses it back.
use std::fmt;

/// A key's own limits, or its tenant's.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    Key(String),
    Tenant(String),
}

impl Scope {
    /// How error messages name it.
    pub fn kind(&self) -> &'static str {
        match self {
            Scope::Key(_) => "API key",
            Scope::Tenant(_) => "tenant",
        }
    }
}

/// The database's name for a budget counter's scope: `k:<key id>` or
/// `t:<tenant id>`.
impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Key(id) => write!(f, "k:{id}"),
            Scope::Tenant(id) => write!(f, "t:{id}"),
        }
    }
}

/// What a rate-limit bucket counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Meter {
    /// Requests per minute.
    Requests,
    /// Tokens (prompt + completion) per minute.
    Tokens,
    /// Requests running at once.
    Concurrency,
}

impl Meter {
    fn prefix(self) -> &'static str {
        match self {
            Meter::Requests => "rpm",
            Meter::Tokens => "tpm",
            Meter::Concurrency => "conc",
        }
    }
}

/// One limiter bucket: a meter of one scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BucketKey {
    pub meter: Meter,
    pub scope: Scope,
}

impl BucketKey {
    pub fn new(meter: Meter, scope: Scope) -> Self {
        Self { meter, scope }
    }
}

/// A stable text form (`rpm:k:<id>`), for a shared limiter's keys and logs.
impl fmt::Display for BucketKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.meter.prefix(), self.scope)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_forms_are_stable() {
        let k = BucketKey::new(Meter::Requests, Scope::Key("abc".into()));
        assert_eq!(k.to_string(), "rpm:k:abc");
        assert_eq!(Scope::Tenant("tn_1".into()).to_string(), "t:tn_1");
        assert_eq!(k.scope.kind(), "API key");
    }
}
