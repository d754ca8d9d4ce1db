//! Memory: the daily notes (`memory/YYYY-MM-DD.md`), `MEMORY.md` and
//! `USER.md`. `memory_search` ranks their lines against a query with BM25
//! (an index kept in memory and brought up to date with the files before
//! each search, so edits made any way are found); `memory_get` reads a file
//! or a range of its lines. When a long conversation is compacted, its
//! summary is appended to the day's note first ([`Notebook`]), so what
//! left the conversation can still be found in memory.

use super::tools::{cut_line, guard_private};
use super::{Workspace, WorkspaceError, is_private};
use crate::platform::Timestamp;
use crate::session::SessionKey;
use crate::tool::{RunContext, SideEffect, Tool, ToolError};
use async_trait::async_trait;
use bm25::{Embedder, EmbedderBuilder, Language, Scorer};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// The files memory is made of, besides `memory/`.
const MEMORY_FILES: [&str; 2] = ["MEMORY.md", "USER.md"];
/// The longest snippet a search result carries, in characters.
const SNIPPET_CHARS: usize = 700;
/// The results `memory_search` gives unless asked for more.
const DEFAULT_RESULTS: usize = 6;
/// The most results it gives.
const MAX_RESULTS: usize = 50;
/// The lines `memory_get` reads unless asked for more.
const DEFAULT_LINES: usize = 120;
/// The most characters `memory_get` returns.
const MAX_GET_CHARS: usize = 12_000;

/// Whether `path` is a memory file.
pub fn is_memory_path(path: &str) -> bool {
    let path = path.trim().trim_start_matches("./");
    MEMORY_FILES.contains(&path) || (path.starts_with("memory/") && path.ends_with(".md"))
}

/// A line of a memory file: the file's number in the index, and the line (from 1).
type LineId = (u32, u32);

/// One file as indexed.
struct IndexedFile {
    number: u32,
    hash: u64,
    lines: u32,
}

/// The index (postings and weights only: snippets come from the files as
/// read for each search), and what it was built from.
struct Index {
    embedder: Embedder,
    scorer: Scorer<LineId>,
    files: HashMap<String, IndexedFile>,
    next_number: u32,
}

/// Lines indexed between two yields to other tasks.
const LINES_PER_YIELD: usize = 2_000;

/// The memory of a workspace, searchable. Cheap to clone (clones share the index).
#[derive(Clone)]
pub struct Memory {
    workspace: Workspace,
    index: Arc<futures::lock::Mutex<Index>>,
}

/// One line found by a search.
#[derive(Clone, Debug, PartialEq)]
pub struct Found {
    /// The file, relative to the workspace.
    pub path: String,
    /// The line (from 1).
    pub line: usize,
    /// Its BM25 score.
    pub score: f32,
    /// The line's text (cut at 700 characters).
    pub snippet: String,
}

impl Memory {
    /// The memory of `workspace`.
    pub fn new(workspace: Workspace) -> Self {
        let index = Index {
            embedder: EmbedderBuilder::with_avgdl(12.0)
                .language_mode(Language::English)
                .build(),
            scorer: Scorer::new(),
            files: HashMap::new(),
            next_number: 0,
        };
        Self {
            workspace,
            index: Arc::new(futures::lock::Mutex::new(index)),
        }
    }

    /// The memory files there are, relative to the workspace.
    pub async fn files(&self) -> Result<Vec<String>, WorkspaceError> {
        let mut files: Vec<String> = (self.workspace.files("memory").await?)
            .into_iter()
            .filter(|path| is_memory_path(path))
            .collect();
        for name in MEMORY_FILES {
            if self.workspace.read(name).await?.is_some() {
                files.push(name.to_owned());
            }
        }
        Ok(files)
    }

    /// The lines that best match `query`, best first.
    pub async fn search(&self, query: &str, limit: usize) -> Result<Vec<Found>, WorkspaceError> {
        self.search_in(query, limit, true).await
    }

