//! The routes: one function decides what each request gets.

use crate::{After, Origin, SeededBytes};
use proxy::http::range::{self, Part};
use proxy::http::wire::{self, copy_body, Framing, Reader, RequestHead, ResponseHead, Version};
use std::io;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Every route, with what it does: shown by `origin-sim --help`, `GET /`, and the README.
pub const ROUTES: &[(&str, &str)] = &[
    ("/", "this index"),
    ("/bytes/N", "N seeded bytes with Content-Length"),
    (
        "/text/N",
        "N seeded bytes of printable text in lines, with Content-Length (/text/chunked/N and /text/close/N: those framings with text)",
    ),
    (
        "/chunked/N?chunk=K",
        "N seeded bytes, chunked (seeded chunk sizes, or K each); to HTTP/1.0, ended by the close",
    ),
    (
        "/close/N",
        "N seeded bytes, no length: the body ends when the connection closes",
    ),
    (
        "/delay/MS",
        "a short body after waiting MS milliseconds (at most 60000)",
    ),
    (
        "/drip/N?ms=M",
        "N seeded bytes with Content-Length, one byte every M ms (default 100)",
    ),
    (
        "/status/CODE",
        "that status code (200-599) with a one-line body",
    ),
    (
        "/headers",
        "JSON of the request as received: method, target, version, headers in order",
    ),
    (
        "/echo",
        "any method: the request body back, with its Content-Type (streamed)",
    ),
    (
        "/redirect/N",
        "302 to /redirect/N-1; /redirect/0 answers 200",
    ),
    (
        "/reset",
        "promises 1000000 bytes, sends 1000, then resets the connection (RST)",
    ),
    (
        "/hang",
        "reads the request and never answers (until the client closes)",
    ),
    ("/truncate/N", "promises N bytes, sends half, closes"),
    (
        "/malformed",
        "answers with an invalid status line, then closes",
    ),
    (
        "/cache/N",
        "Cache-Control: max-age=N, an ETag and a fixed Last-Modified; 304 to matching conditionals; 206 to one byte Range (If-Range honoured); ?bytes=M for a body of M seeded bytes, ?text=M for M bytes of seeded text",
    ),
    (
        "/etag/TAG?max-age=N",
        "ETag \"TAG\", max-age N (default 0); 304 to a matching If-None-Match",
    ),
    (
        "/lastmod/UNIX?max-age=N",
        "Last-Modified at UNIX seconds, max-age N (default 0); 304 to If-Modified-Since",
    ),
    ("/nostore", "Cache-Control: no-store"),
    ("/private", "Cache-Control: private, max-age=60"),
    (
        "/nocache",
        "Cache-Control: no-cache with an ETag (must be revalidated every time)",
    ),
    (
        "/vary/HEADER",
        "Vary: HEADER, max-age=60; the body shows the request's HEADER value",
    ),
    (
        "/expires/N",
        "Expires N seconds from now (and Date), no Cache-Control",
    ),
    (
        "/heuristic",
        "only a Last-Modified ten days ago (a cache may use heuristic freshness)",
    ),
    (
        "/gate/NAME?cc=CC",
        "held until gate NAME is opened (/open/NAME); Cache-Control CC (default max-age=60)",
    ),
    (
        "/response-headers?K=V",
        "each query pair K=V as a response header (percent-decoded; V=SELF is the request's own target); max-age=60 unless given",
    ),
    (
        "/gatebody/NAME?head=H",
        "the head at once (or once gate H opens), the body once gate NAME opens; ?cc= as /gate",
    ),
    (
        "/hits?prefix=P",
        "how many times each target starting with P was requested, and in all (plain text)",
    ),
    (
        "/open/NAME",
        "opens gate NAME: held and later /gate/NAME responses go out",
    ),
];

/// One request, with what the origin knows about it.
pub(crate) struct Exchange<'a> {
    pub origin: &'a Origin,
    /// The request-target as it arrived (`head.target` is its origin-form).
    pub received: String,
    pub head: RequestHead,
    pub hits: u64,
    pub conn_id: u64,
}

/// A client connection (plain TCP or TLS), split so /echo can stream the body back while
/// reading it.
pub(crate) struct Conn<R, W> {
    pub reader: Reader<R>,
    pub writer: W,
}

