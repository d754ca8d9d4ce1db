//! The pages a person sees from the Worker itself: the loading page while a
//! container starts, and the configuration error page.

/// The page shown while the gateway's container starts; it polls `/health`
/// and reloads once the gateway runs.
pub const LOADING: &str = include_str!("../pages/loading.html");

/// The configuration error page, naming each missing or invalid variable.
pub fn config_error(missing: &[String], invalid: &[String]) -> String {
    let items = |list: &[String]| -> String {
        list.iter()
            .map(|item| format!("<li><code>{}</code></li>", escape(item)))
            .collect()
    };
    let mut body = String::new();
    if !missing.is_empty() {
        body += &format!(
            "<p>These secrets are not set:</p><ul>{}</ul>\
             <p>Set each with <code>npx wrangler secret put &lt;NAME&gt;</code>, then reload this page.</p>",
            items(missing)
        );
    }
    if !invalid.is_empty() {
        body += &format!(
            "<p>These variables cannot be used:</p><ul>{}</ul>",
            items(invalid)
        );
    }
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Configuration needed</title>\
         <style>body{{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem}}code{{background:#f2f2f2;padding:0 .25rem}}</style>\
         </head><body><h1>This gateway needs configuration</h1>{body}\
         <p>See DEPLOY.md, section \u{201c}Secrets\u{201d}.</p></body></html>"
    )
}

/// `text` safe inside HTML.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
