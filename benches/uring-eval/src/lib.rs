//! The same minimal forwarding logic for both runtimes: find the end of a head in a buffer,
//! rewrite an absolute-form request to origin-form, read a Content-Length.

/// Where the head ends (after CRLFCRLF), if it is complete.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// The request head with its target in origin-form (the upstream is fixed).
pub fn origin_form(head: &[u8], out: &mut Vec<u8>) {
    let line_end = head
        .windows(2)
        .position(|w| w == b"\r\n")
        .unwrap_or(head.len());
    let line = &head[..line_end];
    let mut parts = line.splitn(3, |b| *b == b' ');
    let method = parts.next().unwrap_or(b"GET");
    let target = parts.next().unwrap_or(b"/");
    let version = parts.next().unwrap_or(b"HTTP/1.1");
    let path = if target.starts_with(b"http://") {
        let rest = &target[7..];
        let slash = rest.iter().position(|b| *b == b'/').unwrap_or(rest.len());
        &rest[slash..]
    } else {
        target
    };
    out.extend_from_slice(method);
    out.push(b' ');
    out.extend_from_slice(if path.is_empty() { b"/" } else { path });
    out.push(b' ');
    out.extend_from_slice(version);
    out.extend_from_slice(&head[line_end..]);
}

/// The Content-Length of a response head (0 when absent).
pub fn content_length(head: &[u8]) -> usize {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut res = httparse::Response::new(&mut headers);
    let _ = res.parse(head);
    res.headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| std::str::from_utf8(h.value).ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}
