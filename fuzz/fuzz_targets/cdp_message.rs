//! CDP messages both ways: a `/cdp` client's request through the firewall,
//! and a browser's message as the client reads it.
#![no_main]
use molt_browser::EgressPolicy;
use molt_browser::firewall::CdpFirewall;
use std::sync::{Arc, LazyLock};

static FIREWALL: LazyLock<CdpFirewall> =
    LazyLock::new(|| CdpFirewall::new(Arc::new(EgressPolicy::default())));

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = FIREWALL.inspect(text);
    molt_browser::connection::fuzzing::browser_message(text);
});
