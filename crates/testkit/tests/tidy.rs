//! Keeps ARCHITECTURE.md true where a claim can be checked (in the spirit of rust-analyzer's tidy
//! tests): the crate dependency rule, the failpoint list, that every example is loaded by a test,
//! and that pure code reads no clock and sleeps not. Each rule is a function over plain inputs, so
//! the tests at the bottom show each one failing on a broken input.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("repository root")
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Every file under `dir`, recursively, sorted.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let p = entry.expect("dir entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    if !dir.is_dir() {
        return Vec::new();
    }
    files_under(dir).into_iter().filter(|p| p.extension().is_some_and(|e| e == "rs")).collect()
}

// ---------------------------------------------------------------------------------------------
// The crate dependency rule.

/// What a workspace crate is, which decides what it may depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Shared types and seams: depends on no workspace crate.
    Model,
    /// Helpers anyone may use (`procfs`, `duration`, `healthz`, `listener`): `model` at most.
    Leaf,
    /// The decision core: `model` only.
    Policy,
    /// The loop: `model` and `policy`.
    Controller,
    /// A provider, store, metric source, balancer, workload or load generator: `model` and leaf
    /// crates only, never another adapter.
    Adapter,
    /// The configuration file's schema and validation: `model`, leaf crates and the adapters whose
    /// settings sections it reads, never the controller or the binary.
    Config,
    /// The REST API: a shell over the controller (`model`, leaf crates, `policy`, `controller`),
    /// never an adapter or the config.
    Api,
    /// The binary: anything.
    Binary,
    /// Fakes and the conformance suite: `model` only (dev-dependency of others).
    Testkit,
}

/// The role of each crate, by its directory under `crates/`. A crate missing here fails the test:
/// a new crate must be placed in the picture (and in ARCHITECTURE.md's code map).
fn role_of(dir: &str) -> Option<Role> {
    Some(match dir {
        "model" => Role::Model,
        "procfs" | "duration" | "healthz" | "listener" => Role::Leaf,
        "policy" => Role::Policy,
        "controller" => Role::Controller,
        "config" => Role::Config,
        "api" => Role::Api,
        "flotilla" => Role::Binary,
        "testkit" => Role::Testkit,
        d if d.starts_with("provider-")
            || d.starts_with("store-")
            || d.starts_with("metrics")
            || matches!(d, "lb" | "workload" | "loadgen") =>
        {
            Role::Adapter
        }
        _ => return None,
    })
}

fn allowed(role: Role, dep: Role) -> bool {
    match role {
        Role::Model => false,
        Role::Leaf => dep == Role::Model,
        Role::Policy | Role::Testkit | Role::Adapter => matches!(dep, Role::Model | Role::Leaf),
        Role::Controller => matches!(dep, Role::Model | Role::Leaf | Role::Policy),
        Role::Api => matches!(dep, Role::Model | Role::Leaf | Role::Policy | Role::Controller),
        Role::Config => matches!(dep, Role::Model | Role::Leaf | Role::Adapter),
        Role::Binary => dep != Role::Testkit,
    }
}

/// Violations of the rule, given each crate directory's normal (not dev) workspace dependencies.
fn dependency_violations(deps: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let mut out = Vec::new();
    for (krate, uses) in deps {
        let Some(role) = role_of(krate) else {
            out.push(format!("crates/{krate}: no role in tidy.rs's role_of (and, likely, not in ARCHITECTURE.md)"));
            continue;
        };
        for dep in uses {
            match role_of(dep) {
                Some(d) if allowed(role, d) => {}
                _ => out.push(format!("crates/{krate} ({role:?}) depends on crates/{dep}, which the rule forbids")),
            }
        }
    }
    out
}

/// Each workspace crate's directory name and the directories of the workspace crates it depends on
/// (normal and build dependencies; dev-dependencies may go anywhere), from `cargo metadata`.
fn workspace_deps() -> BTreeMap<String, BTreeSet<String>> {
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(root())
        .output()
        .expect("cargo metadata");
    assert!(out.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&out.stderr));
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    let dir_of = |manifest: &str| -> String {
        Path::new(manifest).parent().and_then(|p| p.file_name()).unwrap().to_string_lossy().into_owned()
    };
    let mut by_name = BTreeMap::new();
    for p in meta["packages"].as_array().unwrap() {
        by_name.insert(p["name"].as_str().unwrap().to_string(), dir_of(p["manifest_path"].as_str().unwrap()));
    }
    let mut deps = BTreeMap::new();
    for p in meta["packages"].as_array().unwrap() {
        let uses: BTreeSet<String> = p["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["kind"].as_str() != Some("dev"))
            .filter_map(|d| by_name.get(d["name"].as_str().unwrap()).cloned())
            .collect();
        deps.insert(dir_of(p["manifest_path"].as_str().unwrap()), uses);
    }
    deps
}

