//! molt-channels
