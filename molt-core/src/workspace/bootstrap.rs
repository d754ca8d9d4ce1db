//! The workspace's files in the system prompt, in OpenClaw's order and
//! manner: `AGENTS.md`, `SOUL.md`, `IDENTITY.md`, `USER.md`, `TOOLS.md` (a
//! file older workspaces have), `BOOTSTRAP.md` (while the first run is
//! pending, in direct conversations), `MEMORY.md` (direct conversations
//! only: it is private). Each under a `## <path>` heading; a blank file is
//! left out; a missing required file (`AGENTS.md`, `SOUL.md`,
//! `IDENTITY.md`) is noted in one line; a large file keeps its head (75%) and
//! tail (25%) around a marker that says how much was cut, within a budget per
//! file and for all of them ([`BootstrapLimits`]).
//!
//! The files are read for every run, so an edit is seen by the next answer.

use super::{BOOTSTRAP_FILE, Workspace, WorkspaceError};
use crate::message::{ChatKind, InboundMessage};
use crate::prompt::SystemPrompt;
use async_trait::async_trait;

/// How much of the workspace goes into the prompt, in characters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootstrapLimits {
    /// The most of one file (OpenClaw's `bootstrapMaxChars`: 20,000).
    pub file_chars: usize,
    /// The most of all files together (`bootstrapTotalMaxChars`: 60,000).
    pub total_chars: usize,
    /// The most of `USER.md`, which should stay short (4,000).
    pub user_chars: usize,
}

impl Default for BootstrapLimits {
    fn default() -> Self {
        Self {
            file_chars: 20_000,
            total_chars: 60_000,
            user_chars: 4_000,
        }
    }
}

/// Below this much budget left, no further file is added.
const MIN_REMAINING: usize = 64;

/// How a file takes part.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Noted when missing.
    Required,
    /// Left out when missing.
    Optional,
    /// In direct conversations only, and left out when missing.
    Private,
}

/// The files, in the order they are injected.
const FILES: [(&str, Role); 7] = [
    ("AGENTS.md", Role::Required),
    ("SOUL.md", Role::Required),
    ("IDENTITY.md", Role::Required),
    ("USER.md", Role::Optional),
    ("TOOLS.md", Role::Optional),
    (BOOTSTRAP_FILE, Role::Private),
    ("MEMORY.md", Role::Private),
];

/// One file as it goes into the prompt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContextFile {
    /// Its path in the workspace.
    pub path: &'static str,
    /// What is injected: the text (perhaps cut), or the note that it is missing.
    pub content: String,
    /// Whether the text was cut to fit.
    pub truncated: bool,
}

/// The project context of a run: the files, and whether the first run is pending.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProjectContext {
    /// The files, in order.
    pub files: Vec<ContextFile>,
    /// Whether `BOOTSTRAP.md` is among them, to be followed first.
    pub bootstrap_pending: bool,
}

impl Workspace {
    /// The files for a run in a conversation of `kind`, within `limits`.
    pub async fn project_context(
        &self,
        kind: ChatKind,
        limits: BootstrapLimits,
    ) -> Result<ProjectContext, WorkspaceError> {
        let direct = kind == ChatKind::Direct;
        let bootstrap_pending = direct
            && (self.bootstrap_pending().await)
                .inspect_err(|err| tracing::warn!(%err, "the first-run state could not be read"))
                .unwrap_or(false);
        let mut files = Vec::new();
        let mut remaining = limits.total_chars;
        for (path, role) in FILES {
            if remaining < MIN_REMAINING {
                break;
            }
            if role == Role::Private && !direct || path == BOOTSTRAP_FILE && !bootstrap_pending {
                continue;
            }
            let content = match self.read(path).await {
                Ok(Some(text)) => text,
                Ok(None) if role == Role::Required => format!("[MISSING] Expected at: {path}"),
                Ok(None) => continue,
                // One file that cannot be read does not take the others with it.
                Err(WorkspaceError::NotText { .. }) => "[UNREADABLE: not UTF-8 text]".to_owned(),
                Err(err) => {
                    let reason: String = err.to_string().chars().take(300).collect();
                    format!("[UNREADABLE: {reason}]")
                }
            };
            let content = content.trim_end();
            if content.is_empty() {
                continue;
            }
            let cap = match path {
                "USER.md" => limits.user_chars.min(limits.file_chars),
                _ => limits.file_chars,
            };
            let (content, truncated) = fit(path, content, cap.min(remaining));
            remaining = remaining.saturating_sub(content.chars().count());
            files.push(ContextFile {
                path,
                content,
                truncated,
            });
        }
        Ok(ProjectContext {
            files,
            bootstrap_pending,
        })
    }
}

