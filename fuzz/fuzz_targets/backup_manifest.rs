//! A backup manifest read from a bucket, parsed and checked as restore does.
#![no_main]
use molt_storage::mirror::{Excludes, Manifest, RestoreLimits, validate_manifest};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(manifest) = serde_json::from_slice::<Manifest>(data) {
        let _ = validate_manifest(&manifest, &RestoreLimits::default(), &Excludes::default());
    }
});