/// What a connection's halves must be able to do.
pub(crate) trait Rd: AsyncRead + Unpin + Send {}
impl<T: AsyncRead + Unpin + Send> Rd for T {}
pub(crate) trait Wr: AsyncWrite + Unpin + Send {}
impl<T: AsyncWrite + Unpin + Send> Wr for T {}

pub(crate) async fn respond<R: Rd, W: Wr>(
    ex: Exchange<'_>,
    conn: &mut Conn<R, W>,
) -> io::Result<After> {
    let framing = match wire::request_framing(&ex.head) {
        Ok(f) => f,
        Err(why) => return simple(&ex, conn, 400, why.as_bytes(), false).await,
    };
    if framing != Framing::Empty && ex.head.headers.has_token("expect", "100-continue") {
        conn.writer
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await?;
    }
    let (path, query) = ex
        .head
        .target
        .split_once('?')
        .unwrap_or((ex.head.target.as_str(), ""));
    let path = path.to_string();
    let query = query.to_string();
    let mut segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    // `/text/chunked/N`, `/text/close/N`: those framings with a text body. (In the path, not
    // the query: a program that drops queries still gets the body it asked for.)
    let text =
        segments.len() == 3 && segments[0] == "text" && matches!(segments[1], "chunked" | "close");
    if text {
        segments.remove(0);
    }
    let number = |i: usize| segments.get(i).and_then(|s| s.parse::<u64>().ok());

    if segments.first() == Some(&"echo") && segments.len() == 1 {
        return echo(&ex, conn, framing).await;
    }
    // Every other route ignores the request body; read it so the connection stays usable.
    let drained = wire::discard_body(&mut conn.reader, framing, None)
        .await
        .is_ok();
    if !drained {
        return Ok(After::Close);
    }
    let seed = ex.origin.seed;
    match (segments.as_slice(), number(1)) {
        ([""], _) => {
            let mut page = String::from("origin-sim: a deterministic origin for proxylab.\n\n");
            for (route, what) in ROUTES {
                page.push_str(&format!("  {route:<24} {what}\n"));
            }
            simple(&ex, conn, 200, page.as_bytes(), true).await
        }
        ([kind @ ("bytes" | "text"), _], Some(n)) => {
            let body = Seeded::of(seed, n, *kind == "text");
            let mut head = base(&ex, 200);
            head.headers.push("Content-Type", body.content_type());
            head.headers.push("Content-Length", n.to_string());
            send_seeded(&ex, conn, head, body, BodyStyle::Plain).await
        }
        // No chunked coding to an HTTP/1.0 request (RFC 9112 §6.1): the body ends at the
        // close instead.
        (["chunked", _], Some(n)) if ex.head.version == Version::Http10 => {
            send_until_close(&ex, conn, Seeded::of(seed, n, text)).await
        }
        (["chunked", _], Some(n)) => {
            let fixed = query_value(&query, "chunk")
                .and_then(|v| v.parse().ok())
                .filter(|&k| k > 0);
            let body = Seeded::of(seed, n, text);
            let mut head = base(&ex, 200);
            head.headers.push("Content-Type", body.content_type());
            head.headers.push("Transfer-Encoding", "chunked");
            send_seeded(&ex, conn, head, body, BodyStyle::Chunked(fixed)).await
        }
        (["close", _], Some(n)) => send_until_close(&ex, conn, Seeded::of(seed, n, text)).await,
        (["delay", _], Some(ms)) => {
            let ms = ms.min(60_000);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            simple(
                &ex,
                conn,
                200,
                format!("delayed {ms} ms\n").as_bytes(),
                true,
            )
            .await
        }
        (["drip", _], Some(n)) => {
            let ms = query_value(&query, "ms")
                .and_then(|v| v.parse().ok())
                .unwrap_or(100);
            let mut head = base(&ex, 200);
            head.headers
                .push("Content-Type", "application/octet-stream");
            head.headers.push("Content-Length", n.to_string());
            send_seeded(
                &ex,
                conn,
                head,
                Seeded::of(seed, n, false),
                BodyStyle::Drip(Duration::from_millis(ms)),
            )
            .await
        }
        (["status", _], Some(code)) if (200..=599).contains(&code) => {
            status(&ex, conn, code as u16).await
        }
        (["cache", _], Some(secs)) => {
            let validators = Validators {
                etag: Some(format!("\"cache-{secs}\"")),
                modified: Some(fixed_last_modified()),
            };
            let cc = format!("max-age={secs}");
            // `?bytes=M` (or `?text=M`): a body of M seeded bytes (at most 64 MiB), for size
            // limits.
            let sized = |key| query_value(&query, key).and_then(|b| b.parse::<u64>().ok());
            let body = match (sized("bytes"), sized("text")) {
                // The same bytes as /bytes/M (or /text/M).
                (Some(n), _) => crate::seeded_body(seed, n.min(64 << 20)),
                (None, Some(n)) => crate::seeded_text(seed, n.min(64 << 20)),
                (None, None) => format!("fresh for {secs} s\n").into_bytes(),
            };
            cached(&ex, conn, &validators, &[("Cache-Control", &cc)], body).await
        }
        (["etag", tag], _) => {
            let validators = Validators {
                etag: Some(format!("\"{tag}\"")),
                modified: None,
            };
            let cc = format!("max-age={}", query_value(&query, "max-age").unwrap_or("0"));
            cached(
                &ex,
                conn,
                &validators,
                &[("Cache-Control", &cc)],
                format!("etag {tag}\n"),
            )
            .await
        }
        (["lastmod", _], Some(unix)) => {
            let validators = Validators {
                etag: None,
                modified: Some(UNIX_EPOCH + Duration::from_secs(unix)),
            };
            let cc = format!("max-age={}", query_value(&query, "max-age").unwrap_or("0"));
            cached(
                &ex,
                conn,
                &validators,
                &[("Cache-Control", &cc)],
                format!("modified at {unix}\n"),
            )
            .await
        }
        (["nostore"], _) => {
            let v = Validators::none();
            cached(
                &ex,
                conn,
                &v,
                &[("Cache-Control", "no-store")],
                "never store this\n",
            )
            .await
        }
        (["private"], _) => {
            let v = Validators::none();
            let cc = [("Cache-Control", "private, max-age=60")];
            cached(&ex, conn, &v, &cc, "for one user only\n").await
        }
        (["nocache"], _) => {
            let v = Validators {
                etag: Some("\"nocache\"".into()),
                modified: None,
            };
            let cc = [("Cache-Control", "no-cache")];
            cached(&ex, conn, &v, &cc, "revalidate me every time\n").await
        }
        (["vary", name], _) => {
            let value = ex
                .head
                .headers
                .get(name)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default();
            let v = Validators::none();
            let extra = [("Cache-Control", "max-age=60"), ("Vary", *name)];
            cached(&ex, conn, &v, &extra, format!("{name}: {value}\n")).await
        }
        (["expires", _], Some(secs)) => {
            let expires = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(secs));
            let v = Validators::none();
            cached(
                &ex,
                conn,
                &v,
                &[("Expires", &expires)],
                format!("expires in {secs} s\n"),
            )
            .await
        }
        (["heuristic"], _) => {
            // Last-Modified ten days ago and nothing else: a cache may keep it one day.
            let v = Validators {
                etag: None,
                modified: Some(SystemTime::now() - Duration::from_secs(10 * 86_400)),
            };
            cached(&ex, conn, &v, &[], "heuristically fresh\n").await
        }
        (["gate", name], _) => {
            ex.origin.wait_gate(name).await;
            let v = Validators::none();
            let cc = [(
                "Cache-Control",
                query_value(&query, "cc").unwrap_or("max-age=60"),
            )];
            cached(&ex, conn, &v, &cc, format!("gate {name} opened\n")).await
        }
        (["gatebody", name], _) => {
            // The head goes out at once (or once gate `head` opens); the body waits for gate
            // NAME: a test can tell what a proxy does with a head before the body comes.
            if let Some(gate) = query_value(&query, "head") {
                ex.origin.wait_gate(gate).await;
            }
            let body = format!("gate {name} opened\n");
            let mut head = base(&ex, 200);
            let cc = query_value(&query, "cc").unwrap_or("max-age=60");
            head.headers.push("Cache-Control", cc);
            head.headers
                .push("Content-Type", "text/plain; charset=utf-8");
            head.headers.push("Content-Length", body.len().to_string());
            let mut out = Vec::with_capacity(256);
            head.write_to(&mut out);
            conn.writer.write_all(&out).await?;
            conn.writer.flush().await?;
            if !is_head(&ex) {
                ex.origin.wait_gate(name).await;
                conn.writer.write_all(body.as_bytes()).await?;
            }
            Ok(keep_alive(&ex))
        }
        (["response-headers"], _) => {
            // Every query pair becomes a response header field (percent-decoded), so a test
            // can send exactly the caching fields it needs; max-age=60 unless it says.
            let mut head = base(&ex, 200);
            let mut has_cc = false;
            for (name, value) in query.split('&').filter_map(|kv| kv.split_once('=')) {
                let (name, mut value) = (percent_decode(name), percent_decode(value));
                if value == "SELF" {
                    // The request's own target (origin-form), e.g. for Content-Location.
                    value = origin_form(&ex.head.target).to_string();
                }
                has_cc |= name.eq_ignore_ascii_case("cache-control");
                head.headers.push(name, value);
            }
            if !has_cc {
                head.headers.push("Cache-Control", "max-age=60");
            }
            send(&ex, conn, head, b"response headers as asked\n", true).await
        }
        (["open", name], _) => {
            ex.origin.open_gate(name);
            simple(
                &ex,
                conn,
                200,
                format!("gate {name} is open\n").as_bytes(),
                true,
            )
            .await
        }
        (["hits"], _) => {
            let prefix = query_value(&query, "prefix").unwrap_or("/");
            let counts = ex.origin.hits_under(prefix);
            let total: u64 = counts.iter().map(|(_, n)| n).sum();
            let mut text = format!(
                "{total} requests for {} targets starting with {prefix}\n",
                counts.len()
            );
            for (target, n) in counts {
                text.push_str(&format!("{n:>6}  {target}\n"));
            }
            simple(&ex, conn, 200, text.as_bytes(), true).await
        }
        (["headers"], _) => {
            let json = headers_json(&ex.head, &ex.received);
            let mut head = base(&ex, 200);
            head.headers.push("Content-Type", "application/json");
            send(&ex, conn, head, json.as_bytes(), true).await
        }
        (["redirect", _], Some(0)) => simple(&ex, conn, 200, b"redirect chain done\n", true).await,
        (["redirect", _], Some(n)) => {
            let mut head = base(&ex, 302);
            head.headers
                .push("Location", format!("/redirect/{}", n - 1));
            let body = format!("redirecting to /redirect/{}\n", n - 1);
            head.headers.push("Content-Length", body.len().to_string());
            send(&ex, conn, head, body.as_bytes(), true).await
        }
        (["reset"], _) => {
            let mut head = base(&ex, 200);
            head.headers.push("Content-Length", "1000000");
            let mut out = Vec::new();
            head.write_to(&mut out);
            out.extend(crate::seeded_body(seed, 1000));
            conn.writer.write_all(&out).await?;
            Ok(After::Reset)
        }
        (["hang"], _) => {
            let mut scratch = [0u8; 1024];
            while conn.reader.get_mut().read(&mut scratch).await? > 0 {}
            Ok(After::Close)
        }
        (["truncate", _], Some(n)) => {
            let mut head = base(&ex, 200);
            head.headers.push("Content-Length", n.to_string());
            let mut out = Vec::new();
            head.write_to(&mut out);
            out.extend(crate::seeded_body(seed, n / 2));
            conn.writer.write_all(&out).await?;
            Ok(After::Close)
        }
        (["malformed"], _) => {
            conn.writer
                .write_all(b"HTTP/1.1 OK 200 Broken\r\nthis is not a header\r\n\r\n")
                .await?;
            Ok(After::Close)
        }
        _ => simple(&ex, conn, 404, b"no such route (GET / lists them)", true).await,
    }
}

