//! The crate's layout, checked: imports between the files of `src/` run
//! one way (no circle), `src/sys/` and `src/error.rs` are leaves, and no
//! source file grows past about 800 lines of code unless its opening
//! comment says why.
//!
//! The check reads the source as text (no parsing crate, nothing of the
//! library is run): every `crate::`, `super::` and `self::` path outside
//! `#[cfg(test)]` modules is an arrow from the file it is written in to
//! the file that defines what it names, following `pub use` re-exports
//! to where the item is defined. `mod` declarations are not arrows.
//!
//! Run it alone with `cargo test --test layout`; on failure it prints the
//! circle or the arrow that breaks a rule.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// One source file: its module path and the names it re-exports.
struct File {
    path: String,
    module: Vec<String>,
    /// Code with test modules and comments removed.
    code: String,
    /// `pub use` re-exports: exported name -> the full path it stands for.
    reexports: HashMap<String, Vec<String>>,
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

fn module_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|s| s.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && !(parts.is_empty() && stem == "lib") {
        parts.push(stem.to_string());
    }
    parts
}

/// Removes comments, string literals and `#[cfg(test)]` items.
fn strip(text: &str) -> String {
    // Comments and strings first, keeping line breaks.
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if b[i] == b'\n' {
                        out.push('\n');
                    }
                    i += 1;
                }
            }
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                if i < b.len() && b[i] == b'\n' {
                    out.push('\n');
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'\''
            && i + 2 < b.len()
            && (b[i + 2] == b'\'' || (b[i + 1] == b'\\' && b.get(i + 3) == Some(&b'\'')))
        {
            // A char literal ('"' would otherwise open a string).
            i += if b[i + 1] == b'\\' { 4 } else { 3 };
            out.push_str("' '");
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    // Then every item behind #[cfg(test)] (a test module, a test-only fn).
    let mut code = String::with_capacity(out.len());
    let mut rest = out.as_str();
    while let Some(at) = rest.find("#[cfg(test)]") {
        code.push_str(&rest[..at]);
        let after = &rest[at..];
        // Skip to the end of the item: its `;` or its balanced braces.
        let mut depth = 0usize;
        let mut end = after.len();
        for (j, c) in after.char_indices().skip("#[cfg(test)]".len()) {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = j + 1;
                        break;
                    }
                }
                ';' if depth == 0 => {
                    end = j + 1;
                    break;
                }
                _ => {}
            }
        }
        code.extend(after[..end].chars().filter(|c| *c == '\n'));
        rest = &after[end..];
    }
    code.push_str(rest);
    // Inside an inline module (`mod name { .. }`), `super::` is the file's
    // own module: write it as `self::` so that paths resolve to this file.
    let mut out = String::with_capacity(code.len());
    let mut rest = code.as_str();
    while let Some(at) = find_inline_mod(rest) {
        out.push_str(&rest[..at]);
        let after = &rest[at..];
        let mut depth = 0usize;
        let mut end = after.len();
        for (j, c) in after.char_indices() {
            match c {
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
        out.push_str(&after[..end].replace("super::", "self::"));
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// Where the next `mod name {` starts.
fn find_inline_mod(code: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(at) = code[from..].find("mod ") {
        let at = from + at;
        let boundary = code[..at]
            .chars()
            .last()
            .is_none_or(|c| c.is_whitespace() || c == '}' || c == ';');
        let name_end = code[at + 4..]
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .map(|n| at + 4 + n)?;
        if boundary && name_end > at + 4 && code[name_end..].trim_start().starts_with('{') {
            return Some(at);
        }
        from = at + 4;
    }
    None
}

/// Expands a `use` tree (`a::{b, c::{d, e as f}}`) into paths, each with the
/// name it binds.
fn expand_use(tree: &str, prefix: &[String], out: &mut Vec<Bound>) {
    let tree = tree.trim();
    if tree.is_empty() {
        return;
    }
    if let Some(open) = tree.find('{') {
        let head: Vec<String> = tree[..open]
            .split("::")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        let inner = &tree[open + 1..tree.rfind('}').unwrap()];
        let mut p = prefix.to_vec();
        p.extend(head);
        let mut depth = 0;
        let mut start = 0;
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand_use(&inner[start..i], &p, out);
                    start = i + 1;
                }
                _ => {}
            }
        }
        expand_use(&inner[start..], &p, out);
        return;
    }
    let (path, alias) = match tree.split_once(" as ") {
        Some((p, a)) => (p.trim(), Some(a.trim())),
        None => (tree, None),
    };
    let mut p = prefix.to_vec();
    p.extend(path.split("::").map(|s| s.trim().to_string()));
    let last = p.last().cloned().unwrap_or_default();
    let name = alias.map(String::from).unwrap_or_else(|| {
        if last == "self" {
            p[p.len() - 2].clone()
        } else {
            last.clone()
        }
    });
    if last == "self" {
        p.pop();
    }
    out.push((p, name));
}

