//! Chunked bodies (see `proxy::http::fuzzing::chunked` for what is checked).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    proxy::http::fuzzing::chunked(data);
});
