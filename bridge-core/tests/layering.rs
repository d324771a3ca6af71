//! The workspace's layering rules, checked on the source text so they stay true:
//! pipeline types at the core root depend on no transport; the spool imports no
//! transport; `hub/` (edgeHub) and `upstream/` (other brokers, stdout) never import each
//! other; protocol modules reach the hub only through the runtime's device routes.

use std::path::{Path, PathBuf};

/// `(files under this path, forbidden path prefixes, why)`.
const RULES: &[(&str, &[&str], &str)] = &[
    (
        "bridge-core/src/spool",
        &[
            "crate::hub",
            "crate::upstream",
            "crate::mqtt",
            "crate::link",
            "crate::forwarder",
            "rumqttc",
        ],
        "the spool stores messages; it knows no transport",
    ),
    (
        "bridge-core/src/hub",
        &["crate::upstream"],
        "edgeHub's session and the other upstreams share only link and mqtt",
    ),
    (
        "bridge-core/src/upstream",
        &["crate::hub"],
        "the other upstreams and edgeHub's session share only link and mqtt",
    ),
    (
        "bridge-core/src/message.rs",
        &[
            "crate::hub",
            "crate::upstream",
            "crate::spool",
            "crate::runtime",
        ],
        "pipeline types sit below every layer",
    ),
    (
        "bridge-core/src/methods.rs",
        &["crate::hub", "crate::upstream", "crate::runtime"],
        "pipeline types sit below every layer",
    ),
    (
        "bridge-core/src/link.rs",
        &["crate::hub", "crate::upstream", "crate::spool"],
        "pipeline types sit below every layer",
    ),
    (
        "bridge-core/src/backoff.rs",
        &["crate::"],
        "pipeline types sit below every layer",
    ),
    (
        "modules",
        &[
            "bridge_core::hub",
            "bridge_core::upstream",
            "bridge_core::mqtt",
        ],
        "modules reach the hub only through the runtime and its device routes",
    ),
];

fn rust_files(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_file() {
        if path.extension().is_some_and(|e| e == "rs") {
            out.push(path.to_owned());
        }
        return;
    }
    let Ok(entries) = std::fs::read_dir(path) else {
        return;
    };
    for entry in entries.flatten() {
        let p = entry.path();
        if p.file_name().is_some_and(|n| n == "target") {
            continue;
        }
        rust_files(&p, out);
    }
}

/// Violations of one rule in one source text: `(line number, line)`.
fn violations<'a>(text: &'a str, forbidden: &[&str]) -> Vec<(usize, &'a str)> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| {
            let code = line.trim_start();
            !code.starts_with("//") && forbidden.iter().any(|f| code.contains(f))
        })
        .map(|(i, line)| (i + 1, line))
        .collect()
}

#[test]
fn layering_rules_hold() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let mut problems = Vec::new();
    for (scope, forbidden, why) in RULES {
        let mut files = Vec::new();
        rust_files(&root.join(scope), &mut files);
        assert!(!files.is_empty(), "no Rust files under {scope}");
        for file in files {
            let text = std::fs::read_to_string(&file).expect("readable source");
            for (n, line) in violations(&text, forbidden) {
                problems.push(format!(
                    "{}:{n}: {} ({why})",
                    file.strip_prefix(root).unwrap_or(&file).display(),
                    line.trim()
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "layering rules broken:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_checker_sees_a_violation() {
    let text =
        "use crate::message::Message;\nuse crate::hub::HubSession;\n// crate::hub in a comment\n";
    assert_eq!(
        violations(text, &["crate::hub"]),
        vec![(2, "use crate::hub::HubSession;")]
    );
}