/// A response head with origin-sim's counters.
fn base(ex: &Exchange<'_>, status: u16) -> ResponseHead {
    let mut head = ResponseHead::new(status, reason(status));
    // Dates are in headers only, never in bodies: bodies stay deterministic.
    head.headers
        .push("Date", httpdate::fmt_http_date(SystemTime::now()));
    head.headers.push("Server", "origin-sim");
    head.headers.push("X-Origin-Hits", ex.hits.to_string());
    head.headers.push("X-Origin-Conn", ex.conn_id.to_string());
    head
}

fn keep_alive(ex: &Exchange<'_>) -> After {
    if ex.head.wants_keep_alive() {
        After::KeepAlive
    } else {
        After::Close
    }
}

fn is_head(ex: &Exchange<'_>) -> bool {
    ex.head.method.eq_ignore_ascii_case("HEAD")
}

/// A short text response; `ok` false means the connection then closes.
async fn simple<R: Rd, W: Wr>(
    ex: &Exchange<'_>,
    conn: &mut Conn<R, W>,
    status: u16,
    text: &[u8],
    ok: bool,
) -> io::Result<After> {
    let mut body = text.to_vec();
    if !body.ends_with(b"\n") {
        body.push(b'\n');
    }
    let mut head = base(ex, status);
    head.headers
        .push("Content-Type", "text/plain; charset=utf-8");
    head.headers.push("Content-Length", body.len().to_string());
    if !ok {
        head.headers.push("Connection", "close");
    }
    let after = send(ex, conn, head, &body, ok).await?;
    Ok(if ok { after } else { After::Close })
}

