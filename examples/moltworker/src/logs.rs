//! The recent log lines, kept in memory for `/debug/logs` while they also
//! go to stderr; in both, every secret value the process was given is
//! replaced first (a platform's error text may quote a token).

use std::collections::VecDeque;
use std::io::Write;
use std::sync::{Arc, Mutex};
use tracing_subscriber::fmt::MakeWriter;

/// How many lines are kept.
pub const KEPT_LINES: usize = 500;

/// The last [`KEPT_LINES`] log lines. Cheap to clone; clones share the lines.
#[derive(Clone, Default)]
pub struct LogRing {
    lines: Arc<Mutex<VecDeque<String>>>,
    secrets: Arc<Vec<String>>,
}

impl LogRing {
    /// A ring whose lines (and what goes to stderr) have each of `secrets` replaced.
    pub fn redacting(secrets: Vec<String>) -> Self {
        Self {
            lines: Arc::default(),
            secrets: Arc::new(secrets),
        }
    }

    /// The kept lines, oldest first.
    pub fn lines(&self) -> Vec<String> {
        self.lock().iter().cloned().collect()
    }

    fn push(&self, text: &str) {
        let mut lines = self.lock();
        for line in text.lines().filter(|line| !line.is_empty()) {
            if lines.len() == KEPT_LINES {
                lines.pop_front();
            }
            lines.push_back(line.to_owned());
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<String>> {
        self.lines.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Writes one event to stderr and keeps it.
pub struct RingWriter {
    ring: LogRing,
    buffer: Vec<u8>,
}

impl Write for RingWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for RingWriter {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.buffer);
        let text = crate::debug::redact(&text, &self.ring.secrets);
        // One event is one write to stderr, as the plain writer does.
        let _ = std::io::stderr().write_all(text.as_bytes());
        self.ring.push(&strip_ansi(&text));
    }
}

impl<'a> MakeWriter<'a> for LogRing {
    type Writer = RingWriter;

    fn make_writer(&'a self) -> Self::Writer {
        RingWriter {
            ring: self.clone(),
            buffer: Vec::new(),
        }
    }
}

/// `text` without terminal colour sequences.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ ... final byte in @..~
            for next in chars.by_ref() {
                if ('@'..='~').contains(&next) && next != '[' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
