//! The layout's one rule, checked: no module of `proxy/src` imports a module that imports
//! it back, directly or through others (each file is a module; a folder's `mod.rs` is the
//! folder's module). Read from the source, so a new circle fails `cargo test` with its path.
//! A file's uses of what its own folder's `mod.rs` re-exports are not counted: a folder
//! and its files are one room.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Every module of the crate, by path (`http::wire`), with the modules it names.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    collect(&src, &mut files);
    let module_of = |file: &Path| -> String {
        let rel = file.strip_prefix(&src).unwrap_or(file).with_extension("");
        let parts: Vec<String> = rel
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .filter(|p| p != "mod" && p != "lib")
            .collect();
        parts.join("::")
    };
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(f)).collect();
    let mut graph = BTreeMap::new();
    for file in &files {
        if file.ends_with("main.rs") {
            continue; // the binary, not part of the library's graph
        }
        let me = module_of(file);
        let text = std::fs::read_to_string(file).unwrap_or_default();
        // Unit tests may reach anywhere; the layering is about the code they test.
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        let mut named = BTreeSet::new();
        for line in code.lines().map(str::trim).filter(|l| !l.starts_with("//")) {
            for path in paths_in(line, &me) {
                // The longest prefix of the path that is a module is the one it names.
                let parts: Vec<&str> = path.split("::").collect();
                let found = (1..=parts.len())
                    .rev()
                    .map(|n| parts[..n].join("::"))
                    .find(|p| modules.contains(p));
                if let Some(m) = found.filter(|m| *m != me && !me.starts_with(&format!("{m}::"))) {
                    named.insert(m);
                }
            }
        }
        graph.insert(me, named);
    }
    graph
}

fn collect(dir: &Path, files: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

/// The module paths a line names, made absolute: `crate::a::b`, `super::c` (from module
/// `me`), and the braces of a `use` expanded (`crate::a::{b, c::D}`).
fn paths_in(line: &str, me: &str) -> Vec<String> {
    let mut found = Vec::new();
    let parent = me.rsplit_once("::").map_or("", |(p, _)| p);
    for (start, _) in line
        .match_indices("crate::")
        .chain(line.match_indices("super::"))
    {
        if start > 0 && line[..start].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &line[start..];
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(rest.len());
        let path = rest[..end].trim_end_matches(':');
        let absolute = match path.strip_prefix("super::") {
            Some(tail) if parent.is_empty() => tail.to_string(),
            Some(tail) => format!("{parent}::{tail}"),
            None => path.trim_start_matches("crate::").to_string(),
        };
        if rest[end..].starts_with('{') {
            let inner = rest[end + 1..].split('}').next().unwrap_or("");
            for item in inner.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                let item = item.trim_start_matches("self");
                let item = item.trim_start_matches("::");
                found.push(
                    format!("{absolute}::{item}")
                        .trim_end_matches(':')
                        .to_string(),
                );
            }
        }
        found.push(absolute);
    }
    found
}

/// A circle in `graph`, as the modules along it, if there is one.
fn circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == node) {
            let mut circle = path[at..].to_vec();
            circle.push(node.to_string());
            return Some(circle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|start| visit(start, graph, &mut Vec::new(), &mut done))
}

#[test]
fn no_module_imports_itself_back() {
    let graph = imports();
    // The check sees what it should: the pipeline names its stages.
    let pipeline = &graph["pipeline"];
    for stage in [
        "cache::stage",
        "http::relay",
        "http::tunnel",
        "policy",
        "observe",
    ] {
        assert!(pipeline.contains(stage), "pipeline -> {stage} not seen");
    }
    if let Some(circle) = circle(&graph) {
        panic!(
            "modules import each other in a circle: {}",
            circle.join(" -> ")
        );
    }
}

#[test]
fn a_circle_is_found() {
    let mut graph = BTreeMap::new();
    graph.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    graph.insert("b".to_string(), BTreeSet::from(["c".to_string()]));
    graph.insert("c".to_string(), BTreeSet::from(["a".to_string()]));
    assert_eq!(
        circle(&graph).map(|c| c.join(" -> ")).as_deref(),
        Some("a -> b -> c -> a")
    );
    assert_eq!(
        paths_in("use crate::http::{self, wire::Reader, own};", "pipeline"),
        ["http", "http::wire::Reader", "http::own", "http"]
    );
    assert_eq!(
        paths_in("use super::entry::Entry;", "cache::store"),
        ["cache::entry::Entry"]
    );
}
