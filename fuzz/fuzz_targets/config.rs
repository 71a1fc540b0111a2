//! Our YAML config: any text gives a config or field errors, never a panic or a hang.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(src) = std::str::from_utf8(data) {
        if let Err(errors) = flotilla_config::parse(src, "fuzz.yaml") {
            assert!(!errors.0.is_empty(), "an error with no message");
        }
    }
});
