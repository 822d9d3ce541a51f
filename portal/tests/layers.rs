//! The portal's rooms depend on each other one way: the HTTP routes and the admin CLI
//! call the operations; the operations ask the decisions (`rules.rs`, pure) and hand
//! write jobs to storage; storage runs statements and decides nothing. This test reads
//! the sources and fails when a module reaches up.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

fn sources(path: &Path) -> Vec<PathBuf> {
    if path.is_file() {
        return vec![path.to_path_buf()];
    }
    let mut out = Vec::new();
    for entry in std::fs::read_dir(path).unwrap() {
        out.extend(sources(&entry.unwrap().path()));
    }
    out.retain(|p| p.extension().is_some_and(|e| e == "rs"));
    out
}

/// Every use of `crate::NAME` (or `super::super::`) in the files under `room`, for the
/// names in `above`.
fn reaches_up(room: &str, above: &[&str]) -> Vec<String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = Vec::new();
    for file in sources(&src.join(room)) {
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for name in above {
                if code.contains(&format!("crate::{name}")) {
                    found.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
                }
            }
        }
    }
    found
}

#[test]
fn the_decisions_are_pure_and_depend_on_nothing_of_the_portal() {
    let up = reaches_up(
        "rules.rs",
        &[
            "ops", "http", "admin", "storage", "db", "sql", "auth", "vendor",
        ],
    );
    assert!(up.is_empty(), "rules.rs must stay pure:\n{}", up.join("\n"));
}

#[test]
fn storage_runs_statements_and_knows_no_operation() {
    let up = reaches_up(
        "storage",
        &["ops", "http", "admin", "rules", "auth", "vendor"],
    );
    assert!(up.is_empty(), "storage reaches up:\n{}", up.join("\n"));
}

#[test]
fn operations_know_neither_the_http_routes_nor_the_admin_commands() {
    let up = reaches_up("ops", &["http", "admin"]);
    assert!(up.is_empty(), "the operations reach up:\n{}", up.join("\n"));
}

#[test]
fn the_http_routes_know_no_admin_command() {
    let mut up = reaches_up("http", &["admin"]);
    up.extend(reaches_up("http.rs", &["admin"]));
    assert!(
        up.is_empty(),
        "the HTTP routes reach into the CLI:\n{}",
        up.join("\n")
    );
}

#[test]
fn the_scan_finds_a_reference_where_there_is_one() {
    // (auth.rs names the operations' Actor: the scan must see such a line.)
    assert!(!reaches_up("auth.rs", &["ops"]).is_empty());
}