    /// [`Memory::search`]; without `private`, the private files
    /// (`MEMORY.md`) are left out.
    pub async fn search_in(
        &self,
        query: &str,
        limit: usize,
        private: bool,
    ) -> Result<Vec<Found>, WorkspaceError> {
        let mut candidates: Vec<String> = (self.workspace.files("memory").await?)
            .into_iter()
            .filter(|path| is_memory_path(path))
            .collect();
        candidates.extend(MEMORY_FILES.map(str::to_owned));
        let mut texts = Vec::new();
        for path in candidates {
            // A file that cannot be read (not text, a folder) is not memory.
            match self.workspace.read(&path).await {
                Ok(Some(text)) => texts.push((path, text)),
                Ok(None) => {}
                Err(err) => tracing::debug!(%err, "memory: skipping a file"),
            }
        }
        let mut index = self.index.lock().await;
        index.update(&texts).await;
        let paths: HashMap<u32, &str> = (index.files.iter())
            .map(|(path, file)| (file.number, path.as_str()))
            .collect();
        let by_path: HashMap<&str, &str> = (texts.iter())
            .map(|(path, text)| (path.as_str(), text.as_str()))
            .collect();
        let query = index.embedder.embed(query);
        let mut matches = index.scorer.matches(&query);
        // Ties in a stable order: by file, then line.
        matches.sort_by(|a, b| {
            (b.score
                .partial_cmp(&a.score)
                .unwrap_or(std::cmp::Ordering::Equal))
            .then_with(|| paths.get(&a.id.0).cmp(&paths.get(&b.id.0)))
            .then_with(|| a.id.1.cmp(&b.id.1))
        });
        Ok(matches
            .into_iter()
            .filter_map(|scored| {
                let (number, line) = scored.id;
                let path = *paths.get(&number)?;
                if !private && is_private(path) {
                    return None;
                }
                let text = by_path.get(path)?.lines().nth(line as usize - 1)?;
                Some(Found {
                    path: path.to_owned(),
                    line: line as usize,
                    score: scored.score,
                    snippet: text.chars().take(SNIPPET_CHARS).collect(),
                })
            })
            .take(limit)
            .collect())
    }

    /// Appends `text` to the note of the day of `at` (UTC), under a
    /// heading, under the note's lock (so no append is lost to another).
    pub async fn append_note(
        &self,
        at: Timestamp,
        heading: &str,
        text: &str,
    ) -> Result<(), WorkspaceError> {
        let path = format!("memory/{}.md", day_of(at));
        let appended = self.workspace.update(&path, |note| {
            let mut note = note.unwrap_or_default().to_owned();
            if !note.is_empty() && !note.ends_with('\n') {
                note.push('\n');
            }
            if !note.is_empty() {
                note.push('\n');
            }
            note.push_str(&format!("## {heading}\n{}\n", text.trim_end()));
            Ok((note, ()))
        });
        let _always = appended.await?;
        Ok(())
    }
}

impl Index {
    /// Brings the index up to date with `texts` (every memory file's path
    /// and text), yielding to other tasks now and then on large changes.
    async fn update(&mut self, texts: &[(String, String)]) {
        let present: std::collections::HashSet<&str> =
            texts.iter().map(|(path, _)| path.as_str()).collect();
        let gone: Vec<String> = (self.files.keys())
            .filter(|path| !present.contains(path.as_str()))
            .cloned()
            .collect();
        for path in gone {
            self.forget(&path);
        }
        let mut since_yield = 0;
        for (path, text) in texts {
            let hash = {
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                text.hash(&mut hasher);
                hasher.finish()
            };
            if self.files.get(path).is_some_and(|file| file.hash == hash) {
                continue;
            }
            let number = match self.files.get(path) {
                Some(file) => file.number,
                None => {
                    self.next_number += 1;
                    self.next_number
                }
            };
            self.forget(path);
            let mut lines = 0;
            for (n, line) in text.lines().enumerate() {
                lines = n as u32 + 1;
                if !line.trim().is_empty() {
                    let embedding = self.embedder.embed(line);
                    self.scorer.upsert(&(number, lines), embedding);
                }
                since_yield += 1;
                if since_yield >= LINES_PER_YIELD {
                    since_yield = 0;
                    yield_now().await;
                }
            }
            self.files.insert(
                path.clone(),
                IndexedFile {
                    number,
                    hash,
                    lines,
                },
            );
        }
    }

    fn forget(&mut self, path: &str) {
        if let Some(file) = self.files.remove(path) {
            for line in 1..=file.lines {
                self.scorer.remove(&(file.number, line));
            }
        }
    }
}