#[test]
fn crates_depend_only_as_architecture_md_says() {
    let deps = workspace_deps();
    let problems = dependency_violations(&deps);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let doc = read(&root().join("ARCHITECTURE.md"));
    let unmapped: Vec<&String> = deps.keys().filter(|d| !doc.contains(&format!("`crates/{d}`"))).collect();
    assert!(unmapped.is_empty(), "ARCHITECTURE.md's code map does not name {unmapped:?}");
}

// ---------------------------------------------------------------------------------------------
// Failpoints.

/// The names in `pub const FAILPOINTS: &[&str] = &[...]`, and every other string literal in
/// `code` shaped like a failpoint name (`scale-out:after-begin`): the names the code passes to
/// `failpoint(...)`, directly or through a parameter. (A name built at run time would escape this;
/// the controller's `debug_assert` refuses one that is not listed.)
fn failpoints_in(code: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let strings = |s: &str| -> Vec<String> { s.split('"').skip(1).step_by(2).map(str::to_string).collect() };
    let list_at = code.find("pub const FAILPOINTS");
    let list_end = list_at.map(|i| i + code[i..].find("];").unwrap_or(code.len() - i));
    let listed = match (list_at, list_end) {
        (Some(a), Some(b)) => strings(&code[a..b]).into_iter().collect(),
        _ => BTreeSet::new(),
    };
    let shaped = |s: &str| {
        s.split_once(":after-").is_some_and(|(op, at)| {
            [op, at].iter().all(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
        })
    };
    let outside = match (list_at, list_end) {
        (Some(a), Some(b)) => format!("{}{}", &code[..a], &code[b..]),
        _ => code.to_string(),
    };
    let called = strings(&outside).into_iter().filter(|s| shaped(s)).collect();
    (listed, called)
}

fn failpoint_problems(code: &str, doc: &str) -> Vec<String> {
    let (listed, called) = failpoints_in(code);
    let mut out = Vec::new();
    if listed.is_empty() {
        out.push("no `pub const FAILPOINTS` list in the controller".to_string());
    }
    for c in called.difference(&listed) {
        out.push(format!("failpoint {c} is called but not in FAILPOINTS"));
    }
    for name in &listed {
        if !doc.contains(&format!("`{name}`")) {
            out.push(format!("failpoint `{name}` is not listed in ARCHITECTURE.md"));
        }
    }
    out
}

#[test]
fn every_failpoint_is_listed_in_architecture_md() {
    let code: String = rust_files(&root().join("crates/controller/src")).iter().map(|p| read(p)).collect();
    let problems = failpoint_problems(&code, &read(&root().join("ARCHITECTURE.md")));
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// Examples.

/// Examples no test loads: a file is loaded when a test names its path (relative to `examples/`),
/// or when it is YAML and `walker` (the test that walks `examples/` recursively) exists.
fn unloaded_examples(examples: &[String], tests: &str, walker: bool) -> Vec<String> {
    examples
        .iter()
        .filter(|e| !tests.contains(e.as_str()) && !(walker && (e.ends_with(".yaml") || e.ends_with(".yml"))))
        .cloned()
        .collect()
}

#[test]
fn every_example_is_loaded_by_a_test() {
    let dir = root().join("examples");
    let examples: Vec<String> =
        files_under(&dir).iter().map(|p| p.strip_prefix(&dir).unwrap().to_string_lossy().into_owned()).collect();
    assert!(!examples.is_empty());
    let tests: String = std::fs::read_dir(root().join("crates"))
        .unwrap()
        .flat_map(|c| rust_files(&c.unwrap().path().join("tests")))
        .map(|p| read(&p))
        .collect();
    // crates/config/tests/examples.rs loads every YAML file under examples/, at any depth.
    let walker = read(&root().join("crates/config/tests/examples.rs")).contains("fn every_example_is_valid")
        && read(&root().join("crates/config/tests/examples.rs")).contains("at any depth");
    let left = unloaded_examples(&examples, &tests, walker);
    assert!(left.is_empty(), "examples no test loads: {left:?}");
}

// ---------------------------------------------------------------------------------------------
// Pure code.

/// What pure code must not call: clocks, sleeps, threads, files and sockets.
const IMPURE: &[&str] = &[
    "Instant::now",
    "SystemTime::now",
    "thread::sleep",
    "tokio::",
    "std::fs",
    "std::net",
    "std::process",
    "thread::spawn",
];

/// The one allowed exception: `model`'s `SystemClock` is the clock the I/O shells hand to pure
/// code (which only ever sees the `Clock` trait).
const ALLOWED: &[(&str, &str)] = &[("crates/model/src/clock.rs", "SystemTime::now")];

fn impure_lines(path: &str, text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_tests = false;
    for (n, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("#[cfg(test)]") {
            in_tests = true;
        }
        let code = line.split("//").next().unwrap_or("");
        for bad in IMPURE {
            if !in_tests && code.contains(bad) && !ALLOWED.contains(&(path, *bad)) {
                out.push(format!("{path}:{}: `{bad}` in pure code", n + 1));
            }
        }
    }
    out
}

#[test]
fn the_pure_crates_read_no_clock_and_do_no_io() {
    let mut problems = Vec::new();
    for krate in ["model", "policy"] {
        for p in rust_files(&root().join("crates").join(krate).join("src")) {
            let rel = p.strip_prefix(root()).unwrap().display().to_string();
            problems.extend(impure_lines(&rel, &read(&p)));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// The tests of the tests: each rule fails when it is broken.

#[test]
fn tidy_catches_an_adapter_depending_on_another() {
    let deps = |pairs: &[(&str, &[&str])]| -> BTreeMap<String, BTreeSet<String>> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect())).collect()
    };
    assert!(dependency_violations(&deps(&[("metrics-ssh", &["model", "procfs"])])).is_empty());
    let bad = dependency_violations(&deps(&[("metrics-ssh", &["model", "metrics"])]));
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert!(bad[0].contains("crates/metrics-ssh (Adapter) depends on crates/metrics"), "{bad:?}");
    assert_eq!(dependency_violations(&deps(&[("policy", &["controller"])])).len(), 1);
    assert_eq!(dependency_violations(&deps(&[("model", &["procfs"])])).len(), 1);
    assert_eq!(dependency_violations(&deps(&[("procfs", &["metrics"])])).len(), 1, "a leaf on an adapter");
    assert_eq!(dependency_violations(&deps(&[("gizmo", &[])])).len(), 1, "an unplaced crate");
}

#[test]
fn tidy_catches_an_unlisted_failpoint() {
    let code = r#"pub const FAILPOINTS: &[&str] = &["a:after-begin", "b:after-x"];
        fn f(&self) { self.failpoint("a:after-begin"); self.make(names, "c:after-create"); log("x: y"); }"#;
    let doc = "`a:after-begin`";
    let p = failpoint_problems(code, doc);
    assert!(p.iter().any(|m| m.contains("c:after-create is called but not in FAILPOINTS")), "{p:?}");
    assert!(p.iter().any(|m| m.contains("`b:after-x` is not listed")), "{p:?}");
    assert_eq!(p.len(), 2, "{p:?}");
    assert_eq!(failpoint_problems("", doc), vec!["no `pub const FAILPOINTS` list in the controller".to_string()]);
}

#[test]
fn tidy_catches_an_example_no_test_loads() {
    let ex = vec!["a.yaml".to_string(), "libvirt/b.yaml".to_string(), "notes.txt".to_string()];
    assert_eq!(unloaded_examples(&ex, "", false), ex);
    assert_eq!(unloaded_examples(&ex, "", true), vec!["notes.txt".to_string()]);
    assert!(unloaded_examples(&ex, "\"notes.txt\"", true).is_empty());
}

#[test]
fn tidy_catches_a_clock_in_pure_code() {
    let text = "fn f() {\n    let t = std::time::Instant::now(); // no\n}\n// Instant::now in a comment is fine\n#[cfg(test)]\nmod tests { fn g() { std::thread::sleep(d) } }\n";
    assert_eq!(impure_lines("x.rs", text), vec!["x.rs:2: `Instant::now` in pure code".to_string()]);
}
