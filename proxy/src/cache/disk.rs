//! The cache's disk store (`--cache-dir`): entries survive a restart.
//!
//! One file per stored response (the seed project kept a file per cached URL), written
//! to a temporary name and renamed, so a crash never leaves half an entry under a real
//! name. At start every file is read back; one that does not parse is skipped with a
//! warning, never a crash. The format is plain text up to the response head, so a student
//! can open one and see what the cache kept:
//!
//! ```text
//! proxylab-cache 1
//! key: http://127.0.0.1:9000/cache/60
//! request-time: 1764000000.123456789
//! response-time: 1764000000.125000000
//! vary: accept-language=656e            (one per Vary header; hex value, or - if absent)
//!
//! HTTP/1.1 200 OK
//! Cache-Control: max-age=60
//! …
//!
//! <body>
//! ```

use super::entry::Entry;
use super::freshness::Targeting;
use crate::http::wire::{self, Limits, Version};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const MAGIC: &str = "proxylab-cache 1";
const SUFFIX: &str = "entry";

/// The file an entry lives in: a hash of its key and variant, so variants do not collide.
pub fn file_for(dir: &Path, key: &str, entry: &Entry) -> PathBuf {
    dir.join(format!("{:016x}.{SUFFIX}", variant_hash(key, entry)))
}

/// A hash of an entry's key and variant (its Vary values): its file name here, its field
/// in the shared store ([`super::remote`]).
pub fn variant_hash(key: &str, entry: &Entry) -> u64 {
    // FNV-1a: stable across Rust versions (file names must survive an upgrade).
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            hash ^= u64::from(*b);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    feed(key.as_bytes());
    for (name, value) in &entry.vary {
        feed(name.as_bytes());
        feed(value.as_deref().unwrap_or(b"\\0absent"));
    }
    hash
}

/// The entry as file contents.
pub fn encode(key: &str, entry: &Entry) -> Vec<u8> {
    let mut out = format!(
        "{MAGIC}\nkey: {key}\nrequest-time: {}\nresponse-time: {}\n",
        timestamp(entry.request_time),
        timestamp(entry.response_time)
    )
    .into_bytes();
    for (name, value) in &entry.vary {
        let value = value.as_ref().map_or("-".to_string(), |v| hex(v));
        out.extend_from_slice(format!("vary: {name}={value}\n").as_bytes());
    }
    out.push(b'\n');
    let mut head = entry.head.clone();
    head.version = Version::Http11;
    head.write_to(&mut out);
    out.extend_from_slice(&entry.body);
    out
}

/// Reads an entry back, for a cache that follows `targeting`; the error says what is
/// wrong with the file.
pub fn decode(bytes: &[u8], targeting: &Targeting) -> Result<(String, Entry), String> {
    let split = bytes
        .windows(2)
        .position(|w| w == b"\n\n")
        .ok_or("no blank line after the metadata")?;
    let meta = std::str::from_utf8(&bytes[..split]).map_err(|_| "metadata is not UTF-8")?;
    let mut lines = meta.lines();
    if lines.next() != Some(MAGIC) {
        return Err(format!("not a {MAGIC} file"));
    }
    let (mut key, mut request_time, mut response_time, mut vary) = (None, None, None, Vec::new());
    for line in lines {
        let (field, value) = line
            .split_once(": ")
            .ok_or_else(|| format!("bad line {line:?}"))?;
        match field {
            "key" => key = Some(value.to_string()),
            "request-time" => request_time = Some(parse_timestamp(value)?),
            "response-time" => response_time = Some(parse_timestamp(value)?),
            "vary" => {
                let (name, v) = value.split_once('=').ok_or("bad vary line")?;
                let v = if v == "-" { None } else { Some(unhex(v)?) };
                vary.push((name.to_string(), v));
            }
            other => return Err(format!("unknown field {other:?}")),
        }
    }
    let rest = &bytes[split + 2..];
    let (head, n) = wire::parse_response_head(rest, Limits::default())
        .map_err(|e| e.to_string())?
        .ok_or("the response head is incomplete")?;
    let body = rest[n..].to_vec();
    if let Some(length) = head.headers.get("content-length") {
        if std::str::from_utf8(length)
            .ok()
            .and_then(|l| l.trim().parse::<usize>().ok())
            != Some(body.len())
        {
            return Err("the body is not as long as its Content-Length".into());
        }
    }
    let entry = Entry::assemble(
        head,
        body.into(),
        (
            request_time.ok_or("no request-time")?,
            response_time.ok_or("no response-time")?,
        ),
        vary,
        targeting,
    );
    Ok((key.ok_or("no key")?, entry))
}

/// Writes `contents` to `path` through a temporary file and a rename.
pub fn write_atomically(path: &Path, contents: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents)?;
    std::fs::rename(&tmp, path)
}

/// What [`load`] found: entries by key, and the files it could not read, with why.
pub type Loaded = (Vec<(String, Entry)>, Vec<(PathBuf, String)>);

/// Every entry file in `dir`, decoded; the ones that fail are reported, not fatal.
pub fn load(dir: &Path, targeting: &Targeting) -> io::Result<Loaded> {
    std::fs::create_dir_all(dir)?;
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for item in std::fs::read_dir(dir)? {
        let path = item?.path();
        if path.extension().and_then(|e| e.to_str()) != Some(SUFFIX) {
            continue;
        }
        match std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| decode(&b, targeting))
        {
            Ok(found) => good.push(found),
            Err(why) => bad.push((path, why)),
        }
    }
    Ok((good, bad))
}

fn timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
}

fn parse_timestamp(s: &str) -> Result<SystemTime, String> {
    let (secs, nanos) = s.split_once('.').unwrap_or((s, "0"));
    let secs: u64 = secs.parse().map_err(|_| format!("bad time {s:?}"))?;
    let nanos: u32 = nanos.parse().map_err(|_| format!("bad time {s:?}"))?;
    Ok(UNIX_EPOCH + Duration::new(secs, nanos.min(999_999_999)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Result<Vec<u8>, String> {
    if !s.len().is_multiple_of(2) {
        return Err("odd-length hex".into());
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|_| "bad hex".to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::wire::{Headers, ResponseHead};

    #[test]
    fn an_entry_survives_encoding() {
        let mut head = ResponseHead::new(200, "OK");
        head.headers.push("Cache-Control", "max-age=60");
        head.headers.push("Vary", "Accept-Language");
        head.headers.push("Content-Length", "5");
        let mut request = Headers::default();
        request.push("Accept-Language", "en");
        let now = UNIX_EPOCH + Duration::new(1_764_000_000, 123);
        let entry = Entry::new(
            head,
            "hello".into(),
            &request,
            (now, now),
            &Targeting::default(),
        )
        .unwrap();
        let (key, back) = decode(&encode("http://h:80/x", &entry), &Targeting::default()).unwrap();
        assert_eq!(key, "http://h:80/x");
        assert_eq!(back.body, "hello");
        assert_eq!(back.head, entry.head);
        assert_eq!(back.vary, entry.vary);
        assert_eq!(back.request_time, now);
    }

    #[test]
    fn damaged_files_are_refused_with_a_reason() {
        let targeting = Targeting::default();
        assert!(decode(b"garbage", &targeting).is_err());
        assert!(decode(
            b"proxylab-cache 1\nkey: k\n\nHTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort",
            &targeting
        )
        .is_err());
    }
}