/// Every `use` statement of the code: (is it `pub`, the paths it brings).
/// A path and the name it binds.
type Bound = (Vec<String>, String);

fn uses(code: &str) -> Vec<(bool, Vec<Bound>)> {
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("use ") {
        let before = &rest[..at];
        let boundary = before
            .chars()
            .last()
            .is_none_or(|c| c.is_whitespace() || c == ';' || c == '}' || c == '{' || c == ')');
        let after = &rest[at + 4..];
        let Some(end) = after.find(';') else { break };
        if boundary {
            let line_start = before.rfind('\n').map_or(0, |n| n + 1);
            let vis = &before[line_start..];
            let public = vis.contains("pub");
            let mut paths = Vec::new();
            expand_use(&after[..end], &[], &mut paths);
            found.push((public, paths));
        }
        rest = &after[end..];
    }
    found
}

/// Resolves a path written in module `here` to an absolute module path
/// (starting below the crate root), or `None` for paths outside the crate.
fn absolute(
    here: &[String],
    path: &[String],
    modules: &HashMap<Vec<String>, usize>,
) -> Option<Vec<String>> {
    let first = path.first()?;
    match first.as_str() {
        "crate" | "$crate" => Some(path[1..].to_vec()),
        "self" => {
            let mut p = here.to_vec();
            p.extend_from_slice(&path[1..]);
            Some(p)
        }
        "super" => {
            let mut p = here.to_vec();
            let mut rest = path;
            while rest.first().is_some_and(|s| s == "super") {
                p.pop()?;
                rest = &rest[1..];
            }
            p.extend_from_slice(rest);
            Some(p)
        }
        // `use child::Item` in a module with a child module of that name.
        _ => {
            let mut p = here.to_vec();
            p.push(first.clone());
            modules.contains_key(&p).then(|| {
                p.extend_from_slice(&path[1..]);
                p
            })
        }
    }
}

struct Tree {
    files: Vec<File>,
    by_module: HashMap<Vec<String>, usize>,
}

impl Tree {
    fn load() -> Tree {
        let root = src_dir();
        let mut paths = Vec::new();
        rust_files(&root, &mut paths);
        paths.sort();
        let mut files = Vec::new();
        for p in paths {
            let rel = p.strip_prefix(&root).unwrap();
            let text = std::fs::read_to_string(&p).unwrap();
            let module = module_of(rel);
            let code = strip(&text);
            files.push(File {
                path: format!("src/{}", rel.display()),
                module,
                code,
                reexports: HashMap::new(),
            });
        }
        let by_module: HashMap<Vec<String>, usize> = files
            .iter()
            .enumerate()
            .map(|(i, f)| (f.module.clone(), i))
            .collect();
        for f in &mut files {
            for (public, paths) in uses(&f.code) {
                if !public {
                    continue;
                }
                for (path, name) in paths {
                    if name == "*" {
                        continue;
                    }
                    if let Some(abs) = absolute(&f.module, &path, &by_module) {
                        f.reexports.insert(name, abs);
                    }
                }
            }
        }
        Tree { files, by_module }
    }