/// Writes `head` (with `Content-Length` already set) and `body` in one write.
async fn send<R: Rd, W: Wr>(
    ex: &Exchange<'_>,
    conn: &mut Conn<R, W>,
    mut head: ResponseHead,
    body: &[u8],
    _ok: bool,
) -> io::Result<After> {
    if !head.headers.contains("content-length") {
        head.headers.push("Content-Length", body.len().to_string());
    }
    let mut out = Vec::with_capacity(256 + body.len());
    head.write_to(&mut out);
    if !is_head(ex) {
        out.extend_from_slice(body);
    }
    conn.writer.write_all(&out).await?;
    Ok(keep_alive(ex))
}

async fn status<R: Rd, W: Wr>(
    ex: &Exchange<'_>,
    conn: &mut Conn<R, W>,
    code: u16,
) -> io::Result<After> {
    let mut head = base(ex, code);
    if matches!(code, 301 | 302 | 303 | 307 | 308) {
        head.headers.push("Location", "/");
    }
    if code == 204 || code == 304 {
        let mut out = Vec::new();
        head.write_to(&mut out);
        conn.writer.write_all(&out).await?;
        return Ok(keep_alive(ex));
    }
    let body = format!("{code} {}\n", reason(code));
    head.headers
        .push("Content-Type", "text/plain; charset=utf-8");
    send(ex, conn, head, body.as_bytes(), true).await
}

