//! A client's request head through the balancer's HTTP/1.1 server and header handling.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    flotilla_lb::fuzzing::request_head(data);
});
