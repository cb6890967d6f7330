//! Whose program is it? proxylab's own binaries carry a mark (a string in each executable,
//! `static IDENTITY` in their `main.rs`); a subject that runs one of them — origin-sim's
//! chat room as its lab 1 answer, the reference inside `lab`, the proxy itself — is refused,
//! whatever the file is called and wherever it was copied. Off-the-shelf proxies (Squid,
//! Tinyproxy, mitmproxy …) are refused by the name of their executable: they are not the
//! student's program either.

use std::collections::HashMap;
use std::io::Read as _;
use std::path::Path;
use std::sync::Mutex;

/// What marks a proxylab executable, up to the program's name: `\x01proxylab-identity
/// NAME\x01`. Kept in two halves here so that only the executables themselves hold it whole.
fn needle() -> Vec<u8> {
    [&b"\x01proxylab-"[..], &b"identity "[..]].concat()
}

/// The names proxylab's executables carry, and how a report says them.
pub fn describe(name: &str) -> &'static str {
    match name {
        "origin-sim" => "proxylab's origin-sim (its chat room is lab 1's reference)",
        "proxy" => "proxylab's reference proxy",
        "lab+reference" => "proxylab's grader, with the reference proxy inside",
        "lab" => "proxylab's grader",
        "client" => "proxylab's client",
        _ => "one of proxylab's own programs",
    }
}

/// Executables of well-known proxies, which are nobody's homework.
const KNOWN_PROXIES: &[(&str, &str)] = &[
    ("squid", "Squid"),
    ("tinyproxy", "Tinyproxy"),
    ("privoxy", "Privoxy"),
    ("traffic_server", "Apache Traffic Server"),
    ("haproxy", "HAProxy"),
    ("nginx", "nginx"),
    ("polipo", "Polipo"),
    ("3proxy", "3proxy"),
    ("varnishd", "Varnish"),
    ("mitmdump", "mitmproxy"),
    ("mitmproxy", "mitmproxy"),
    ("mitmweb", "mitmproxy"),
];

/// Whose a process is, when it is not the student's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Foreign {
    /// One of proxylab's executables (the name in its mark).
    Ours(String),
    /// A well-known proxy.
    Known(&'static str),
}

impl Foreign {
    /// The refusal, for the report.
    pub fn refusal(&self, exe: &str) -> String {
        match self {
            Foreign::Ours(name) => format!(
                "refused: your program ran {} ({exe}); a submission must be a program of your own",
                describe(name)
            ),
            Foreign::Known(which) => format!(
                "refused: your program ran {which} ({exe}), an off-the-shelf proxy; a submission must be a program of your own"
            ),
        }
    }
}

/// The proxylab name marked in `bytes`, if any.
pub fn mark_in(bytes: &[u8]) -> Option<String> {
    let needle = needle();
    let at = memchr::memmem::find(bytes, &needle)? + needle.len();
    let rest = &bytes[at..bytes.len().min(at + 64)];
    let end = memchr::memchr(1, rest)?;
    std::str::from_utf8(&rest[..end]).ok().map(str::to_string)
}

/// The proxylab name marked in the executable at `path` (read whole, up to 512 MiB).
pub fn mark_of_file(path: &Path) -> Option<String> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .ok()?
        .take(512 << 20)
        .read_to_end(&mut bytes)
        .ok()?;
    mark_in(&bytes)
}

/// The mark found in each executable already read (by device and inode), if any.
type Marks = HashMap<(u64, u64), Option<String>>;

/// Executables already read (each is read once per grader process).
static SEEN: Mutex<Option<Marks>> = Mutex::new(None);

/// Whose process `pid` is, judged by its executable (and, for a script, the script's name).
pub fn of_process(pid: u32) -> Option<(Foreign, String)> {
    use std::os::unix::fs::MetadataExt as _;
    let exe_link = format!("/proc/{pid}/exe");
    let shown = std::fs::read_link(&exe_link)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| exe_link.clone());
    let base = |s: &str| {
        s.trim_end_matches(" (deleted)")
            .rsplit('/')
            .next()
            .unwrap_or("")
            .to_string()
    };
    let exe = base(&shown);
    // mitmproxy is a Python program: its executable is python, its script is the name.
    let script = std::fs::read(format!("/proc/{pid}/cmdline"))
        .ok()
        .and_then(|c| {
            c.split(|&b| b == 0)
                .nth(1)
                .map(|a| base(&String::from_utf8_lossy(a)))
        })
        .filter(|s| s.starts_with("mitm"));
    if let Some((_, which)) = KNOWN_PROXIES
        .iter()
        .find(|(name, _)| exe == *name || script.as_deref() == Some(name))
    {
        return Some((Foreign::Known(which), shown));
    }
    let file = std::fs::File::open(&exe_link).ok()?;
    let meta = file.metadata().ok()?;
    let key = (meta.dev(), meta.ino());
    let known = {
        let seen = SEEN.lock().unwrap_or_else(|p| p.into_inner());
        seen.as_ref().and_then(|m| m.get(&key).cloned())
    };
    let mark = match known {
        Some(mark) => mark,
        None => {
            let mut bytes = Vec::new();
            let mark = file
                .take(512 << 20)
                .read_to_end(&mut bytes)
                .ok()
                .and_then(|_| mark_in(&bytes));
            SEEN.lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_or_insert_with(HashMap::new)
                .insert(key, mark.clone());
            mark
        }
    };
    mark.map(|name| (Foreign::Ours(name), shown))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_is_found_anywhere_in_an_executable_and_names_the_program() {
        let mut exe = vec![0u8; 10_000];
        // Built from its halves: a whole mark here would make this test binary "ours".
        exe.extend_from_slice(&needle());
        exe.extend_from_slice(b"origin-sim\x01");
        exe.extend_from_slice(&[7u8; 100]);
        assert_eq!(mark_in(&exe).as_deref(), Some("origin-sim"));
        assert_eq!(mark_in(&needle()), None);
        assert_eq!(mark_in(&[0u8; 100]), None);
    }

    #[test]
    fn this_test_program_is_nobodys_foreign_program() {
        // The test binary links the grader's library but none of the marks.
        assert_eq!(of_process(std::process::id()), None);
    }
}
