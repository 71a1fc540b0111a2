//! The push endpoint's bodies (samples and Aodh alarm notifications).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| flotilla_metrics_push::fuzzing::bodies(data));
