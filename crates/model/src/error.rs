/// What the control loop does about an error: the error policy branches on this, never on text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Try again soon (network blip, timeout, busy).
    Transient,
    /// The cloud said no for capacity or quota: pause this group only.
    Quota,
    /// The thing is gone; usually fine for deletes.
    NotFound,
    /// Someone else changed it (409, name taken).
    Conflict,
    /// Bad input or configuration: retrying won't help until it changes.
    Invalid,
    /// Our own bug: report loudly, back off long.
    Bug,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Transient => "transient",
            ErrorKind::Quota => "quota",
            ErrorKind::NotFound => "not-found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Invalid => "invalid",
            ErrorKind::Bug => "bug",
        }
    }
}

/// The error type every seam returns: a kind for the loop, a message for people, an optional cause.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SeamError {
    pub kind: ErrorKind,
    pub message: String,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl SeamError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        SeamError { kind, message: message.into(), source: None }
    }
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }
    pub fn transient(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Transient, message)
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }
    pub fn bug(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Bug, message)
    }
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
    /// Several errors as one (a batch where each item failed its own way): `Ok` when there are
    /// none, else the first one's kind and cause with every message joined by `; `.
    pub fn combine(mut errors: Vec<SeamError>) -> Result<(), SeamError> {
        if errors.is_empty() {
            return Ok(());
        }
        let first = errors.remove(0);
        if errors.is_empty() {
            return Err(first);
        }
        let rest: Vec<String> = errors.iter().map(|e| e.message.clone()).collect();
        let message = format!("{}; {}", first.message, rest.join("; "));
        Err(SeamError { kind: first.kind, message, source: first.source })
    }
    /// Adds context when the error crosses a module boundary.
    pub fn context(self, ctx: impl std::fmt::Display) -> Self {
        SeamError { kind: self.kind, message: format!("{ctx}: {}", self.message), source: self.source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combine_keeps_the_first_kind_and_every_message() {
        assert!(SeamError::combine(vec![]).is_ok());
        let e = SeamError::combine(vec![SeamError::transient("a"), SeamError::invalid("b")]).unwrap_err();
        assert_eq!((e.kind(), e.message.as_str()), (ErrorKind::Transient, "a; b"));
        let one = SeamError::combine(vec![SeamError::not_found("c")]).unwrap_err();
        assert_eq!((one.kind(), one.message.as_str()), (ErrorKind::NotFound, "c"));
    }
}
