//! A frame on the gateway's WebSocket protocol.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        moltworker::protocol::fuzz_frame(text);
    }
});
