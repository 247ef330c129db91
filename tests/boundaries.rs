//! The module boundaries DESIGN.md draws, checked on the source: which of the crate's
//! top-level modules a module's code names (`crate::x` outside comments), and that these
//! dependencies have no cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level module → the top-level modules its code names.
fn dependencies() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in rust_files(&src) {
        let relative = file.strip_prefix(&src).unwrap();
        let first = relative.components().next().unwrap().as_os_str();
        let module = first.to_string_lossy().trim_end_matches(".rs").to_owned();
        if module == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let named = graph.entry(module.clone()).or_default();
        for line in text.lines() {
            let code = line.split("//").next().unwrap_or("");
            for (at, _) in code.match_indices("crate::") {
                let rest = &code[at + "crate::".len()..];
                let other: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !other.is_empty() && other != module && !code[..at].ends_with("tower_gateway::")
                {
                    named.insert(other);
                }
            }
        }
    }
    graph
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

/// A cycle through `start`, if any, as the modules on it.
fn cycle_from(
    graph: &BTreeMap<String, BTreeSet<String>>,
    start: &str,
    path: &mut Vec<String>,
) -> Option<Vec<String>> {
    for next in graph.get(path.last()?.as_str()).into_iter().flatten() {
        if next == start {
            let mut cycle = path.clone();
            cycle.push(next.clone());
            return Some(cycle);
        }
        if !path.contains(next) {
            path.push(next.clone());
            if let Some(cycle) = cycle_from(graph, start, path) {
                return Some(cycle);
            }
            path.pop();
        }
    }
    None
}

#[test]
fn no_two_modules_depend_on_each_other_through_any_chain() {
    let graph = dependencies();
    assert!(graph.contains_key("proxy") && graph.contains_key("config"));
    for module in graph.keys() {
        let cycle = cycle_from(&graph, module, &mut vec![module.clone()]);
        assert_eq!(cycle, None, "a cycle of module dependencies");
    }
}

#[test]
fn layers_and_services_never_import_the_configuration_the_admin_api_or_the_program() {
    let graph = dependencies();
    let below = [
        "server",
        "router",
        "proxy",
        "balance",
        "auth",
        "ratelimit",
        "circuit",
        "log",
        "request_id",
        "metrics",
        "body",
        "reject",
        "identity",
        "plugin",
    ];
    for module in below {
        for above in ["config", "admin", "program"] {
            assert!(
                !graph[module].contains(above),
                "{module} names crate::{above}: {:?}",
                graph[module]
            );
        }
    }
}

#[test]
fn the_readers_of_identity_depend_on_neither_auth_nor_server() {
    let graph = dependencies();
    let forbidden = [
        ("proxy", "server"),
        ("ratelimit", "auth"),
        ("balance", "auth"),
        ("log", "auth"),
        ("metrics", "auth"),
        ("identity", "auth"),
        ("identity", "server"),
        ("plugin", "config"),
    ];
    for (module, other) in forbidden {
        assert!(
            !graph[module].contains(other),
            "{module} names crate::{other}: {:?}",
            graph[module]
        );
    }
}
