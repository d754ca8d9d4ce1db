//! A request body the proxy receives, read as both API shapes.
#![no_main]
use molt_ai_gateway::wire::{anthropic, openai};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = openai::parse_request(data);
    let _ = anthropic::parse_request(data);
});