    /// The file that defines what `path` (absolute) names.
    fn target(&self, path: &[String], hops: usize) -> Option<usize> {
        // The longest prefix that is a file's module.
        let mut n = path.len();
        while n > 0 && !self.by_module.contains_key(&path[..n]) {
            n -= 1;
        }
        let file = *self.by_module.get(&path[..n])?;
        if n < path.len()
            && hops < 8
            && let Some(to) = self.files[file].reexports.get(&path[n])
        {
            let mut next = to.clone();
            next.extend_from_slice(&path[n + 1..]);
            if next != path {
                return self.target(&next, hops + 1).or(Some(file));
            }
        }
        Some(file)
    }

    /// Arrows: file -> (file, the path that makes the arrow).
    fn arrows(&self) -> BTreeMap<usize, BTreeMap<usize, String>> {
        let mut arrows: BTreeMap<usize, BTreeMap<usize, String>> = BTreeMap::new();
        for (i, f) in self.files.iter().enumerate() {
            let mut paths: Vec<Vec<String>> = Vec::new();
            for (_, ps) in uses(&f.code) {
                paths.extend(ps.into_iter().map(|(p, _)| p));
            }
            // Inline paths: crate::a::b, super::x, self::y.
            for start in ["crate::", "super::", "self::"] {
                let mut rest = f.code.as_str();
                while let Some(at) = rest.find(start) {
                    let ok = rest[..at]
                        .chars()
                        .last()
                        .is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == '$'));
                    let tail = &rest[at..];
                    let end = tail
                        .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                        .unwrap_or(tail.len());
                    if ok && !tail[end..].starts_with('{') {
                        let p: Vec<String> = tail[..end]
                            .split("::")
                            .filter(|s| !s.is_empty())
                            .map(String::from)
                            .collect();
                        paths.push(p);
                    }
                    rest = &tail[end.max(1)..];
                }
            }
            for p in paths {
                let Some(abs) = absolute(&f.module, &p, &self.by_module) else {
                    continue;
                };
                if abs.is_empty() {
                    continue;
                }
                if let Some(t) = self.target(&abs, 0)
                    && t != i
                {
                    arrows
                        .entry(i)
                        .or_default()
                        .entry(t)
                        .or_insert_with(|| p.join("::"));
                }
            }
        }
        arrows
    }
}

/// Strongly connected components with more than one file (Tarjan).
fn circles(n: usize, arrows: &BTreeMap<usize, BTreeMap<usize, String>>) -> Vec<Vec<usize>> {
    struct S<'a> {
        arrows: &'a BTreeMap<usize, BTreeMap<usize, String>>,
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on: Vec<bool>,
        stack: Vec<usize>,
        next: usize,
        out: Vec<Vec<usize>>,
    }
    fn visit(s: &mut S<'_>, v: usize) {
        s.index[v] = Some(s.next);
        s.low[v] = s.next;
        s.next += 1;
        s.stack.push(v);
        s.on[v] = true;
        let targets: Vec<usize> = s
            .arrows
            .get(&v)
            .map(|m| m.keys().copied().collect())
            .unwrap_or_default();
        for w in targets {
            match s.index[w] {
                None => {
                    visit(s, w);
                    s.low[v] = s.low[v].min(s.low[w]);
                }
                Some(iw) if s.on[w] => s.low[v] = s.low[v].min(iw),
                _ => {}
            }
        }
        if Some(s.low[v]) == s.index[v] {
            let mut comp = Vec::new();
            loop {
                let w = s.stack.pop().unwrap();
                s.on[w] = false;
                comp.push(w);
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                s.out.push(comp);
            }
        }
    }
    let mut s = S {
        arrows,
        index: vec![None; n],
        low: vec![0; n],
        on: vec![false; n],
        stack: Vec::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in 0..n {
        if s.index[v].is_none() {
            visit(&mut s, v);
        }
    }
    s.out
}

