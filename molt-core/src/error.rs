//! Small helpers for errors shared by every crate.

/// An error and its causes on one line, `outer: inner: innermost`. HTTP
/// clients' top-level messages are terse; the cause says what happened.
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    #[test]
    fn causes_follow_the_error() {
        let inner = std::io::Error::other("connection refused");
        let outer = std::io::Error::new(std::io::ErrorKind::NotConnected, inner);
        assert_eq!(super::chain(&outer), "connection refused");
        #[derive(Debug, thiserror::Error)]
        #[error("request failed")]
        struct Outer(#[source] std::io::Error);
        let err = Outer(std::io::Error::other("connection refused"));
        assert_eq!(super::chain(&err), "request failed: connection refused");
    }
}
