//! Bad input: exit status 2, a message naming the field and its line, and nothing started.

mod support;

use support::Env;

fn check_rejected(yaml: &str, expect: &[&str]) {
    let env = Env::new();
    let file = env.file("bad.yaml", yaml);
    for verb in [vec!["config", "check"], vec!["run", "-c"]] {
        let mut args = verb.clone();
        args.push(file.to_str().unwrap());
        let out = env.run(&args);
        let err = support::text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?} should exit 2; stderr:\n{err}");
        for e in expect {
            assert!(err.contains(e), "{args:?}: expected {e:?} in:\n{err}");
        }
        assert!(env.live_member_names().is_empty(), "nothing started");
        assert!(!env.path().join("state").join("flotilla.db").exists(), "no state written");
    }
}

#[test]
fn malformed_yaml_names_the_line() {
    check_rejected("groups:\n  - name: a\n   mode: scale\n", &["bad.yaml:3:"]);
}

#[test]
fn unknown_field_is_named_with_its_line() {
    check_rejected("groups:\n  - name: a\n    policy:\n      high: 80\n      lwo: 20\n", &["bad.yaml:5:7", "lwo"]);
}

#[test]
fn low_not_below_high() {
    check_rejected(
        "groups:\n  - name: a\n    policy:\n      high: 50\n      low: 50\n",
        &["bad.yaml:5:", "groups[0].policy.low"],
    );
}

#[test]
fn min_above_max() {
    check_rejected("groups:\n  - name: a\n    min: 5\n    max: 3\n", &["bad.yaml:3:", "groups[0].min"]);
}

#[test]
fn several_problems_are_reported_at_once() {
    check_rejected(
        "groups:\n  - name: a\n    min: 5\n    max: 3\n    policy:\n      high: 10\n      low: 20\n",
        &["groups[0].min", "groups[0].policy.low"],
    );
}

#[test]
fn missing_file_is_bad_input() {
    let env = Env::new();
    let out = env.run(&["run", "-c", "/nonexistent/flotilla.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(support::text(&out.stderr).contains("/nonexistent/flotilla.yaml"));
}

#[test]
fn watch_flags_are_validated_before_anything_starts() {
    let env = Env::new();
    let out = env.run(&["watch", "--server", "x_1", "--high", "20", "--low", "80"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(support::text(&out.stderr).contains("--low 80 / --high 20"), "{}", support::text(&out.stderr));
    let out = env.run(&["watch", "--server", "nope_1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(support::text(&out.stderr).contains("--server nope_1: no such member"));
}

#[test]
fn deploy_rejects_bad_names() {
    let env = Env::new();
    let out = env.run(&["deploy", "--name", "../etc"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(support::text(&out.stderr).contains("--name"));
}