#[test]
fn imports_between_files_run_one_way() {
    let tree = Tree::load();
    let arrows = tree.arrows();
    let found = circles(tree.files.len(), &arrows);
    let mut report = String::new();
    for comp in &found {
        let set: BTreeSet<usize> = comp.iter().copied().collect();
        report.push_str(&format!("a circle of {} files:\n", comp.len()));
        for &a in comp {
            for (b, via) in arrows.get(&a).into_iter().flatten() {
                if set.contains(b) {
                    report.push_str(&format!(
                        "  {} -> {} ({via})\n",
                        tree.files[a].path, tree.files[*b].path
                    ));
                }
            }
        }
    }
    assert!(found.is_empty(), "imports run in circles:\n{report}");
}

#[test]
fn sys_and_error_are_leaves() {
    let tree = Tree::load();
    let arrows = tree.arrows();
    let is = |i: usize, prefix: &str| tree.files[i].path.starts_with(prefix);
    // What the error type may name: leaf value types, which import nothing.
    let leaf_types = ["src/process/status.rs"];
    let mut bad = Vec::new();
    for (&from, to) in &arrows {
        for (&t, via) in to {
            let target = tree.files[t].path.as_str();
            let ok = if is(from, "src/sys/") {
                is(t, "src/sys/") || target == "src/error.rs"
            } else if tree.files[from].path == "src/error.rs" {
                leaf_types.contains(&target)
            } else {
                !leaf_types.contains(&tree.files[from].path.as_str())
            };
            if !ok {
                bad.push(format!("{} -> {target} ({via})", tree.files[from].path));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "src/sys/ may import only src/sys/ and src/error.rs; src/error.rs only the leaf \
         value types ({leaf_types:?}), which import nothing of the crate:\n  {}",
        bad.join("\n  ")
    );
}

/// Lines of code: not blank, not only a comment, outside test modules.
fn code_lines(code: &str) -> usize {
    code.lines()
        .filter(|l| {
            let t = l.trim();
            !t.is_empty() && t != "\"\"" && !t.starts_with("#[")
        })
        .count()
}

/// Files being split up; each entry goes when its split lands.
const BEING_SPLIT: &[&str] = &[];

#[test]
fn source_files_stay_small_or_say_why() {
    let tree = Tree::load();
    let mut long = Vec::new();
    for f in tree
        .files
        .iter()
        .filter(|f| !BEING_SPLIT.contains(&f.path.as_str()))
    {
        let n = code_lines(&f.code);
        if n > 800 {
            let text = std::fs::read_to_string(src_dir().join(&f.path[4..])).unwrap();
            let opening: String = text
                .lines()
                .take_while(|l| l.starts_with("//!"))
                .collect::<Vec<_>>()
                .join("\n");
            if !opening.contains("This file is long because") {
                long.push(format!("{} ({n} lines of code)", f.path));
            }
        }
    }
    assert!(
        long.is_empty(),
        "files over 800 lines of code whose opening comment does not say \
         \"This file is long because ...\":\n  {}",
        long.join("\n  ")
    );
}

#[test]
fn the_checker_sees_circles_and_reexports() {
    // The parser itself: a use tree, a re-export, a circle.
    let mut out = Vec::new();
    expand_use("crate::a::{b, c::{d as e, self}}", &[], &mut out);
    let got: Vec<String> = out
        .iter()
        .map(|(p, n)| format!("{}={n}", p.join("::")))
        .collect();
    assert_eq!(got, ["crate::a::b=b", "crate::a::c::d=e", "crate::a::c=c"]);
    let code = strip(
        "use x; // crate::not::this\n#[cfg(test)]\nmod tests { use crate::y; }\nfn f() { crate::z::w(); }",
    );
    assert!(!code.contains("not") && !code.contains("crate::y") && code.contains("crate::z"));
    let mut arrows = BTreeMap::new();
    arrows.insert(0, BTreeMap::from([(1, String::new())]));
    arrows.insert(1, BTreeMap::from([(0, String::new())]));
    assert_eq!(circles(3, &arrows), [vec![0, 1]]);
}
