//! HTML to Markdown, for a model to read.

use std::sync::LazyLock;

/// Elements a reader gets nothing from: code, styling, embedded media and
/// navigation chrome.
const SKIPPED: [&str; 11] = [
    "head", "script", "style", "noscript", "template", "svg", "canvas", "iframe", "nav", "form",
    "button",
];

static CONVERTER: LazyLock<htmd::HtmlToMarkdown> = LazyLock::new(|| {
    htmd::HtmlToMarkdown::builder()
        .skip_tags(SKIPPED.to_vec())
        .build()
});

/// Converts an HTML document or fragment to Markdown: headings, paragraphs,
/// lists, links, tables and code kept; scripts, styles and navigation dropped.
pub fn html_to_markdown(html: &str) -> String {
    // html5ever parses from memory and does not fail on bad markup.
    let markdown = CONVERTER.convert(html).unwrap_or_default();
    collapse_blank_lines(markdown.trim())
}

/// The Markdown of a page, under its title as a heading (unless the content
/// already opens with that heading).
pub fn page_to_markdown(title: &str, html: &str) -> String {
    let body = html_to_markdown(html);
    let title = title.trim();
    if title.is_empty() || body.starts_with(&format!("# {title}")) {
        body
    } else {
        format!("# {title}\n\n{body}")
    }
}

/// At most one blank line in a row.
fn collapse_blank_lines(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank_run = 0;
    for line in text.lines() {
        let line = line.trim_end();
        blank_run = if line.is_empty() { blank_run + 1 } else { 0 };
        if blank_run <= 1 {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.truncate(out.trim_end().len());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_structure_and_drops_scripts_and_chrome() {
        let html = "<html><head><title>T</title><style>p{}</style></head><body>\
            <nav><a href='/'>Home</a></nav><h1>Hello</h1><p>Some <b>bold</b> text.</p>\
            <script>alert(1)</script><ul><li>one</li><li>two</li></ul></body></html>";
        assert_eq!(
            html_to_markdown(html),
            "# Hello\n\nSome **bold** text.\n\n*   one\n*   two"
        );
        assert!(page_to_markdown("Hello", html).starts_with("# Hello\n\nSome"));
        assert!(page_to_markdown("Site", html).starts_with("# Site\n\n# Hello"));
    }
}
