//! The agent's file tools, with OpenClaw's names and parameters: `read`
//! (`path`, `offset` line, `limit` lines), `write` (`path`, `content`),
//! `edit` (`path`, `edits: [{oldText, newText}]`, each an exact text found
//! once) and `ls` (`path`, `limit`). Paths are relative to the workspace and
//! stay inside it ([`Workspace::key`]; the store refuses symlinks that lead
//! out); sizes are bounded; every write is durable.

use super::{Workspace, WorkspaceError, is_private, is_protected};
use crate::tool::{RunContext, SideEffect, Tool, ToolError};
use async_trait::async_trait;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::Arc;

/// The largest file `write` and `edit` produce.
pub const MAX_FILE_BYTES: usize = 1024 * 1024;
/// The most lines one `read` returns.
pub const MAX_READ_LINES: usize = 2_000;
/// The most bytes one `read` returns.
pub const MAX_READ_BYTES: usize = 50 * 1024;
/// The most entries one `ls` returns.
pub const MAX_LS_ENTRIES: usize = 500;

/// The four file tools over `workspace`.
pub fn file_tools(workspace: &Workspace) -> Vec<Arc<dyn Tool>> {
    vec![
        Arc::new(ReadTool(workspace.clone())),
        Arc::new(WriteTool(workspace.clone())),
        Arc::new(EditTool(workspace.clone())),
        Arc::new(LsTool(workspace.clone())),
    ]
}

fn refused(err: WorkspaceError) -> ToolError {
    ToolError::new(err.to_string())
}

/// Refuses reading a private file (`MEMORY.md`, `memory/`) outside a direct
/// conversation.
pub(super) fn guard_private(path: &str, context: &RunContext) -> Result<(), ToolError> {
    match is_private(path) && !context.is_private() {
        true => Err(ToolError::new(format!(
            "{path} is private: it is read only in direct conversations with the person you serve"
        ))),
        false => Ok(()),
    }
}

/// Refuses changing a protected file (who the assistant is, its skills, its
/// memory) outside a direct conversation.
fn guard_protected(path: &str, context: &RunContext) -> Result<(), ToolError> {
    match is_protected(path) && !context.is_private() {
        true => Err(ToolError::new(format!(
            "{path} can be changed only in a direct conversation with the person you serve"
        ))),
        false => Ok(()),
    }
}

fn path_of(input: &Value) -> Result<&str, ToolError> {
    input["path"]
        .as_str()
        .ok_or_else(|| ToolError::new("path must be a string"))
}

fn too_large(path: &str, bytes: usize) -> ToolError {
    ToolError::new(format!(
        "{path} would be {bytes} bytes; files in the workspace are at most {MAX_FILE_BYTES}"
    ))
}

/// `read`: a file's lines, a page at a time.
pub struct ReadTool(pub Workspace);

#[async_trait]
impl Tool for ReadTool {
    fn name(&self) -> &str {
        "read"
    }

    fn description(&self) -> &str {
        "Reads a text file in the workspace (a path relative to it). Long files come a page at a time: pass offset (the first line, from 1) and limit (lines) for the rest."
    }

    fn input_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "path": { "type": "string", "description": "The file, relative to the workspace." },
                "offset": { "type": "integer", "minimum": 1, "description": "The first line to read (1 is the first)." },
                "limit": { "type": "integer", "minimum": 1, "description": "How many lines to read." }
            },
            "required": ["path"],
            "additionalProperties": false
        })
    }

    fn side_effect(&self) -> SideEffect {
        SideEffect::ReadOnly
    }

    async fn call_in(&self, input: Value, context: &RunContext) -> Result<String, ToolError> {
        guard_private(path_of(&input)?, context)?;
        self.call(input).await
    }

    async fn call(&self, input: Value) -> Result<String, ToolError> {
        let path = path_of(&input)?;
        let text = self.0.read(path).await.map_err(refused)?;
        let text = text.ok_or_else(|| ToolError::new(format!("{path} does not exist")))?;
        let lines: Vec<&str> = text.lines().collect();
        let offset = input["offset"].as_u64().unwrap_or(1).max(1) as usize;
        if offset > lines.len().max(1) {
            return Err(ToolError::new(format!(
                "{path} has {} lines; offset {offset} is past the end",
                lines.len()
            )));
        }
        let limit = (input["limit"].as_u64()).map_or(MAX_READ_LINES, |n| n as usize);
        let mut page = String::new();
        let mut next = None;
        for (index, line) in lines.iter().enumerate().skip(offset - 1) {
            let taken = index + 1 - offset;
            let line = cut_line(line, MAX_READ_BYTES / 2);
            if taken >= limit.min(MAX_READ_LINES) || page.len() + line.len() + 1 > MAX_READ_BYTES {
                next = Some(index + 1);
                break;
            }
            page.push_str(&line);
            page.push('\n');
        }
        if let Some(next) = next {
            page.push_str(&format!(
                "\n[{} lines in all; more from offset={next}]",
                lines.len()
            ));
        }
        Ok(page)
    }
}

