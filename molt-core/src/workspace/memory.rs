//! Memory: the daily notes (`memory/YYYY-MM-DD.md`), `MEMORY.md` and
//! `USER.md`. `memory_search` ranks their lines against a query with BM25
//! (an index kept in memory and brought up to date with the files before
//! each search, so edits made any way are found); `memory_get` reads a file
//! or a range of its lines. When a long conversation is compacted, its
//! summary is appended to the day's note first ([`Notebook`]), so nothing
//! the person said disappears from memory.

use super::{Workspace, WorkspaceError};
use crate::platform::Timestamp;
use crate::session::SessionKey;
use crate::tool::{SideEffect, Tool, ToolError};
use async_trait::async_trait;
use bm25::{Language, SearchEngine, SearchEngineBuilder};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

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

/// A line of a memory file.
type LineId = (String, usize);

/// The index, and what it was built from.
struct Index {
    engine: SearchEngine<LineId>,
    /// Each file's content hash and line count.
    files: HashMap<String, (u64, usize)>,
}

/// The memory of a workspace, searchable. Cheap to clone (clones share the index).
#[derive(Clone)]
pub struct Memory {
    workspace: Workspace,
    index: Arc<Mutex<Index>>,
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
        let engine = SearchEngineBuilder::<LineId>::with_avgdl(12.0)
            .language_mode(Language::English)
            .build();
        let index = Index {
            engine,
            files: HashMap::new(),
        };
        Self {
            workspace,
            index: Arc::new(Mutex::new(index)),
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
        let mut texts = Vec::new();
        for path in self.files().await? {
            // A file that is not text is not memory.
            if let Ok(Some(text)) = self.workspace.read(&path).await {
                texts.push((path, text));
            }
        }
        let mut index = self.index.lock().unwrap_or_else(|e| e.into_inner());
        index.update(texts);
        Ok((index.engine.search(query, limit))
            .into_iter()
            .map(|result| {
                let (path, line) = result.document.id;
                let snippet = result
                    .document
                    .contents
                    .chars()
                    .take(SNIPPET_CHARS)
                    .collect();
                Found {
                    path,
                    line,
                    score: result.score,
                    snippet,
                }
            })
            .collect())
    }

    /// Appends `text` to the note of the day of `at` (UTC), under a heading.
    pub async fn append_note(
        &self,
        at: Timestamp,
        heading: &str,
        text: &str,
    ) -> Result<(), WorkspaceError> {
        let path = format!("memory/{}.md", day_of(at));
        let mut note = self.workspace.read(&path).await?.unwrap_or_default();
        if !note.is_empty() && !note.ends_with('\n') {
            note.push('\n');
        }
        if !note.is_empty() {
            note.push('\n');
        }
        note.push_str(&format!("## {heading}\n{}\n", text.trim_end()));
        self.workspace.write(&path, &note).await
    }
}

impl Index {
    /// Brings the index up to date with `texts` (every memory file's path and text).
    fn update(&mut self, texts: Vec<(String, String)>) {
        let present: HashMap<&str, ()> =
            texts.iter().map(|(path, _)| (path.as_str(), ())).collect();
        let gone: Vec<String> = (self.files.keys())
            .filter(|path| !present.contains_key(path.as_str()))
            .cloned()
            .collect();
        for path in gone {
            self.forget(&path);
        }
        for (path, text) in texts {
            let hash = {
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                text.hash(&mut hasher);
                hasher.finish()
            };
            if self
                .files
                .get(&path)
                .is_some_and(|(known, _)| *known == hash)
            {
                continue;
            }
            self.forget(&path);
            let mut count = 0;
            for (n, line) in text.lines().enumerate() {
                count = n + 1;
                if !line.trim().is_empty() {
                    self.engine
                        .upsert(bm25::Document::new((path.clone(), n + 1), line));
                }
            }
            self.files.insert(path, (hash, count));
        }
    }

    fn forget(&mut self, path: &str) {
        if let Some((_, count)) = self.files.remove(path) {
            for line in 1..=count {
                self.engine.remove(&(path.to_owned(), line));
            }
        }
    }
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
        let query = input["query"].as_str().unwrap_or_default();
        let limit = input["maxResults"]
            .as_u64()
            .map_or(DEFAULT_RESULTS, |n| (n as usize).min(MAX_RESULTS));
        let found =
            (self.0.search(query, limit).await).map_err(|err| ToolError::new(err.to_string()))?;
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
            if out.len() + line.len() + 1 > MAX_GET_CHARS && taken > 0 {
                break;
            }
            out.push_str(line);
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
