//! Anthropic's streamed events: each line of the input is one SSE `data:` payload.
#![no_main]
use molt_ai_gateway::wire::anthropic::StreamDecoder;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut decoder = StreamDecoder::new("anthropic");
    let mut out = Vec::new();
    for line in text.lines() {
        if decoder.push(line, &mut out).is_err() {
            return;
        }
        out.clear();
    }
    let _ = decoder.finish();
});
