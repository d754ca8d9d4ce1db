//! End-to-end tests for Molt live in `tests/`.
