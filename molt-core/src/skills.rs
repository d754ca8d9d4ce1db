//! Skills: `SKILL.md` files (YAML front matter, then a Markdown body) offered to the model.

use crate::store::{Store, StoreError};
use serde::Deserialize;

/// A skill the model can use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skill {
    /// Its name.
    pub name: String,
    /// When to use it.
    pub description: String,
    /// The instructions.
    pub body: String,
}

/// Why a skill file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SkillError {
    /// The file does not start with a `---` front-matter block.
    #[error("{path}: missing front matter (the file must start with a line '---')")]
    MissingFrontMatter {
        /// The file.
        path: String,
    },
    /// The front matter is not valid YAML with `name` and `description`.
    #[error("{path}: invalid front matter: {reason}")]
    InvalidFrontMatter {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The file is not UTF-8.
    #[error("{path}: not UTF-8 text")]
    NotText {
        /// The file.
        path: String,
    },
}

#[derive(Deserialize)]
struct FrontMatter {
    name: String,
    description: String,
}

impl Skill {
    /// Parses a `SKILL.md` file; `path` is used in errors.
    pub fn parse(path: &str, text: &str) -> Result<Skill, SkillError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let missing = || SkillError::MissingFrontMatter {
            path: path.to_owned(),
        };
        let after_open = text
            .strip_prefix("---")
            .and_then(|t| t.strip_prefix('\n').or_else(|| t.strip_prefix("\r\n")));
        let after_open = after_open.ok_or_else(missing)?;
        let (yaml, body) = split_at_closing_fence(after_open).ok_or_else(missing)?;
        let front: FrontMatter =
            serde_yaml_ng::from_str(yaml).map_err(|err| SkillError::InvalidFrontMatter {
                path: path.to_owned(),
                reason: err.to_string(),
            })?;
        if front.name.trim().is_empty() || front.description.trim().is_empty() {
            let reason = "name and description must not be empty".to_owned();
            return Err(SkillError::InvalidFrontMatter {
                path: path.to_owned(),
                reason,
            });
        }
        Ok(Skill {
            name: front.name.trim().to_owned(),
            description: front.description.trim().to_owned(),
            body: body.trim().to_owned(),
        })
    }
}

fn split_at_closing_fence(text: &str) -> Option<(&str, &str)> {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if line.trim_end() == "---" {
            return Some((&text[..offset], &text[offset + line.len()..]));
        }
        offset += line.len();
    }
    None
}

/// Loads every `<prefix>*/SKILL.md` from `store`. Files that do not parse are
/// returned as errors beside the skills that did, so one bad file hides nothing else.
pub async fn load_skills(
    store: &dyn Store,
    prefix: &str,
) -> Result<(Vec<Skill>, Vec<SkillError>), StoreError> {
    let mut skills = Vec::new();
    let mut errors = Vec::new();
    for key in store.list(prefix).await? {
        if !key.ends_with("/SKILL.md") {
            continue;
        }
        let Some(bytes) = store.get(&key).await? else {
            continue;
        };
        match std::str::from_utf8(&bytes) {
            Ok(text) => match Skill::parse(&key, text) {
                Ok(skill) => skills.push(skill),
                Err(err) => errors.push(err),
            },
            Err(_) => errors.push(SkillError::NotText { path: key }),
        }
    }
    Ok((skills, errors))
}

/// The system-prompt section that offers `skills` to the model.
pub fn skills_prompt(skills: &[Skill]) -> String {
    if skills.is_empty() {
        return String::new();
    }
    let mut prompt =
        String::from("\n\n# Skills\nUse a skill when the request matches its description.\n");
    for skill in skills {
        prompt.push_str(&format!(
            "\n## {}\n{}\n\n{}\n",
            skill.name, skill.description, skill.body
        ));
    }
    prompt
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_front_matter_and_body() {
        let text = "---\nname: weather\ndescription: >\n  Look up the weather\n---\nCall the weather tool.\n";
        let skill = Skill::parse("skills/weather/SKILL.md", text).unwrap();
        assert_eq!(skill.name, "weather");
        assert_eq!(skill.description, "Look up the weather");
        assert_eq!(skill.body, "Call the weather tool.");
        assert!(matches!(
            Skill::parse("x", "no front matter"),
            Err(SkillError::MissingFrontMatter { .. })
        ));
        assert!(matches!(
            Skill::parse("x", "---\nname: a\n---\n"),
            Err(SkillError::InvalidFrontMatter { .. })
        ));
    }
}