/// Lets other tasks run once.
async fn yield_now() {
    let mut yielded = false;
    futures::future::poll_fn(|cx| {
        if yielded {
            std::task::Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await
}

/// The date (`YYYY-MM-DD`, UTC) of `at`.
pub fn day_of(at: Timestamp) -> String {
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let days = (at.0 / 86_400_000) as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// Where compaction writes what it summarises, before the summarised
/// messages leave the conversation.
#[async_trait]
pub trait Notebook: Send + Sync {
    /// Keeps `summary`, the summary of part of `session`, written at `at`.
    async fn keep_summary(
        &self,
        session: &SessionKey,
        at: Timestamp,
        summary: &str,
    ) -> Result<(), WorkspaceError>;
}

#[async_trait]
impl Notebook for Memory {
    async fn keep_summary(
        &self,
        session: &SessionKey,
        at: Timestamp,
        summary: &str,
    ) -> Result<(), WorkspaceError> {
        let heading = format!("Summary of an earlier conversation ({session})");
        self.append_note(at, &heading, summary).await
    }
}

/// `memory_search`: the lines of the memory files that best match a query.
pub struct MemorySearchTool(pub Memory);

#[async_trait]
impl Tool for MemorySearchTool {
    fn name(&self) -> &str {
        "memory_search"
    }

    fn description(&self) -> &str {
        "Searches your memory (MEMORY.md, USER.md and the daily notes in memory/) for lines about something: people, dates, decisions, promises, preferences. Run it before answering about earlier conversations, then read around a result with memory_get."
    }

    fn input_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "query": { "type": "string", "minLength": 1, "description": "What to look for, in words." },
                "maxResults": { "type": "integer", "minimum": 1, "maximum": MAX_RESULTS, "description": "How many lines (6 unless given)." }
            },
            "required": ["query"],
            "additionalProperties": false
        })
    }

    fn side_effect(&self) -> SideEffect {
        SideEffect::ReadOnly
    }

    async fn call(&self, input: Value) -> Result<String, ToolError> {
        self.call_in(input, &RunContext::default()).await
    }

    async fn call_in(&self, input: Value, context: &RunContext) -> Result<String, ToolError> {
        let query = input["query"].as_str().unwrap_or_default();
        let limit = input["maxResults"]
            .as_u64()
            .map_or(DEFAULT_RESULTS, |n| (n as usize).min(MAX_RESULTS));
        let found = (self.0.search_in(query, limit, context.is_private()).await)
            .map_err(|err| ToolError::new(err.to_string()))?;
        let results: Vec<Value> = found
            .into_iter()
            .map(|f| json!({ "path": f.path, "startLine": f.line, "endLine": f.line, "score": f.score, "snippet": f.snippet }))
            .collect();
        Ok(json!({ "results": results }).to_string())
    }
}

/// `memory_get`: a memory file, or a range of its lines.
pub struct MemoryGetTool(pub Memory);

#[async_trait]
impl Tool for MemoryGetTool {
    fn name(&self) -> &str {
        "memory_get"
    }

    fn description(&self) -> &str {
        "Reads a memory file (MEMORY.md, USER.md or memory/...), or some of its lines: from (the first line, from 1) and lines (how many)."
    }

    fn input_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "path": { "type": "string", "description": "The memory file, relative to the workspace." },
                "from": { "type": "integer", "minimum": 1, "description": "The first line to read." },
                "lines": { "type": "integer", "minimum": 1, "description": "How many lines (120 unless given)." }
            },
            "required": ["path"],
            "additionalProperties": false
        })
    }

    fn side_effect(&self) -> SideEffect {
        SideEffect::ReadOnly
    }

    async fn call_in(&self, input: Value, context: &RunContext) -> Result<String, ToolError> {
        guard_private(input["path"].as_str().unwrap_or_default(), context)?;
        self.call(input).await
    }

    async fn call(&self, input: Value) -> Result<String, ToolError> {
        let path = input["path"].as_str().unwrap_or_default();
        if !is_memory_path(path) {
            return Err(ToolError::new(format!(
                "{path} is not a memory file (MEMORY.md, USER.md or memory/*.md); use read for other files"
            )));
        }
        let text =
            (self.0.workspace.read(path).await).map_err(|err| ToolError::new(err.to_string()))?;
        let Some(text) = text else {
            return Ok(json!({ "status": "not_found", "text": "", "path": path }).to_string());
        };
        let from = input["from"].as_u64().unwrap_or(1).max(1) as usize;
        let wanted = input["lines"]
            .as_u64()
            .map_or(DEFAULT_LINES, |n| n as usize);
        let lines: Vec<&str> = text.lines().collect();
        let mut out = String::new();
        let mut taken = 0;
        for line in lines.iter().skip(from - 1).take(wanted) {
            let line = cut_line(line, MAX_GET_CHARS / 2);
            if out.len() + line.len() + 1 > MAX_GET_CHARS {
                break;
            }
            out.push_str(&line);
            out.push('\n');
            taken += 1;
        }
        let next = from + taken;
        let mut answer =
            json!({ "status": "ok", "text": out, "path": path, "from": from, "lines": taken });
        if next <= lines.len() {
            answer["truncated"] = json!(true);
            answer["nextFrom"] = json!(next);
        }
        Ok(answer.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_civil_dates_in_utc() {
        assert_eq!(day_of(Timestamp(0)), "1970-01-01");
        assert_eq!(day_of(Timestamp(1_796_601_600_000)), "2026-12-07");
        assert_eq!(day_of(Timestamp(951_782_400_000)), "2000-02-29");
    }

    #[test]
    fn memory_paths_are_the_notes_and_the_two_files() {
        for yes in [
            "MEMORY.md",
            "USER.md",
            "memory/2026-12-07.md",
            "./memory/a/b.md",
        ] {
            assert!(is_memory_path(yes), "{yes}");
        }
        for no in ["SOUL.md", "memory/x.txt", "notes/memory.md", "AGENTS.md"] {
            assert!(!is_memory_path(no), "{no}");
        }
    }
}
