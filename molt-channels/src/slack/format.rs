//! Slack's mrkdwn: Markdown turned into what Slack shows, and incoming text
//! turned back into plain characters.

/// Escapes Slack's three control characters: `&`, `<` and `>`.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Undoes [`escape`] on text Slack sent.
pub fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// Markdown (as models write it) in mrkdwn: `**bold**` becomes `*bold*`,
/// `[text](url)` becomes `<url|text>`, code is kept as it is, and the
/// control characters are escaped everywhere, so the model's text cannot
/// form a mention or a link of its own.
pub fn to_mrkdwn(markdown: &str) -> String {
    let mut out = String::with_capacity(markdown.len());
    let mut rest = markdown;
    while !rest.is_empty() {
        // Code: fenced blocks and inline spans, escaped but not converted.
        let fence = if rest.starts_with("```") { "```" } else { "`" };
        if rest.starts_with('`')
            && let Some(end) = rest[fence.len()..].find(fence)
        {
            let code_end = fence.len() + end + fence.len();
            out.push_str(&escape(&rest[..code_end]));
            rest = &rest[code_end..];
            continue;
        }
        if let Some(after) = rest.strip_prefix("**")
            && let Some(end) = after.find("**")
            && end > 0
        {
            out.push('*');
            out.push_str(&escape(&after[..end]));
            out.push('*');
            rest = &after[end + 2..];
            continue;
        }
        if let Some((text, url, used)) = link(rest) {
            out.push_str(&format!("<{}|{}>", escape(url), escape(text)));
            rest = &rest[used..];
            continue;
        }
        let c = rest.chars().next().expect("rest is not empty");
        out.push_str(&escape(c.encode_utf8(&mut [0; 4])));
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// A Markdown link at the start of `text`: its text, URL and length.
fn link(text: &str) -> Option<(&str, &str, usize)> {
    let after = text.strip_prefix('[')?;
    let close = after.find("](")?;
    let label = &after[..close];
    let url_start = 1 + close + 2;
    let url_len = text[url_start..].find(')')?;
    let url = &text[url_start..url_start + url_len];
    let plausible = url.starts_with("http://") || url.starts_with("https://");
    (plausible && !label.contains('[') && !url.contains(char::is_whitespace)).then_some((
        label,
        url,
        url_start + url_len + 1,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_becomes_mrkdwn_and_control_characters_are_escaped() {
        assert_eq!(to_mrkdwn("a **b** c"), "a *b* c");
        assert_eq!(
            to_mrkdwn("see [the docs](https://x.y/a_b) & more"),
            "see <https://x.y/a_b|the docs> &amp; more"
        );
        assert_eq!(
            to_mrkdwn("`a<b>` and ```x && y```"),
            "`a&lt;b&gt;` and ```x &amp;&amp; y```"
        );
        // The model cannot ping everyone or make up a mention.
        assert_eq!(
            to_mrkdwn("<!channel> <@U1>"),
            "&lt;!channel&gt; &lt;@U1&gt;"
        );
        assert_eq!(
            to_mrkdwn("[not a link](javascript:x)"),
            "[not a link](javascript:x)"
        );
        assert_eq!(to_mrkdwn("**"), "**");
        assert_eq!(unescape("a &lt;b&gt; &amp;lt;"), "a <b> &lt;");
    }
}
