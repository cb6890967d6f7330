//! Request heads one after another, as on a keep-alive connection (see
//! `proxy::http::fuzzing::request_head` for what is checked).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    proxy::http::fuzzing::request_head(data);
});
