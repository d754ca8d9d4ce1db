//! A Discord gateway payload (a `MESSAGE_CREATE` normalized).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| molt_channels::fuzzing::discord_payload(data));