/// `text` within `max` characters: whole, or its head and tail around a
/// marker saying what was cut.
fn fit(path: &str, text: &str, max: usize) -> (String, bool) {
    let total = text.chars().count();
    if total <= max {
        return (text.to_owned(), false);
    }
    let marker = |head: usize, tail: usize| {
        format!(
            "\n\n[... {path} is cut here: read it for the whole file ...]\n[kept {head}+{tail} of {total} characters]\n\n"
        )
    };
    // The marker's length with the largest numbers it can hold.
    let budget = max.saturating_sub(marker(total, total).chars().count());
    let (head, tail, marker) = if budget >= 16 {
        let head = budget * 3 / 4;
        let tail = budget - head;
        (head, tail, marker(head, tail))
    } else {
        let short = |head: usize, tail: usize| format!("[...{head}+{tail}/{total}]");
        let budget = max.saturating_sub(short(total, total).chars().count());
        let head = budget * 3 / 4;
        (head, budget - head, short(head, budget - head))
    };
    let start: String = text.chars().take(head).collect();
    let end: String = text.chars().skip(total - tail).collect();
    (format!("{start}{marker}{end}"), true)
}

impl ProjectContext {
    /// The context as a section of the system prompt (empty without files).
    pub fn render(&self) -> String {
        if self.files.is_empty() {
            return String::new();
        }
        let has = |path: &str| self.files.iter().any(|f| f.path == path);
        let mut out = String::from("# Project Context\n");
        out.push_str(
            "The workspace files below are yours and the user's to edit; instructions of higher priority win over them.\n",
        );
        let guides = [
            ("SOUL.md", "who you are and how you sound."),
            (
                "USER.md",
                "the person you serve, and what they want of you.",
            ),
            (
                "MEMORY.md",
                "facts and decisions that last; use them when they apply.",
            ),
        ];
        for (path, guide) in guides {
            if has(path) {
                out.push_str(&format!("{path}: {guide}\n"));
            }
        }
        if self.bootstrap_pending {
            out.push_str(
                "\n## Bootstrap Pending\nThis is the workspace's first run: follow BOOTSTRAP.md (below) before anything else, do not claim it done before it is, and delete it when it is.\n",
            );
        }
        for file in &self.files {
            out.push_str(&format!("\n## {}\n{}\n", file.path, file.content));
        }
        if self.files.iter().any(|f| f.truncated) {
            out.push_str(
                "\n## Bootstrap Context Notice\nSome workspace files were cut to fit: read them with the `read` tool when details seem missing.\n",
            );
        }
        out
    }
}

/// A system prompt made of fixed text (instructions, skills) and the
/// workspace's project context, assembled for each run.
pub struct WorkspacePrompt {
    /// The fixed part, first.
    pub base: String,
    /// The workspace.
    pub workspace: Workspace,
    /// How much of it goes in.
    pub limits: BootstrapLimits,
}

#[async_trait]
impl SystemPrompt for WorkspacePrompt {
    async fn for_run(&self, inbound: &InboundMessage) -> String {
        let today = format!("Today is {} (UTC).", self.workspace.today());
        let context = self
            .workspace
            .project_context(inbound.chat_kind, self.limits);
        match context.await.map(|context| context.render()) {
            Ok(rendered) if !rendered.is_empty() => {
                format!("{}\n\n{today}\n\n{rendered}", self.base)
            }
            Ok(_) => format!("{}\n\n{today}", self.base),
            Err(err) => {
                tracing::warn!(%err, "the workspace could not be read; answering without it");
                format!("{}\n\n{today}", self.base)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_file_keeps_its_head_and_tail_within_the_limit() {
        let text: String = (0..5_000).map(|n| format!("line {n}\n")).collect();
        let (fitted, truncated) = fit("AGENTS.md", &text, 2_000);
        assert!(truncated);
        assert!(
            fitted.chars().count() <= 2_000,
            "{}",
            fitted.chars().count()
        );
        assert!(fitted.starts_with("line 0\n"));
        assert!(fitted.trim_end().ends_with("line 4999"));
        assert!(fitted.contains("AGENTS.md is cut here"));
        let (whole, cut) = fit("SOUL.md", "short", 2_000);
        assert_eq!((whole.as_str(), cut), ("short", false));
        let (tiny, cut) = fit("USER.md", &text, 40);
        assert!(cut && tiny.chars().count() <= 40, "{tiny:?}");
    }
}