enum BodyStyle {
    Plain,
    Chunked(Option<u64>),
    Drip(Duration),
}

/// A seeded body: its seed, its length, binary or text.
#[derive(Debug, Clone, Copy)]
struct Seeded {
    seed: u64,
    n: u64,
    text: bool,
}

impl Seeded {
    fn of(seed: u64, n: u64, text: bool) -> Seeded {
        Seeded { seed, n, text }
    }

    fn content_type(&self) -> &'static str {
        if self.text {
            "text/plain"
        } else {
            "application/octet-stream"
        }
    }

    fn bytes(&self) -> SeededBytes {
        if self.text {
            SeededBytes::text(self.seed, self.n)
        } else {
            SeededBytes::new(self.seed, self.n)
        }
    }
}

/// `body` without a length: it ends when the connection closes.
async fn send_until_close<R: Rd, W: Wr>(
    ex: &Exchange<'_>,
    conn: &mut Conn<R, W>,
    body: Seeded,
) -> io::Result<After> {
    let mut head = base(ex, 200);
    head.headers.push("Content-Type", body.content_type());
    head.headers.push("Connection", "close");
    send_seeded(ex, conn, head, body, BodyStyle::Plain).await?;
    Ok(After::Close)
}

/// Streams `body` after `head`, without holding it all.
async fn send_seeded<R: Rd, W: Wr>(
    ex: &Exchange<'_>,
    conn: &mut Conn<R, W>,
    head: ResponseHead,
    body: Seeded,
    style: BodyStyle,
) -> io::Result<After> {
    let (seed, n) = (body.seed, body.n);
    let mut out = Vec::with_capacity(64 * 1024 + 256);
    head.write_to(&mut out);
    let stream = &mut conn.writer;
    if is_head(ex) {
        stream.write_all(&out).await?;
        return Ok(keep_alive(ex));
    }
    let mut bytes = body.bytes();
    // Chunk sizes come from their own seeded stream, so they do not disturb the body bytes.
    let mut sizes = SeededBytes::new(seed.rotate_left(17), n);
    let mut left = n;
    while left > 0 {
        let step = match style {
            BodyStyle::Plain => left.min(64 * 1024),
            BodyStyle::Chunked(Some(k)) => left.min(k).min(1 << 20),
            BodyStyle::Chunked(None) => left.min(1 + sizes.next_u64() % 8192),
            BodyStyle::Drip(_) => 1,
        } as usize;
        if matches!(style, BodyStyle::Chunked(_)) {
            out.extend_from_slice(format!("{step:x}\r\n").as_bytes());
        }
        let at = out.len();
        out.resize(at + step, 0);
        bytes.fill(&mut out[at..]);
        if matches!(style, BodyStyle::Chunked(_)) {
            out.extend_from_slice(b"\r\n");
        }
        left -= step as u64;
        if out.len() >= 64 * 1024 || matches!(style, BodyStyle::Drip(_)) {
            stream.write_all(&out).await?;
            out.clear();
        }
        if let BodyStyle::Drip(pause) = style {
            if left > 0 {
                tokio::time::sleep(pause).await;
            }
        }
    }
    if matches!(style, BodyStyle::Chunked(_)) {
        out.extend_from_slice(b"0\r\n\r\n");
    }
    stream.write_all(&out).await?;
    Ok(keep_alive(ex))
}

