//! The seed-004 shape: a top-level `version` sends the document through the translator.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(rest) = std::str::from_utf8(data) {
        let src = format!("version: 1\n{rest}");
        if let Err(errors) = flotilla_config::parse(&src, "seed.yaml") {
            assert!(!errors.0.is_empty(), "an error with no message");
        }
    }
});
