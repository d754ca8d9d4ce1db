//! A Slack Socket Mode envelope and the event inside it.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| molt_channels::fuzzing::slack_envelope(data));