/// `/echo`: the request body streams straight back, framed as it came.
async fn echo<R: Rd, W: Wr>(
    ex: &Exchange<'_>,
    conn: &mut Conn<R, W>,
    framing: Framing,
) -> io::Result<After> {
    let mut head = base(ex, 200);
    let content_type = ex
        .head
        .headers
        .get("content-type")
        .map(<[u8]>::to_vec)
        .unwrap_or_else(|| b"application/octet-stream".to_vec());
    head.headers.push("Content-Type", content_type);
    let to = match framing {
        Framing::Length(n) => {
            head.headers.push("Content-Length", n.to_string());
            Framing::Length(n)
        }
        Framing::Chunked => {
            head.headers.push("Transfer-Encoding", "chunked");
            Framing::Chunked
        }
        _ => {
            head.headers.push("Content-Length", "0");
            Framing::Empty
        }
    };
    let mut out = Vec::new();
    head.write_to(&mut out);
    if is_head(ex) {
        conn.writer.write_all(&out).await?;
        return Ok(keep_alive(ex));
    }
    let Conn { reader, writer } = conn;
    match copy_body(reader, framing, writer, to, out, None).await {
        Ok(_) => Ok(keep_alive(ex)),
        Err(e) => {
            tracing::debug!("echo: {e}");
            Ok(After::Close)
        }
    }
}

/// The Last-Modified of `/cache/N`: fixed (2026-01-01), so it never changes between runs.
fn fixed_last_modified() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_767_225_600)
}

/// A response's validators, for conditional requests.
struct Validators {
    etag: Option<String>,
    modified: Option<SystemTime>,
}

impl Validators {
    fn none() -> Self {
        Validators {
            etag: None,
            modified: None,
        }
    }

    /// Whether the request's `If-Range`, if any, names this response: by its strong
    /// entity tag, or by its exact Last-Modified date.
    fn if_range_holds(&self, request: &RequestHead) -> bool {
        let Some(value) = request
            .headers
            .get("if-range")
            .and_then(|v| std::str::from_utf8(v).ok())
        else {
            return true;
        };
        let value = value.trim();
        if value.starts_with('"') || value.starts_with("W/") {
            return self.etag.as_deref() == Some(value);
        }
        // Compared at the one-second precision the header carries.
        let sent = self.modified.map(httpdate::fmt_http_date);
        sent.is_some_and(|sent| {
            httpdate::parse_http_date(&sent).ok() == httpdate::parse_http_date(value).ok()
        })
    }

