//! molt-storage
