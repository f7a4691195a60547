//! The layering rule, checked over the source: every top-level module of
//! `src/` sits in one layer, and may import (`crate::...`) only modules of
//! the layers below its own. No import circle can form, and a wrong import
//! fails this test with the file that made it. The layers are drawn in
//! `docs/architecture.md`; change both together.
//!
//! Also checked: what is committed reaches syncs and other servers only
//! through the commit pipeline's listeners.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

/// Top to bottom. A module may import only modules of later rows.
const LAYERS: &[&[&str]] = &[
    &["server"],
    &["api"],
    &["http"],
    &["services"],
    &["sync"],
    &["federation", "push", "appservice"],
    &["streams", "e2ee", "search", "reports", "delayed"],
    &["rooms", "users", "media", "calls"],
    &["commit"],
    &["pdu", "storage"],
    &["server_key", "rate_limit"],
    &["config"],
    &["address_policy"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|row| row.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("src is readable") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file of `src/` belongs to (`None` for the crate
/// root and the binary).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).expect("under src");
    let first = rel.components().next()?.as_os_str().to_str()?.trim_end_matches(".rs").to_owned();
    (first != "lib" && first != "main").then_some(first)
}

/// Source without `//` comments, so doc text naming a module is no import.
fn code(text: &str) -> String {
    text.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n")
}

/// The first path segment of every top-level item of a `{...}` use group.
fn group_heads(group: &str) -> Vec<String> {
    let (mut depth, mut current, mut heads) = (0, String::new(), Vec::new());
    for ch in group.chars() {
        match ch {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                heads.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(ch);
    }
    heads.push(current);
    heads
        .iter()
        .filter_map(|h| h.trim().split("::").next())
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Every top-level module the code names through `crate::`.
fn imports(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let (mut depth, mut end) = (1, group.len());
            for (i, ch) in group.char_indices() {
                match ch {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            end = i;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            found.extend(group_heads(&group[..end]));
        } else {
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found.retain(|m| m != "self");
    found
}

fn sources() -> Vec<(String, PathBuf, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    files
        .into_iter()
        .filter_map(|f| {
            let module = module_of(&src, &f)?;
            let text = fs::read_to_string(&f).expect("source is readable");
            Some((module, f, code(&text)))
        })
        .collect()
}

#[test]
fn modules_import_only_the_layers_below_them() {
    let mut wrong = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for (module, file, code) in sources() {
        seen.insert(module.clone());
        let Some(own) = layer_of(&module) else {
            wrong.insert(format!("{module} (in no layer: add it to LAYERS and docs/architecture.md)"), file.clone());
            continue;
        };
        for target in imports(&code) {
            if target == module {
                continue;
            }
            match layer_of(&target) {
                Some(layer) if layer > own => {}
                Some(_) => {
                    wrong.insert(format!("{module} -> {target}"), file.clone());
                }
                // Re-exports of the crate root, or not a module at all.
                None => {
                    wrong.insert(format!("{module} -> {target} (not a layered module)"), file.clone());
                }
            }
        }
    }
    assert!(wrong.is_empty(), "imports against the layering rule:\n{wrong:#?}");
    for row in LAYERS {
        for module in *row {
            assert!(seen.contains(*module), "LAYERS names {module}, which src/ does not have");
        }
    }
}

#[test]
fn commits_leave_only_through_the_pipeline() {
    // Wake-ups and outbound queues are the listeners' business: only the
    // pipeline's listeners (and the sender itself) call them.
    let allowed = [
        "commit/",
        "federation/listener.rs",
        "federation/sender.rs",
        "federation/edus.rs",
        "federation/e2ee.rs",
        "federation/device_lists.rs",
    ];
    let calls = [
        "notify_waiters(",
        "sender.wake(",
        "send_edus(",
        "send_typing(",
        "send_receipt(",
        "send_presence(",
        "send_device_list_update(",
        "send_to_device_remote(",
    ];
    let mut found = Vec::new();
    for (_, file, code) in sources() {
        let path = file.to_string_lossy().replace('\\', "/");
        if allowed.iter().any(|a| path.contains(&format!("src/{a}"))) {
            continue;
        }
        for call in calls {
            if code.contains(call) {
                found.push(format!("{path}: {call}"));
            }
        }
    }
    assert!(found.is_empty(), "commits announced outside the pipeline's listeners:\n{found:#?}");
}

#[test]
fn the_checker_sees_grouped_and_nested_imports() {
    let code = code("use crate::{a::B, c::{d, e}, self};\nfn f() { crate::g::h(); } // crate::comment");
    assert_eq!(imports(&code), BTreeSet::from(["a".into(), "c".into(), "g".into()]));
}