    /// Whether the request's conditionals say the client already has this (RFC 9110 §13.1):
    /// If-None-Match first; If-Modified-Since only without it.
    fn not_modified(&self, request: &RequestHead) -> bool {
        if request.headers.contains("if-none-match") {
            let Some(etag) = &self.etag else {
                return false;
            };
            let weak = |t: &str| t.trim_start_matches("W/").to_string();
            return request
                .headers
                .tokens("if-none-match")
                .any(|t| t == "*" || weak(t) == weak(etag));
        }
        let since = request
            .headers
            .get("if-modified-since")
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| httpdate::parse_http_date(v.trim()).ok());
        match (since, self.modified) {
            (Some(since), Some(modified)) => modified <= since,
            _ => false,
        }
    }
}

/// A response for the caching routes: 304 when the request's conditionals match,
/// else 200 with `body`; validators and `extra` header fields on both.
async fn cached<R: Rd, W: Wr>(
    ex: &Exchange<'_>,
    conn: &mut Conn<R, W>,
    validators: &Validators,
    extra: &[(&'static str, &str)],
    body: impl Into<Vec<u8>>,
) -> io::Result<After> {
    let body: Vec<u8> = body.into();
    let not_modified = validators.not_modified(&ex.head);
    let mut head = base(ex, if not_modified { 304 } else { 200 });
    for (name, value) in extra {
        head.headers.push(*name, *value);
    }
    if let Some(etag) = &validators.etag {
        head.headers.push("ETag", etag.as_str());
    }
    if let Some(modified) = validators.modified {
        head.headers
            .push("Last-Modified", httpdate::fmt_http_date(modified));
    }
    if not_modified {
        ex.origin.count_not_modified();
        let mut out = Vec::new();
        head.write_to(&mut out);
        conn.writer.write_all(&out).await?;
        return Ok(keep_alive(ex));
    }
    head.headers
        .push("Content-Type", "text/plain; charset=utf-8");
    // One byte range, as RFC 9110 §14 has it: 206 with Content-Range, 416 past the end;
    // several ranges, or an If-Range that does not hold, get the whole body.
    let range = ex
        .head
        .headers
        .get("range")
        .and_then(|v| std::str::from_utf8(v).ok())
        .filter(|_| ex.head.method == "GET" && validators.if_range_holds(&ex.head));
    let total = body.len() as u64;
    match range.map(|r| range::requested(r, total)) {
        Some(Part::Bytes(first, last)) => {
            head.status = 206;
            head.reason = reason(206).into();
            head.headers
                .push("Content-Range", format!("bytes {first}-{last}/{total}"));
            let part = &body[first as usize..=last as usize];
            send(ex, conn, head, part, true).await
        }
        Some(Part::Unsatisfiable) => {
            head.status = 416;
            head.reason = reason(416).into();
            head.headers
                .push("Content-Range", format!("bytes */{total}"));
            send(ex, conn, head, b"", true).await
        }
        Some(Part::Whole) | None => send(ex, conn, head, &body, true).await,
    }
}

fn headers_json(head: &RequestHead, target: &str) -> String {
    let headers: Vec<serde_json::Value> = head
        .headers
        .0
        .iter()
        .map(|h| serde_json::json!([&*h.name, String::from_utf8_lossy(&h.value)]))
        .collect();
    let json = serde_json::json!({
        "method": head.method,
        "target": target,
        "version": head.version.as_str(),
        "headers": headers,
    });
    format!("{json}\n")
}

/// A request-target in origin-form: an absolute URL's path and query.
fn origin_form(target: &str) -> &str {
    match target.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => target,
    }
}

/// `%XX` escapes decoded (anything else kept as it is).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .filter(|_| bytes[i] == b'%')
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match hex {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query_value<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        416 => "Range Not Satisfiable",
        418 => "I'm a teapot",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}
