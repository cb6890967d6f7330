//! Parsing the request-target (RFC 9112 §3.2): where does the client want to go?
//!
//! Takes: the method and the target string of a request line. Returns: a [`Target`].
//! A forward proxy receives absolute-form (`GET http://host:port/path HTTP/1.1`) for
//! ordinary requests and authority-form (`CONNECT host:443`) for tunnels; origin-form
//! (`GET /path`) means the client is talking to the proxy itself. Student proxies that
//! split the line on spaces and `/` get IPv6 literals, ports and userinfo wrong: lab 2.

use std::fmt;

/// A host and port, as named by the client (before any name resolution).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Authority {
    /// Lower-cased host name or IP literal, without IPv6 brackets.
    pub host: String,
    pub port: u16,
}

impl Authority {
    /// The value for a `Host` header: the port is left out when it is the default 80.
    pub fn host_header(&self) -> String {
        let mut host = String::with_capacity(self.host.len() + 8);
        self.push_host_for_url(&mut host);
        if self.port != 80 {
            // By hand: `format!` cost as much as the rest of building the upstream head.
            host.push(':');
            host.push_str(itoa::Buffer::new().format(self.port));
        }
        host
    }

    fn host_for_url(&self) -> String {
        let mut out = String::with_capacity(self.host.len() + 2);
        self.push_host_for_url(&mut out);
        out
    }

    /// Appends the host as it appears in a URL: IPv6 literals in brackets.
    pub fn push_host_for_url(&self, out: &mut String) {
        if self.host.contains(':') {
            out.push('[');
            out.push_str(&self.host);
            out.push(']');
        } else {
            out.push_str(&self.host);
        }
    }
}

impl fmt::Display for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host_for_url(), self.port)
    }
}

/// The four forms of request-target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `http://host[:port]/path?query`: forward it. `path` is in origin-form (starts with `/`).
    Absolute { authority: Authority, path: String },
    /// `https://…` in absolute-form: would need TLS to the origin.
    AbsoluteHttps,
    /// `/path?query`: addressed to the proxy itself.
    Origin(String),
    /// `host:port` (CONNECT only).
    Authority(Authority),
    /// `*` (server-wide OPTIONS).
    Asterisk,
}

/// Parses a request-target; the error says what is wrong with it in a few words.
pub fn parse(method: &str, target: &str) -> Result<Target, String> {
    if method.eq_ignore_ascii_case("CONNECT") {
        return parse_authority(target, None).map(Target::Authority);
    }
    if target == "*" {
        return Ok(Target::Asterisk);
    }
    if target.starts_with('/') {
        return Ok(Target::Origin(normalize_path(target)));
    }
    let Some((scheme, rest)) = target.split_once("://") else {
        return Err(format!(
            "{target:?} is not an absolute URL, a path or host:port"
        ));
    };
    if scheme.eq_ignore_ascii_case("https") {
        return Ok(Target::AbsoluteHttps);
    }
    if !scheme.eq_ignore_ascii_case("http") {
        return Err(format!("the scheme {scheme:?} is not http"));
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    let authority = parse_authority(authority, Some(80))?;
    let path = path.split('#').next().unwrap_or_default();
    let path = match path.strip_prefix('?') {
        Some(_) => format!("/{path}"),
        None if path.is_empty() => "/".to_string(),
        None => path.to_string(),
    };
    Ok(Target::Absolute {
        authority,
        path: normalize_path(&path),
    })
}

/// Parses `host[:port]`, `[v6]:port`; `default_port` applies when the port is absent
/// (CONNECT requires one).
pub fn parse_authority(s: &str, default_port: Option<u16>) -> Result<Authority, String> {
    if s.contains('@') {
        return Err("user information (user@host) is not allowed in the target".into());
    }
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("{s:?} has an unclosed IPv6 bracket"))?;
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("{host:?} is not an IPv6 address"));
        }
        match after {
            "" => (host, None),
            p => match p.strip_prefix(':') {
                Some(p) => (host, Some(p)),
                None => return Err(format!("{s:?} has junk after the IPv6 address")),
            },
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    // `site.example.` is the same name as `site.example` (an absolute DNS name).
    let host = match host.strip_suffix('.') {
        Some(name) if !name.is_empty() && !name.ends_with('.') => name,
        _ => host,
    };
    if host.is_empty() {
        return Err("the target has no host".into());
    }
    if !host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'))
    {
        return Err(format!("{host:?} is not a valid host name"));
    }
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| format!("{p:?} is not a valid port"))?,
        None => default_port.ok_or_else(|| format!("{s:?} has no port (host:port expected)"))?,
    };
    if !host.contains(':') && host.split('.').any(str::is_empty) {
        return Err(format!(
            "{host:?} is not a valid host name (an empty label)"
        ));
    }
    if looks_numeric(host) && host.parse::<std::net::Ipv4Addr>().is_err() {
        return Err(format!(
            "{host:?} is an IPv4 address in a form other than a.b.c.d (write it as four \
             decimal numbers)"
        ));
    }
    Ok(Authority {
        host: host.to_ascii_lowercase(),
        port,
    })
}

