//! The layering rule of `shared/DESIGN.md`, checked on every crate's manifest
//! and on `molt-core`'s resolved dependency tree:
//! - a library crate depends on no sibling but `molt-core`;
//! - `molt-core` depends on no async runtime or network crate, directly or not.

use std::path::{Path, PathBuf};
use std::process::Command;

const LIBRARIES: [&str; 5] = [
    "molt-core",
    "molt-channels",
    "molt-storage",
    "molt-browser",
    "molt-ai-gateway",
];
const FORBIDDEN_IN_CORE: [&str; 9] = [
    "tokio",
    "reqwest",
    "hyper",
    "tungstenite",
    "tokio-tungstenite",
    "axum",
    "async-std",
    "smol",
    "mio",
];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// The names of every dependency a manifest declares, in any dependency table.
fn declared_dependencies(manifest: &toml::Table) -> Vec<String> {
    let mut tables: Vec<&toml::Table> = Vec::new();
    for section in ["dependencies", "dev-dependencies", "build-dependencies"] {
        tables.extend(manifest.get(section).and_then(|v| v.as_table()));
    }
    // Target-specific tables: [target.'cfg(..)'.dependencies]
    if let Some(targets) = manifest.get("target").and_then(|v| v.as_table()) {
        for target in targets.values().filter_map(|v| v.as_table()) {
            for section in ["dependencies", "dev-dependencies", "build-dependencies"] {
                tables.extend(target.get(section).and_then(|v| v.as_table()));
            }
        }
    }
    tables
        .iter()
        .flat_map(|table| table.iter())
        .map(|(name, spec)| {
            spec.get("package")
                .and_then(|p| p.as_str())
                .unwrap_or(name)
                .to_owned()
        })
        .collect()
}

fn manifest(crate_dir: &str) -> toml::Table {
    let path = workspace_root().join(crate_dir).join("Cargo.toml");
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    text.parse()
        .unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

#[test]
fn library_crates_depend_only_on_molt_core_among_siblings() {
    let mut violations = Vec::new();
    for library in LIBRARIES {
        for dependency in declared_dependencies(&manifest(library)) {
            let sibling = LIBRARIES.contains(&dependency.as_str()) || dependency == "moltworker";
            if sibling && (dependency != "molt-core" || library == "molt-core") {
                violations.push(format!("{library} depends on {dependency}"));
            }
        }
    }
    assert!(violations.is_empty(), "layering violated: {violations:?}");
}

#[test]
fn molt_core_declares_no_runtime_or_network_crate() {
    let declared = declared_dependencies(&manifest("molt-core"));
    let bad: Vec<_> = declared
        .iter()
        .filter(|d| FORBIDDEN_IN_CORE.contains(&d.as_str()))
        .collect();
    assert!(bad.is_empty(), "molt-core declares {bad:?}");
}

#[test]
fn molt_core_pulls_in_no_runtime_or_network_crate_transitively() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .current_dir(workspace_root())
        .args([
            "tree",
            "-p",
            "molt-core",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
            "--offline",
        ])
        .output()
        .expect("cargo tree runs");
    assert!(
        output.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tree = String::from_utf8(output.stdout).unwrap();
    let names: Vec<&str> = tree
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert!(names.contains(&"serde"), "the tree was read: {names:?}");
    let bad: Vec<_> = names
        .iter()
        .filter(|n| FORBIDDEN_IN_CORE.contains(n))
        .collect();
    assert!(
        bad.is_empty(),
        "molt-core depends on {bad:?} through its dependencies"
    );
}

#[test]
fn the_rule_catches_a_violation() {
    // The checker itself must be able to fail: feed it a manifest that breaks the rule.
    let bad: toml::Table = "[dependencies]\nmolt-storage = { path = \"../molt-storage\" }\n[target.'cfg(unix)'.dependencies]\nnet = { package = \"tokio\", version = \"1\" }\n"
        .parse()
        .unwrap();
    let declared = declared_dependencies(&bad);
    assert!(declared.contains(&"molt-storage".to_owned()));
    assert!(
        declared.contains(&"tokio".to_owned()),
        "renamed and target-specific dependencies are seen"
    );
}
