//! The `push_body` fuzz target's entry point on its seeds (`fuzz/seeds/push_body/`) and on
//! absurd bodies, in every test run.

#[test]
fn every_seed_body_parses_and_absurd_ones_are_refused_without_a_panic() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/push_body");
    let mut seen = 0;
    for e in std::fs::read_dir(&dir).expect("fuzz seeds").flatten() {
        flotilla_metrics_push::fuzzing::bodies(&std::fs::read(e.path()).unwrap());
        seen += 1;
    }
    assert!(seen >= 2, "seeds in {}", dir.display());
    let deep = "[".repeat(100_000);
    for junk in [&b""[..], b"{\"samples\":[{\"member\":\"a\",\"cpu\":1e999}]}", b"\xff\xfe", deep.as_bytes()] {
        flotilla_metrics_push::fuzzing::bodies(junk);
    }
}
