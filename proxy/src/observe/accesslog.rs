//! The access log: one line per request (and per CONNECT tunnel, when it closes), in
//! Squid's native format, Apache's common or combined format, or JSON lines.
//!
//! Takes: the finished [`RequestContext`]. Returns: nothing; lines go through a channel to
//! a writer thread, which writes them in batches (no system call per request on the hot
//! path) and reopens the file on SIGUSR1 (log rotation). Text fields are escaped so a
//! hostile URL or header can never forge a line: `"`, `\` and control characters become
//! `\"`, `\\`, `\r`, `\n`, `\xHH`.

use crate::config::LogFormat;
use crate::request::RequestContext;
use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::SystemTime;

/// A field as the text formats print it: escaped, `-` when absent or empty.
pub fn escape(text: &str) -> String {
    if text.is_empty() {
        return "-".into();
    }
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("\\x{b:02X}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

fn opt(text: &Option<String>) -> String {
    escape(text.as_deref().unwrap_or(""))
}

/// A field of Squid's space-separated format: escaped, and spaces as `%20`.
fn squid_field(text: &str) -> String {
    escape(text).replace(' ', "%20")
}

/// Squid's hierarchy field: `HIER_DIRECT/<ip>`, the address actually connected to, else
/// `HIER_NONE/-` (a hit, a refusal, an upstream that could not be reached).
fn hierarchy(ctx: &RequestContext) -> String {
    match ctx.upstream_peer {
        Some(peer) => format!("HIER_DIRECT/{}", peer.ip().to_canonical()),
        None => "HIER_NONE/-".into(),
    }
}

/// `10/Oct/2000:13:55:36 +0000` (Apache's time format, in UTC).
fn apache_time(t: SystemTime) -> String {
    // humantime gives 2000-10-10T13:55:36Z.
    let iso = humantime::format_rfc3339_seconds(t).to_string();
    let month = |m: &str| match m {
        "01" => "Jan",
        "02" => "Feb",
        "03" => "Mar",
        "04" => "Apr",
        "05" => "May",
        "06" => "Jun",
        "07" => "Jul",
        "08" => "Aug",
        "09" => "Sep",
        "10" => "Oct",
        "11" => "Nov",
        _ => "Dec",
    };
    match (
        iso.get(0..4),
        iso.get(5..7),
        iso.get(8..10),
        iso.get(11..19),
    ) {
        (Some(y), Some(m), Some(d), Some(hms)) => format!("{d}/{}/{y}:{hms} +0000", month(m)),
        _ => iso,
    }
}

/// One access log line (without the newline) for a request that ended at `now` after
/// `elapsed`.
pub fn format_line(
    format: LogFormat,
    ctx: &RequestContext,
    now: SystemTime,
    elapsed: std::time::Duration,
) -> String {
    match format {
        LogFormat::Squid => squid_line(ctx, now, elapsed),
        LogFormat::Common | LogFormat::Combined => apache_line(format, ctx, now),
        LogFormat::Json => json_line(ctx, now, elapsed),
    }
}

/// Squid's native format: time, elapsed ms, client, result/status, bytes, method, URL,
/// user, hierarchy, type.
fn squid_line(ctx: &RequestContext, now: SystemTime, elapsed: std::time::Duration) -> String {
    let since = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "{}.{:03} {:>6} {} {}/{:03} {} {} {} {} {} {}",
        since.as_secs(),
        since.subsec_millis(),
        elapsed.as_millis(),
        ctx.peer.ip(),
        ctx.result,
        ctx.status,
        // Squid counts the whole reply: head and body.
        ctx.head_down + ctx.bytes_down,
        squid_field(&ctx.method),
        squid_field(&ctx.target),
        squid_field(ctx.user.as_deref().unwrap_or("")),
        hierarchy(ctx),
        // The media type alone, as Squid logs it.
        squid_field(
            ctx.content_type
                .as_deref()
                .and_then(|t| t.split(';').next())
                .unwrap_or("")
                .trim()
        ),
    )
}

/// Apache's common format, and combined (common plus Referer and User-Agent).
fn apache_line(format: LogFormat, ctx: &RequestContext, now: SystemTime) -> String {
    let user = opt(&ctx.user);
    let bytes = if ctx.bytes_down == 0 {
        "-".to_string()
    } else {
        ctx.bytes_down.to_string()
    };
    let mut line = format!(
        "{} - {} [{}] \"{} {} {}\" {} {}",
        ctx.peer.ip(),
        user,
        apache_time(now),
        escape(&ctx.method),
        escape(&ctx.target),
        ctx.version.as_str(),
        ctx.status,
        bytes,
    );
    if format == LogFormat::Combined {
        line.push_str(&format!(
            " \"{}\" \"{}\"",
            opt(&ctx.referer),
            opt(&ctx.user_agent)
        ));
    }
    line
}

/// One JSON object per line, every field of the request's record.
fn json_line(ctx: &RequestContext, now: SystemTime, elapsed: std::time::Duration) -> String {
    let since = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    serde_json::json!({
        "time": since.as_secs_f64(),
        "id": ctx.id,
        "client": ctx.peer.to_string(),
        "user": ctx.user,
        "method": ctx.method,
        "url": ctx.target,
        "version": ctx.version.as_str(),
        "status": ctx.status,
        "result": ctx.result,
        "head_bytes_up": ctx.head_up,
        "bytes_up": ctx.bytes_up,
        "head_bytes_down": ctx.head_down,
        "bytes_down": ctx.bytes_down,
        "elapsed_ms": elapsed.as_secs_f64() * 1e3,
        "upstream": ctx.upstream.as_ref().map(|u| u.to_string()),
        "upstream_reused": ctx.upstream_reused,
        "content_type": ctx.content_type,
        "referer": ctx.referer,
        "user_agent": ctx.user_agent,
        "blocked_by": ctx.blocked_by,
        "error": ctx.error,
    })
    .to_string()
}

enum Message {
    Line(String),
    Reopen,
}

/// The access log's writer: a thread fed by a channel.
#[derive(Debug)]
pub struct AccessLog {
    format: LogFormat,
    tx: std::sync::Mutex<Option<mpsc::Sender<Message>>>,
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// Where lines go.
enum Sink {
    Stdout,
    File(PathBuf, std::io::BufWriter<std::fs::File>),
}

impl Sink {
    fn open(path: &std::path::Path) -> std::io::Result<Sink> {
        if path.as_os_str() == "-" {
            return Ok(Sink::Stdout);
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Sink::File(
            path.to_path_buf(),
            std::io::BufWriter::with_capacity(64 * 1024, file),
        ))
    }

    fn write(&mut self, line: &str) {
        let result = match self {
            Sink::Stdout => writeln!(std::io::stdout().lock(), "{line}"),
            Sink::File(_, w) => writeln!(w, "{line}"),
        };
        if let Err(e) = result {
            tracing::warn!("access log: write failed: {e}");
        }
    }

    /// After log rotation moved the file away: close it and open a new one at the path.
    fn reopen(&mut self) {
        self.flush();
        if let Sink::File(path, _) = self {
            match Sink::open(&path.clone()) {
                Ok(s) => {
                    *self = s;
                    tracing::info!("access log reopened");
                }
                Err(e) => tracing::error!("access log: cannot reopen {}: {e}", path.display()),
            }
        }
    }

    fn flush(&mut self) {
        let _ = match self {
            Sink::Stdout => std::io::stdout().flush(),
            Sink::File(_, w) => w.flush(),
        };
    }
}

impl AccessLog {
    /// Opens (appends to) `path`, or stdout for `-`.
    pub fn open(path: &std::path::Path, format: LogFormat) -> std::io::Result<AccessLog> {
        let sink = Sink::open(path)?;
        let (tx, rx) = mpsc::channel::<Message>();
        let thread = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || {
                let sink = std::cell::RefCell::new(sink);
                crate::observe::batch::drain_in_ticks(
                    rx,
                    |message| {
                        let mut sink = sink.borrow_mut();
                        match message {
                            Message::Line(line) => sink.write(&line),
                            Message::Reopen => sink.reopen(),
                        }
                    },
                    || sink.borrow_mut().flush(),
                );
            })?;
        Ok(AccessLog {
            format,
            tx: std::sync::Mutex::new(Some(tx)),
            thread: std::sync::Mutex::new(Some(thread)),
        })
    }

    /// Whether its lines print request headers (Referer, User-Agent): combined and JSON.
    pub fn wants_headers(&self) -> bool {
        matches!(self.format, LogFormat::Combined | LogFormat::Json)
    }

    fn send(&self, message: Message) {
        if let Ok(tx) = self.tx.lock() {
            if let Some(tx) = tx.as_ref() {
                let _ = tx.send(message);
            }
        }
    }

    pub fn write(&self, ctx: &RequestContext) {
        let line = format_line(self.format, ctx, SystemTime::now(), ctx.started.elapsed());
        self.send(Message::Line(line));
    }

    /// Closes and reopens the file (after it was moved away by log rotation).
    pub fn reopen(&self) {
        self.send(Message::Reopen);
    }

    /// Writes out everything queued and stops the writer (at shutdown).
    pub fn close(&self) {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::target::Authority;
    use crate::http::wire::Version;
    use std::time::{Duration, Instant};

    /// A finished request whose URL and headers try to forge log lines and fields.
    fn hostile() -> RequestContext {
        RequestContext {
            id: 7,
            peer: "127.0.0.1:50000".parse().unwrap(),
            started: Instant::now(),
            method: "GET".into(),
            target: "http://site.example/a\"b\\c\r\nFAKE 200 line\x07".into(),
            status: 200,
            bytes_up: 0,
            head_up: 180,
            bytes_down: 1234,
            head_down: 230,
            upstream: Some(Authority {
                host: "site.example".into(),
                port: 80,
            }),
            // An address of the documentation range (RFC 5737): only a string here.
            upstream_peer: Some("192.0.2.10:80".parse().unwrap()),
            upstream_reused: true,
            error: None,
            version: Version::Http11,
            user: Some("ann".into()),
            result: "TCP_MISS",
            content_type: Some("text/html; charset=utf-8".into()),
            referer: Some("http://ref.example/\" injected=\"1".into()),
            user_agent: Some("Mozilla/5.0 (X11; Linux)\nsecond line".into()),
            blocked_by: None,
            head_refused: false,
        }
    }

    // 2026-11-23T10:00:00.250Z and 42 ms: fixed, so the snapshots need no redaction.
    fn at() -> (SystemTime, Duration) {
        (
            SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_428_000_250),
            Duration::from_millis(42),
        )
    }

    #[test]
    fn every_format_escapes_hostile_fields() {
        let (now, elapsed) = at();
        let ctx = hostile();
        let lines: Vec<String> = [
            LogFormat::Squid,
            LogFormat::Common,
            LogFormat::Combined,
            LogFormat::Json,
        ]
        .into_iter()
        .map(|f| format_line(f, &ctx, now, elapsed))
        .collect();
        for line in &lines {
            assert!(!line.contains('\n') && !line.contains('\r'), "{line}");
        }
        // The squid format stays ten space-separated fields whatever the URL holds.
        assert_eq!(lines[0].split(' ').filter(|f| !f.is_empty()).count(), 10);
        let json: serde_json::Value = serde_json::from_str(&lines[3]).unwrap();
        assert_eq!(json["url"], ctx.target.as_str());
        insta::assert_snapshot!(lines.join("\n"));
    }

    #[test]
    fn hits_denials_and_tunnels_in_squid_format() {
        let (now, elapsed) = at();
        let mut ctx = hostile();
        ctx.target = "http://site.example/".into();
        ctx.user = None;
        let mut lines = Vec::new();
        let peer = ctx.upstream_peer;
        for (result, status, method, target, dialed) in [
            ("TCP_HIT", 200, "GET", "http://site.example/", None),
            ("TCP_DENIED", 403, "GET", "http://blocked.example/", None),
            ("TCP_DENIED", 403, "CONNECT", "blocked.example:443", None),
            ("TCP_TUNNEL", 200, "CONNECT", "site.example:443", peer),
            ("NONE", 502, "GET", "http://down.example/", None),
        ] {
            ctx.upstream_peer = dialed;
            ctx.result = result;
            ctx.status = status;
            ctx.method = method.into();
            ctx.target = target.into();
            ctx.content_type = None;
            lines.push(format_line(LogFormat::Squid, &ctx, now, elapsed));
        }
        insta::assert_snapshot!(lines.join("\n"));
    }

    #[test]
    fn reopen_starts_a_new_file_after_rotation() {
        let dir = std::env::temp_dir().join(format!("proxylab-log-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("access.log");
        let _ = std::fs::remove_file(&path);
        let log = AccessLog::open(&path, LogFormat::Common).unwrap();
        let mut ctx = hostile();
        ctx.target = "http://first.example/".into();
        log.write(&ctx);
        // Rotation: the file is moved away, then the proxy is told to reopen.
        let rotated = dir.join("access.log.1");
        // Wait for the first line to be written before moving the file.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read_to_string(&path)
            .unwrap_or_default()
            .is_empty()
        {
            assert!(Instant::now() < deadline, "the first line never arrived");
            std::thread::yield_now();
        }
        std::fs::rename(&path, &rotated).unwrap();
        log.reopen();
        ctx.target = "http://second.example/".into();
        log.write(&ctx);
        log.close();
        let old = std::fs::read_to_string(&rotated).unwrap();
        let new = std::fs::read_to_string(&path).unwrap();
        assert!(
            old.contains("first.example") && !old.contains("second.example"),
            "{old}"
        );
        assert!(
            new.contains("second.example") && !new.contains("first.example"),
            "{new}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