/// `write`: creates or replaces a file.
pub struct WriteTool(pub Workspace);

#[async_trait]
impl Tool for WriteTool {
    fn name(&self) -> &str {
        "write"
    }

    fn description(&self) -> &str {
        "Writes a text file in the workspace (a path relative to it), creating folders as needed and replacing what was there."
    }

    fn input_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "path": { "type": "string", "description": "The file, relative to the workspace." },
                "content": { "type": "string", "description": "The whole new content." }
            },
            "required": ["path", "content"],
            "additionalProperties": false
        })
    }

    fn side_effect(&self) -> SideEffect {
        SideEffect::LocalWrite
    }

    async fn call_in(&self, input: Value, context: &RunContext) -> Result<String, ToolError> {
        guard_protected(path_of(&input)?, context)?;
        self.call(input).await
    }

    async fn call(&self, input: Value) -> Result<String, ToolError> {
        let path = path_of(&input)?;
        let content = input["content"]
            .as_str()
            .ok_or_else(|| ToolError::new("content must be a string"))?;
        if content.len() > MAX_FILE_BYTES {
            return Err(too_large(path, content.len()));
        }
        self.0.write(path, content).await.map_err(refused)?;
        Ok(format!("wrote {} bytes to {path}", content.len()))
    }
}

/// `edit`: exact replacements, each of a text found exactly once.
pub struct EditTool(pub Workspace);

#[async_trait]
impl Tool for EditTool {
    fn name(&self) -> &str {
        "edit"
    }

    fn description(&self) -> &str {
        "Edits a text file in the workspace: each edit replaces oldText, which must appear exactly once in the file as it was, with newText. Edits must not overlap."
    }

    fn input_schema(&self) -> Value {
        let edit = json!({
            "type": "object",
            "properties": {
                "oldText": { "type": "string", "minLength": 1, "description": "The exact text to replace." },
                "newText": { "type": "string", "description": "What replaces it." }
            },
            "required": ["oldText", "newText"],
            "additionalProperties": false
        });
        json!({
            "type": "object",
            "properties": {
                "path": { "type": "string", "description": "The file, relative to the workspace." },
                "edits": { "type": "array", "items": edit, "minItems": 1 },
                "oldText": { "type": "string", "minLength": 1, "description": "One edit's exact text (instead of edits)." },
                "newText": { "type": "string", "description": "One edit's replacement (instead of edits)." }
            },
            "required": ["path"],
            "additionalProperties": false
        })
    }

    fn side_effect(&self) -> SideEffect {
        SideEffect::LocalWrite
    }

    async fn call_in(&self, input: Value, context: &RunContext) -> Result<String, ToolError> {
        guard_protected(path_of(&input)?, context)?;
        self.call(input).await
    }

    async fn call(&self, input: Value) -> Result<String, ToolError> {
        let path = path_of(&input)?;
        let mut edits: Vec<(String, String)> = (input["edits"].as_array().into_iter().flatten())
            .map(|edit| (text(&edit["oldText"]), text(&edit["newText"])))
            .collect();
        if let Some(old) = input["oldText"].as_str() {
            edits.push((old.to_owned(), text(&input["newText"])));
        }
        if edits.is_empty() {
            return Err(ToolError::new("give edits: [{oldText, newText}]"));
        }
        let count = edits.len();
        let edited = self.0.update(path, |original| {
            let original = original.ok_or_else(|| format!("{path} does not exist"))?;
            let edited = apply(original, &edits)?;
            if edited.len() > MAX_FILE_BYTES {
                return Err(too_large(path, edited.len()).message);
            }
            Ok((edited, ()))
        });
        edited.await.map_err(refused)?.map_err(ToolError::new)?;
        Ok(format!("applied {count} edit(s) to {path}"))
    }
}

