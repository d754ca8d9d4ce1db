//! A Telegram update, as a webhook body or an item of `getUpdates`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| molt_channels::fuzzing::telegram_update(data));
