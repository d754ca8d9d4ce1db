//! OpenAI's streamed chunks: each line of the input is one SSE `data:` payload.
#![no_main]
use molt_ai_gateway::wire::openai::StreamDecoder;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut decoder = StreamDecoder::new("openai");
    let mut out = Vec::new();
    for line in text.lines() {
        if decoder.push(line, &mut out).is_err() {
            return;
        }
        out.clear();
    }
    let _ = decoder.finish(&mut out);
});
