//! The product's modules depend on each other one way only: this reads every `crate::...` path in
//! `src/` (comments left out) and fails on an import cycle between top-level modules, naming it.
//! It also pins the few directions README's code map promises (config and events depend on
//! nothing of ours; web never reaches the job storage's workers; the queue never calls HTTP).

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

type Graph = BTreeMap<String, BTreeSet<String>>;

#[test]
fn top_level_modules_form_no_import_cycle() {
    let graph = module_graph();
    assert!(graph.contains_key("web"), "read nothing: {graph:?}");
    if let Some(cycle) = find_cycle(&graph) {
        panic!(
            "import cycle: {}\nthe whole graph: {graph:#?}",
            cycle.join(" -> ")
        );
    }
}

#[test]
fn the_code_map_directions_hold() {
    let graph = module_graph();
    let uses = |from: &str| graph.get(from).cloned().unwrap_or_default();
    assert!(
        uses("config").is_empty(),
        "config uses {:?}",
        uses("config")
    );
    assert!(
        uses("events").is_empty(),
        "events uses {:?}",
        uses("events")
    );
    for lower in [
        "events",
        "consumers",
        "queue",
        "users",
        "mail",
        "db",
        "signup",
    ] {
        assert!(
            !uses(lower).contains("web") && !uses(lower).contains("app"),
            "{lower} reaches up into web/app: {:?}",
            uses(lower)
        );
    }
    assert!(
        !uses("consumers").contains("queue"),
        "consumers must not know the job storage"
    );
    assert!(!uses("signup").contains("web"));
}

fn module_graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph = Graph::new();
    for file in rust_files(&src) {
        let relative = file.strip_prefix(&src).expect("under src");
        let first = relative
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .unwrap_or_default();
        let module = first.trim_end_matches(".rs").to_owned();
        if module == "main" || module == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("readable source");
        let code: String = text
            .lines()
            .filter(|line| !line.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let entry = graph.entry(module.clone()).or_default();
        for target in crate_paths(&code) {
            if target != module {
                entry.insert(target);
            }
        }
    }
    graph
}

/// The first segment of every `crate::x` path, including each item of `crate::{a, b::c}`.
fn crate_paths(code: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut item_start = true;
            let mut ident = String::new();
            for c in group.chars() {
                if depth == 1 && item_start {
                    if c.is_alphanumeric() || c == '_' {
                        ident.push(c);
                    } else if !ident.is_empty() {
                        found.push(std::mem::take(&mut ident));
                        item_start = false;
                    }
                }
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 1 => item_start = true,
                    _ => {}
                }
                if depth == 0 {
                    break;
                }
            }
            if !ident.is_empty() {
                found.push(ident);
            }
        } else {
            let ident: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            found.push(ident);
        }
    }
    found.retain(|name| !name.is_empty() && name != "self");
    // Items re-exported at the crate root (`crate::Settings`) belong to their module.
    for name in &mut found {
        match name.as_str() {
            "Settings" => *name = "config".into(),
            "Application" | "Role" => *name = "app".into(),
            _ => {}
        }
    }
    found
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("readable dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &Graph,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn the_parser_reads_grouped_and_plain_paths() {
    let found = crate_paths("use crate::{a::b, c, d::{e, f}};\nlet x = crate::g::h();");
    assert_eq!(found, ["a", "c", "d", "g"]);
    let mut graph = Graph::new();
    graph.entry("x".into()).or_default().insert("y".into());
    graph.entry("y".into()).or_default().insert("x".into());
    assert!(find_cycle(&graph).is_some());
}
