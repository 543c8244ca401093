//! The dependency rules of ARCHITECTURE.md, checked on the source: each top-level module of
//! `src/` names (through `crate::...` paths outside its `#[cfg(test)]` code) only the modules its
//! layer allows, every module is classified, and so the module graph has no cycle.
#![allow(clippy::expect_used)] // a failed expect is a failed test

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each top-level module and the modules it may name (ARCHITECTURE.md, "Dependency rules").
fn allowed() -> BTreeMap<&'static str, Vec<&'static str>> {
    let leaves = ["plane", "budget"];
    let with = |extra: &[&'static str]| -> Vec<&'static str> {
        leaves.iter().chain(extra).copied().collect()
    };
    let domain = [
        "engine",
        "model",
        "metrics",
        "volume",
        "degrade",
        "consistency",
        "ensemble",
        "upscale",
        "evaluation",
        "checkpoints",
    ];
    let mut m = BTreeMap::new();
    m.insert("plane", vec![]);
    m.insert("budget", vec![]);
    m.insert("engine", vec!["plane"]);
    m.insert("model", with(&["engine"]));
    m.insert("metrics", with(&["engine"]));
    m.insert("volume", with(&["engine", "model"]));
    m.insert("degrade", with(&["engine", "model"]));
    // Data consistency: a projection built on the degradation's k-space operators.
    m.insert("consistency", with(&["engine", "model", "degrade"]));
    // The self-ensemble: an Upscaler over any other (its tests check the geometry against the
    // degradations).
    m.insert("ensemble", with(&["engine", "model", "degrade"]));
    for layer5 in ["upscale", "evaluation", "checkpoints"] {
        m.insert(
            layer5,
            with(&[
                "engine",
                "model",
                "metrics",
                "volume",
                "degrade",
                "consistency",
            ]),
        );
    }
    m.insert("gpu", with(&["engine", "model"]));
    m.insert("backend", with(&["engine", "model", "gpu"]));
    // The PACS client: dicom-rs crates only (a leaf of this crate's graph).
    m.insert("pacs", with(&[]));
    let mut app = with(&domain);
    app.extend(["gpu", "backend"]);
    app.push("pacs");
    m.insert("app", app.clone());
    app.push("app");
    // Batch mode: job lists, shards and the read/upscale/write pipeline over upscale's pieces.
    m.insert("batch", with(&["engine", "model", "volume", "upscale"]));
    app.push("batch");
    m.insert("cli", app);
    m
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The source without its `#[cfg(test)]` items (from the attribute to the end of the item).
fn without_tests(src: &str) -> String {
    let mut out = String::new();
    let mut rest = src;
    while let Some(i) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        // Skip to the end of the item: a `;` before any `{`, or the matching `}`.
        let (mut depth, mut end) = (0usize, after.len());
        for (j, c) in after.char_indices() {
            match c {
                ';' if depth == 0 => {
                    end = j + 1;
                    break;
                }
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = j + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

fn ident_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The top-level modules a source file names: `crate::x` paths and `use crate::{x, y::z}` groups.
fn named_modules(src: &str) -> BTreeSet<String> {
    let code: String = src
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut found = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let (mut depth, mut at_item) = (0usize, true);
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => at_item = true,
                    c if at_item && (c.is_ascii_alphabetic() || c == '_') => {
                        found.insert(ident_at(&group[j..]).to_string());
                        at_item = false;
                    }
                    _ => {}
                }
            }
        } else {
            let name = ident_at(rest);
            if !name.is_empty() {
                found.insert(name.to_string());
            }
        }
    }
    found
}

#[test]
fn modules_depend_only_on_what_their_layer_allows() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let rules = allowed();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut violations = Vec::new();
    let mut modules = BTreeSet::new();
    for file in &files {
        let rel = file.strip_prefix(&src).expect("under src");
        let first = rel.components().next().expect("component");
        let module = first
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if module == "lib" || module == "main" {
            continue;
        }
        modules.insert(module.clone());
        let Some(allowed) = rules.get(module.as_str()) else {
            violations.push(format!(
                "src/{} is module `{module}`, which ARCHITECTURE.md and this test do not classify",
                rel.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(file).expect("read source");
        for named in named_modules(&without_tests(&text)) {
            let is_module = rules.contains_key(named.as_str());
            if is_module && named != module && !allowed.contains(&named.as_str()) {
                violations.push(format!(
                    "src/{} (module `{module}`) names `crate::{named}`",
                    rel.display()
                ));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "layering violations:\n{}",
        violations.join("\n")
    );
    // Every rule names a module that exists (a renamed module must update the rules).
    for module in rules.keys() {
        assert!(modules.contains(*module), "no module `{module}` in src/");
    }
}

#[test]
fn the_parser_finds_paths_groups_and_skips_tests() {
    let src = "use crate::{engine::{EngineError, Upscaler}, model, plane::Plane};\n\
               fn f() { crate::volume::load(); }\n\
               // crate::app in a comment\n\
               #[cfg(test)]\nmod tests { use crate::cli; }\n\
               #[cfg(test)]\nuse crate::app;\n\
               fn g() { crate::metrics::psnr(); }\n";
    let named = named_modules(&without_tests(src));
    let names: Vec<&str> = named.iter().map(String::as_str).collect();
    assert_eq!(names, ["engine", "metrics", "model", "plane", "volume"]);
}
