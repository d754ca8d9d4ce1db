//! The model's Markdown turned into Telegram's MarkdownV2: code blocks,
//! inline code, bold and links keep their meaning; every other character
//! Telegram reserves is escaped, so a reply never fails to parse for a stray
//! `.` or `!`.

/// Characters MarkdownV2 reserves in ordinary text (the backslash too).
const RESERVED: &[char] = &[
    '_', '*', '[', ']', '(', ')', '~', '`', '>', '#', '+', '-', '=', '|', '{', '}', '.', '!', '\\',
];

/// Escapes ordinary text.
pub fn escape(text: &str) -> String {
    escape_set(text, RESERVED)
}

/// Escapes the body of a code span or block: only `` ` `` and `\`.
pub fn escape_code(text: &str) -> String {
    escape_set(text, &['`', '\\'])
}

/// Escapes the URL part of an inline link: only `)` and `\`.
pub fn escape_link(url: &str) -> String {
    escape_set(url, &[')', '\\'])
}

fn escape_set(text: &str, reserved: &[char]) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for c in text.chars() {
        if reserved.contains(&c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Converts Markdown to MarkdownV2. Unclosed markers are kept as literal
/// characters.
pub fn to_markdown_v2(markdown: &str) -> String {
    let mut out = String::with_capacity(markdown.len() + markdown.len() / 8);
    let mut rest = markdown;
    while !rest.is_empty() {
        if let Some((converted, after)) = code_block(rest)
            .or_else(|| delimited(rest, "`", |body| format!("`{}`", escape_code(body))))
            .or_else(|| delimited(rest, "**", |body| format!("*{}*", escape(body))))
            .or_else(|| link(rest))
        {
            out.push_str(&converted);
            rest = after;
            continue;
        }
        let c = rest.chars().next().expect("rest is not empty");
        out.push_str(&escape(&rest[..c.len_utf8()]));
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// A fenced block at the start of `text`: ```` ```lang\nbody``` ````.
fn code_block(text: &str) -> Option<(String, &str)> {
    let after_fence = text.strip_prefix("```")?;
    let close = after_fence.find("```")?;
    let inner = &after_fence[..close];
    let (language, body) = match inner.split_once('\n') {
        Some((language, body))
            if language
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-_#.".contains(c)) =>
        {
            (language, body)
        }
        _ => ("", inner),
    };
    let block = format!("```{language}\n{}```", escape_code(body));
    Some((block, &after_fence[close + 3..]))
}

/// `marker body marker` at the start of `text`, with a non-empty body on one
/// line, rendered by `render`.
fn delimited<'a>(
    text: &'a str,
    marker: &str,
    render: impl Fn(&str) -> String,
) -> Option<(String, &'a str)> {
    let after = text.strip_prefix(marker)?;
    let close = after.find(marker)?;
    let body = &after[..close];
    if body.is_empty() || body.contains('\n') {
        return None;
    }
    Some((render(body), &after[close + marker.len()..]))
}

/// `[text](url)` at the start of `text`.
fn link(text: &str) -> Option<(String, &str)> {
    let after = text.strip_prefix('[')?;
    let close = after.find("](")?;
    let label = &after[..close];
    let rest = &after[close + 2..];
    // The closing parenthesis that balances: URLs may hold pairs of their own.
    let mut depth = 0usize;
    let end = rest.char_indices().find_map(|(index, c)| match c {
        '(' => {
            depth += 1;
            None
        }
        ')' if depth == 0 => Some(index),
        ')' => {
            depth -= 1;
            None
        }
        _ => None,
    })?;
    let url = &rest[..end];
    if label.is_empty()
        || label.contains('\n')
        || url.is_empty()
        || url.contains(char::is_whitespace)
    {
        return None;
    }
    let converted = format!("[{}]({})", escape(label), escape_link(url));
    Some((converted, &rest[end + 1..]))
}

/// The length of `text` in UTF-16 code units, as Telegram counts entities.
pub fn utf16_len(text: &str) -> usize {
    text.encode_utf16().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_text_escapes_every_reserved_character() {
        assert_eq!(
            to_markdown_v2("1+1=2. Done! (really) a_b #tag {x} |y| ~z~ > q - r \\"),
            "1\\+1\\=2\\. Done\\! \\(really\\) a\\_b \\#tag \\{x\\} \\|y\\| \\~z\\~ \\> q \\- r \\\\"
        );
    }

    #[test]
    fn code_keeps_its_text_and_escapes_only_backticks_and_backslashes() {
        assert_eq!(to_markdown_v2("run `a.b(c)` now"), "run `a.b(c)` now");
        assert_eq!(
            to_markdown_v2("```rust\nlet x = \"\\\\\";\n```"),
            "```rust\nlet x = \"\\\\\\\\\";\n```"
        );
    }

    #[test]
    fn bold_and_links_keep_their_meaning() {
        assert_eq!(to_markdown_v2("**Note.**"), "*Note\\.*");
        assert_eq!(
            to_markdown_v2("see [the docs](https://example.com/a_(b))"),
            "see [the docs](https://example.com/a_(b\\))"
        );
    }

    #[test]
    fn unclosed_markers_are_literal() {
        assert_eq!(to_markdown_v2("a ` b ** c [d"), "a \\` b \\*\\* c \\[d");
        assert_eq!(to_markdown_v2("```no end"), "\\`\\`\\`no end");
    }

    #[test]
    fn utf16_counts_surrogate_pairs_twice() {
        assert_eq!(utf16_len("a😀"), 3);
    }
}
