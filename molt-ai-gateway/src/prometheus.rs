//! Prometheus' text exposition format: the pieces every `/metrics` in the
//! workspace writes with.

use std::fmt::Write;

/// Latency bucket bounds in seconds, from a millisecond to half a minute.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A label value escaped for the text format.
pub fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The `# HELP` and `# TYPE` lines of a metric (`kind`: counter, gauge, histogram).
pub fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// One sample: `name{labels} value` (`labels` already escaped, may be empty).
pub fn sample(out: &mut String, name: &str, labels: &str, value: impl std::fmt::Display) {
    match labels.is_empty() {
        true => {
            let _ = writeln!(out, "{name} {value}");
        }
        false => {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    }
}

/// A histogram's series over [`LATENCY_BUCKETS`]: `in_bucket[i]` counts the
/// observations that fell in bucket `i` alone (not cumulative).
pub fn histogram(
    out: &mut String,
    name: &str,
    labels: &str,
    in_bucket: &[u64],
    count: u64,
    sum: f64,
) {
    let separator = if labels.is_empty() { "" } else { "," };
    let mut cumulative = 0;
    for (bound, in_bucket) in LATENCY_BUCKETS.iter().zip(in_bucket) {
        cumulative += in_bucket;
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{separator}le=\"{bound}\"}} {cumulative}"
        );
    }
    let _ = writeln!(
        out,
        "{name}_bucket{{{labels}{separator}le=\"+Inf\"}} {count}"
    );
    sample(out, &format!("{name}_sum"), labels, sum);
    sample(out, &format!("{name}_count"), labels, count);
}

/// The bucket of [`LATENCY_BUCKETS`] `seconds` falls in; `None` past the
/// largest bound (such an observation counts only in `+Inf`).
pub fn bucket_of(seconds: f64) -> Option<usize> {
    LATENCY_BUCKETS.iter().position(|bound| seconds <= *bound)
}