/// Whether a host is meant as an IPv4 address: its last label is a number (decimal, or hex
/// with `0x`), which no DNS name's top-level label can be. Resolvers read forms such as
/// `2130706433`, `0x7f.1` or `0177.0.0.1` as 127.0.0.1, which a rule written for
/// `127.0.0.1` would not see; the proxy accepts only the dotted-decimal form.
fn looks_numeric(host: &str) -> bool {
    let last = host.rsplit('.').next().unwrap_or(host);
    let hex = last
        .strip_prefix("0x")
        .or_else(|| last.strip_prefix("0X"))
        .is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
    hex || (!last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()))
}

/// A path (and query) in the normal form of RFC 3986 §6.2.2: percent-encoded unreserved
/// characters decoded (`%73` is `s`), the hex digits of other escapes in upper case, and
/// `.` and `..` segments removed from the path. The filtering rules and the origin then see
/// the same path: `/x/../secret`, `/./secret` and `/%73ecret` are all `/secret`.
pub fn normalize_path(target: &str) -> String {
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    };
    let mut out = remove_dot_segments(&normalize_escapes(path));
    if let Some(query) = query {
        out.push('?');
        out.push_str(&normalize_escapes(query));
    }
    out
}

/// Decodes escapes of unreserved characters, upper-cases the hex of the others; leaves
/// anything that is not a valid escape as it is.
fn normalize_escapes(s: &str) -> String {
    if !s.contains('%') {
        return s.to_string();
    }
    let bytes = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < bytes.len() {
        let escape = bytes
            .get(i + 1..i + 3)
            .filter(|h| bytes[i] == b'%' && h.iter().all(u8::is_ascii_hexdigit))
            .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        match escape {
            Some(b) if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') => {
                out.push(char::from(b));
                i += 3;
            }
            Some(b) => {
                out.push_str(&format!("%{b:02X}"));
                i += 3;
            }
            None => {
                // Not an escape: copy one character (whole, if it is not ASCII).
                let ch = s[i..].chars().next().unwrap_or('%');
                out.push(ch);
                i += ch.len_utf8();
            }
        }
    }
    out
}

/// RFC 3986 §5.2.4 for an absolute path: `.` segments go, `..` removes the one before it
/// (never above the root).
fn remove_dot_segments(path: &str) -> String {
    if !path.contains('.') {
        return path.to_string();
    }
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let mut out: Vec<&str> = Vec::with_capacity(segments.len());
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *segment {
            "." if last => out.push(""),
            "." => {}
            ".." => {
                out.pop();
                if last {
                    out.push("");
                }
            }
            other => out.push(other),
        }
    }
    format!("/{}", out.join("/"))
}

