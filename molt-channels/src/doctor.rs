//! Health checks that say in plain words what works and what to fix.

use molt_core::channel::ChannelError;
use std::fmt;

/// One thing checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// Whether it works.
    pub ok: bool,
    /// What was found.
    pub summary: String,
    /// What to do about it, when it does not work.
    pub fix: Option<String>,
}

impl Finding {
    /// Something that works.
    pub fn ok(summary: impl Into<String>) -> Self {
        Self {
            ok: true,
            summary: summary.into(),
            fix: None,
        }
    }

    /// Something that does not, and how to mend it.
    pub fn problem(summary: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            ok: false,
            summary: summary.into(),
            fix: Some(fix.into()),
        }
    }
}

/// A channel's health report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// The channel's name.
    pub channel: &'static str,
    /// What was checked, in order.
    pub findings: Vec<Finding>,
}

impl Report {
    /// Whether everything checked works.
    pub fn healthy(&self) -> bool {
        self.findings.iter().all(|finding| finding.ok)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.healthy() {
            "ok"
        } else {
            "needs attention"
        };
        writeln!(f, "{}: {verdict}", self.channel)?;
        for finding in &self.findings {
            let mark = if finding.ok { "ok " } else { "ERR" };
            writeln!(f, "  [{mark}] {}", finding.summary)?;
            if let Some(fix) = &finding.fix {
                writeln!(f, "        fix: {fix}")?;
            }
        }
        Ok(())
    }
}

/// The report for a channel that could not connect: its credentials were
/// refused (mended by `credentials_fix`), or the platform was out of reach.
pub(crate) fn not_connected(
    channel: &'static str,
    error: ChannelError,
    credentials_fix: &str,
) -> Report {
    let finding = match error {
        ChannelError::Auth { reason, .. } => {
            Finding::problem(format!("credentials refused: {reason}"), credentials_fix)
        }
        error => Finding::problem(
            format!("cannot reach the platform: {error}"),
            "check the network (and api_base, if set)",
        ),
    };
    Report {
        channel,
        findings: vec![finding],
    }
}
