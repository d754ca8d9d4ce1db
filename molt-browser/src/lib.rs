//! molt-browser