/// A Host header value split into lower-case name (no brackets) and port (80 if none).
pub fn split_host_header(host: &str) -> (&str, u16) {
    if let Some(rest) = host.strip_prefix('[') {
        let (name, after) = rest.split_once(']').unwrap_or((rest, ""));
        let port = after.strip_prefix(':').and_then(|p| p.parse().ok());
        return (name, port.unwrap_or(80));
    }
    match host.rsplit_once(':') {
        Some((name, port)) => (name, port.parse().unwrap_or(80)),
        None => (host, 80),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn abs(host: &str, port: u16, path: &str) -> Target {
        Target::Absolute {
            authority: Authority {
                host: host.into(),
                port,
            },
            path: path.into(),
        }
    }

    #[test]
    fn absolute_forms() {
        assert_eq!(
            parse("GET", "http://Example.COM").unwrap(),
            abs("example.com", 80, "/")
        );
        assert_eq!(
            parse("GET", "http://127.0.0.1:8081/a/b?c=d#frag").unwrap(),
            abs("127.0.0.1", 8081, "/a/b?c=d")
        );
        assert_eq!(parse("GET", "http://h?q=1").unwrap(), abs("h", 80, "/?q=1"));
        assert_eq!(
            parse("GET", "HTTP://[::1]:9/x").unwrap(),
            abs("::1", 9, "/x")
        );
    }

    #[test]
    fn other_forms() {
        assert_eq!(parse("GET", "/").unwrap(), Target::Origin("/".into()));
        assert_eq!(parse("OPTIONS", "*").unwrap(), Target::Asterisk);
        assert_eq!(parse("GET", "https://h/").unwrap(), Target::AbsoluteHttps);
        assert_eq!(
            parse("CONNECT", "[::1]:443").unwrap(),
            Target::Authority(Authority {
                host: "::1".into(),
                port: 443
            })
        );
    }

    #[test]
    fn bad_targets_say_why() {
        for bad in [
            "ftp://h/",
            "http://user@h/",
            "http://h:0/",
            "http://h:99999/",
            "http:///x",
            "h",
        ] {
            assert!(parse("GET", bad).is_err(), "{bad} should be refused");
        }
        assert!(parse("CONNECT", "host").is_err());
    }

    #[test]
    fn host_header_leaves_out_default_port() {
        let a = parse_authority("h:80", None).unwrap();
        assert_eq!(a.host_header(), "h");
        let b = parse_authority("[::1]:81", None).unwrap();
        assert_eq!(b.host_header(), "[::1]:81");
    }
    #[test]
    fn a_host_header_splits_into_name_and_port() {
        for (host, expected) in [
            ("site.example", ("site.example", 80)),
            ("site.example:8080", ("site.example", 8080)),
            ("site.example:http", ("site.example", 80)),
            ("[::1]:9000", ("::1", 9000)),
            ("[::1]", ("::1", 80)),
        ] {
            assert_eq!(split_host_header(host), expected, "{host}");
        }
    }
    #[test]
    fn paths_are_normalised_as_rfc_3986_says() {
        for (raw, normal) in [
            ("/secret", "/secret"),
            ("/%73ecret", "/secret"),
            ("/%2e%2E/secret", "/secret"),
            ("/x/../secret", "/secret"),
            ("/./secret", "/secret"),
            ("/a/b/../../../secret", "/secret"),
            ("/a/./b/.", "/a/b/"),
            ("/a/b/..", "/a/"),
            ("/a//b", "/a//b"),
            ("/a%2fb%3f", "/a%2Fb%3F"),
            ("/%7e%41?q=%2e%2e/%7a&x=/../y", "/~A?q=../z&x=/../y"),
            ("/100%", "/100%"),
            ("/%zz%4", "/%zz%4"),
            ("/é/%C3%A9", "/é/%C3%A9"),
            ("/.well-known/x", "/.well-known/x"),
        ] {
            assert_eq!(normalize_path(raw), normal, "{raw}");
        }
        assert_eq!(
            parse("GET", "http://ok.test/x/../%73ecret?a").unwrap(),
            abs("ok.test", 80, "/secret?a")
        );
        assert_eq!(parse("GET", "/./a").unwrap(), Target::Origin("/a".into()));
    }

    #[test]
    fn host_forms_name_one_host() {
        assert_eq!(
            parse("GET", "http://OK.Test.:81/").unwrap(),
            abs("ok.test", 81, "/")
        );
        assert_eq!(
            parse("GET", "http://127.0.0.1/").unwrap(),
            abs("127.0.0.1", 80, "/")
        );
        for other in [
            "2130706433",
            "0x7f.1",
            "0177.0.0.1",
            "127.1",
            "0x7f000001",
            "1.2.3.04",
        ] {
            let err = parse("GET", &format!("http://{other}/")).unwrap_err();
            assert!(err.contains("a.b.c.d"), "{other}: {err}");
        }
        assert!(parse("GET", "http://host.example../").is_err());
        assert!(parse("GET", "http://./").is_err());
        assert!(parse("GET", "http://1host.example/").is_ok());
    }
}
