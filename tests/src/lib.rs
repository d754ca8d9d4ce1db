//! Workspace-level tests for Molt: the layering rule (`tests/layering.rs`) and
//! the Control UI in headless Chromium (`browser/`, run by `scripts/test`).
//!
//! The repository README is included below so that its embedding example is
//! compiled and run as a doc test.
#![doc = include_str!("../../README.md")]