/// `line`, cut to at most `max` bytes (on a character boundary) with a
/// marker when longer.
pub(super) fn cut_line(line: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if line.len() <= max {
        return line.into();
    }
    let mut end = max;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{} [line cut: {} bytes in all]", &line[..end], line.len()).into()
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_owned()
}

/// `original` with each `(old, new)` applied, every `old` found exactly
/// once in `original` and no two overlapping.
fn apply(original: &str, edits: &[(String, String)]) -> Result<String, String> {
    let mut spans = Vec::new();
    for (old, new) in edits {
        if old.is_empty() {
            return Err("oldText must not be empty".into());
        }
        let mut found = original.match_indices(old.as_str());
        let Some((start, _)) = found.next() else {
            return Err(format!("could not find this exact text: {old:?}"));
        };
        let more = found.count();
        if more > 0 {
            return Err(format!(
                "found {} occurrences of {old:?}; give more context so it is unique",
                more + 1
            ));
        }
        spans.push((start, start + old.len(), new.as_str()));
    }
    spans.sort_by_key(|(start, _, _)| *start);
    if spans.windows(2).any(|pair| pair[0].1 > pair[1].0) {
        return Err("two edits overlap; merge them into one".into());
    }
    let mut edited = String::with_capacity(original.len());
    let mut at = 0;
    for (start, end, new) in spans {
        edited.push_str(&original[at..start]);
        edited.push_str(new);
        at = end;
    }
    edited.push_str(&original[at..]);
    Ok(edited)
}

/// `ls`: the files and folders in a folder.
pub struct LsTool(pub Workspace);

#[async_trait]
impl Tool for LsTool {
    fn name(&self) -> &str {
        "ls"
    }

    fn description(&self) -> &str {
        "Lists a folder of the workspace (the whole workspace without a path): files, and folders ending in '/'."
    }

    fn input_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "path": { "type": "string", "description": "The folder, relative to the workspace." },
                "limit": { "type": "integer", "minimum": 1, "description": "The most entries to list." }
            },
            "additionalProperties": false
        })
    }

    fn side_effect(&self) -> SideEffect {
        SideEffect::ReadOnly
    }

    async fn call(&self, input: Value) -> Result<String, ToolError> {
        let dir = input["path"].as_str().unwrap_or("");
        if !matches!(dir.trim(), "" | "." | "./") {
            Workspace::key(dir).map_err(refused)?;
        }
        let limit =
            (input["limit"].as_u64()).map_or(MAX_LS_ENTRIES, |n| (n as usize).min(MAX_LS_ENTRIES));
        let files = self.0.files(dir).await.map_err(refused)?;
        let base = match dir.trim().trim_start_matches("./").trim_end_matches('/') {
            "" | "." => String::new(),
            dir => format!("{dir}/"),
        };
        let entries: BTreeSet<String> = files
            .iter()
            .filter_map(|file| file.strip_prefix(&base))
            .map(|rest| match rest.split_once('/') {
                Some((folder, _)) => format!("{folder}/"),
                None => rest.to_owned(),
            })
            .collect();
        if entries.is_empty() {
            return Ok(format!(
                "{} is empty or does not exist",
                if base.is_empty() {
                    "the workspace"
                } else {
                    dir
                }
            ));
        }
        let shown: Vec<&str> = entries.iter().take(limit).map(String::as_str).collect();
        let mut out = shown.join("\n");
        if entries.len() > shown.len() {
            out.push_str(&format!("\n[{} entries in all]", entries.len()));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::apply;

    fn edit(old: &str, new: &str) -> (String, String) {
        (old.to_owned(), new.to_owned())
    }

    #[test]
    fn edits_replace_unique_texts_of_the_original() {
        let text = "name: \nzone: \nname: x";
        assert_eq!(
            apply("a b c", &[edit("a", "A"), edit("c", "C")]).unwrap(),
            "A b C"
        );
        assert!(
            apply(text, &[edit("name:", "n")])
                .unwrap_err()
                .contains("2 occurrences")
        );
        assert!(
            apply(text, &[edit("absent", "n")])
                .unwrap_err()
                .contains("could not find")
        );
        assert!(
            apply("abcdef", &[edit("abc", "1"), edit("cde", "2")])
                .unwrap_err()
                .contains("overlap")
        );
        // Matched against the original: a replacement cannot create a match.
        assert_eq!(
            apply("ab", &[edit("a", "b"), edit("b", "c")]).unwrap(),
            "bc"
        );
    }
}
