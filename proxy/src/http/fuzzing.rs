//! The fuzz targets' bodies (`proxy/fuzz/`, `make fuzz`: cargo fuzz on the nightly
//! toolchain), here so that a unit test replays their corpus and every input that ever
//! failed on the stable toolchain, in `make test`.
//!
//! Each takes any bytes and checks what must hold for every input, beyond "no panic":
//! - [`request_head`]: heads are read one after another as on a keep-alive connection; a
//!   head that parses is one we can write back out and read again to the same head (the
//!   proxy forwards heads it wrote itself), and its target stays within the limit.
//! - [`chunked`]: a chunked body that decodes re-encodes to chunks that decode to the same
//!   bytes; one that does not decode is an error, never a hang or a panic.

use super::wire::{self, copy_body, Framing, Limits, Reader};
use std::sync::OnceLock;

/// One runtime for every input: the decoders are async, the fuzzer calls us millions of
/// times.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap_or_else(|e| panic!("a runtime for the fuzz target: {e}"))
    })
}

/// Reads request heads (and skips their bodies) from `data` until it ends or is refused.
pub fn request_head(data: &[u8]) {
    runtime().block_on(async {
        let limits = Limits::default();
        let mut reader = Reader::new(data);
        for _ in 0..16 {
            let Ok(head) = reader.read_request_head(limits, None).await else {
                return;
            };
            assert!(head.target.len() <= limits.max_uri, "target over the limit");
            assert!(!head.method.is_empty(), "a head without a method");
            let _ = super::target::parse(&head.method, &head.target);
            let mut written = Vec::new();
            head.write_to(&mut written);
            let again = Reader::new(&written[..])
                .read_request_head(limits, None)
                .await
                .unwrap_or_else(|e| panic!("our own head does not parse: {e}: {written:?}"));
            assert_eq!(
                (&again.method, &again.target, again.version, &again.headers),
                (&head.method, &head.target, head.version, &head.headers),
                "a head written out reads back differently"
            );
            let Ok(framing) = wire::request_framing(&head) else {
                return;
            };
            if wire::discard_body(&mut reader, framing, None)
                .await
                .is_err()
            {
                return;
            }
        }
    });
}

/// Decodes `data` as a chunked body; if it decodes, re-encodes and decodes again.
pub fn chunked(data: &[u8]) {
    runtime().block_on(async {
        let mut decoded = Vec::new();
        let mut src = Reader::new(data);
        if copy_body(
            &mut src,
            Framing::Chunked,
            &mut decoded,
            Framing::Close,
            Vec::new(),
            None,
        )
        .await
        .is_err()
        {
            return;
        }
        let mut encoded = Vec::new();
        let length = Framing::Length(decoded.len() as u64);
        let mut plain = Reader::new(&decoded[..]);
        copy_body(
            &mut plain,
            length,
            &mut encoded,
            Framing::Chunked,
            Vec::new(),
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("re-encoding a decoded body failed: {e}"));
        let mut again = Vec::new();
        let mut src = Reader::new(&encoded[..]);
        copy_body(
            &mut src,
            Framing::Chunked,
            &mut again,
            Framing::Close,
            Vec::new(),
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("our own chunks do not decode: {e}: {encoded:?}"));
        assert_eq!(again, decoded, "a body re-encoded decodes differently");
    });
}

#[cfg(test)]
mod tests {
    /// Every file of the fuzz corpus and of the inputs that once failed, run again on the
    /// stable toolchain.
    #[test]
    fn the_fuzz_corpus_and_past_failures_still_pass() {
        let fuzz = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
        type Target = fn(&[u8]);
        let targets: [(&str, Target); 2] = [
            ("request_head", super::request_head),
            ("chunked", super::chunked),
        ];
        for (name, target) in targets {
            let mut replayed = 0;
            for dir in ["corpus", "regressions"] {
                let Ok(entries) = std::fs::read_dir(fuzz.join(dir).join(name)) else {
                    continue;
                };
                for entry in entries.flatten() {
                    let data = std::fs::read(entry.path()).unwrap();
                    target(&data);
                    replayed += 1;
                }
            }
            assert!(
                replayed >= 5,
                "{name}: only {replayed} inputs in fuzz/corpus/{name}"
            );
        }
    }
}
