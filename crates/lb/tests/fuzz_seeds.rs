//! The `lb_head` fuzz target's entry point on its seeds and on the inputs a fuzz run found
//! interesting (`fuzz/seeds/lb_head/`), so the invariants it checks hold in every test run, not
//! only under `bench/fuzz.sh`.

#[test]
fn every_seed_head_keeps_the_proxys_invariants() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/lb_head");
    let mut seen = 0;
    for e in std::fs::read_dir(&dir).expect("fuzz seeds").flatten() {
        let data = std::fs::read(e.path()).unwrap();
        let reply = flotilla_lb::fuzzing::request_head(&data);
        assert!(reply.starts_with(b"HTTP/1."), "{}: {}", e.path().display(), String::from_utf8_lossy(&reply));
        seen += 1;
    }
    assert!(seen >= 3, "seeds in {}", dir.display());
    // Absurd input gets an answer (400 or a closed connection), never a panic.
    for junk in [&b""[..], b"\x00\xff\r\n\r\n", b"GET / HTTP/1.1\r\nHost: a\r\nX: \x01\r\n\r\n", &[b'a'; 70_000][..]] {
        flotilla_lb::fuzzing::request_head(junk);
    }
}
