//! What a proxy changes in the header section it forwards (RFC 9110 §7.6).
//!
//! Takes: a header section as received. Returns: the same section fit to forward:
//! hop-by-hop fields removed, `Via` added, `X-Forwarded-For` handled, `Host` set from the
//! target. Everything else keeps its order and letter case. Lab 2 checks each rule.

use crate::config::ForwardedFor;
use crate::http::wire::Headers;
use std::net::IpAddr;

/// Fields that describe one connection, never the message: a proxy must not forward them.
pub const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
];

/// Fields that `Connection` can never make hop-by-hop: they say where a message goes and
/// how long it is. Removing `Content-Length` because a peer listed it would forward a body
/// with no length (the next hop then reads it as the next request: smuggling), so these
/// names in `Connection` are ignored. (`Transfer-Encoding` is hop-by-hop anyway: the proxy
/// re-frames every body it forwards.)
pub const NEVER_HOP_BY_HOP: &[&str] = &["content-length", "host"];

/// Removes the hop-by-hop fields, including every field the `Connection` header names
/// (except [`NEVER_HOP_BY_HOP`]).
pub fn strip_hop_by_hop(headers: &mut Headers) {
    // Collected first (names are borrowed from `headers`, which `retain` then mutates).
    let named: Vec<String> = headers
        .tokens("connection")
        .chain(headers.tokens("proxy-connection"))
        .filter(|name| {
            !NEVER_HOP_BY_HOP
                .iter()
                .any(|n| n.eq_ignore_ascii_case(name))
        })
        .map(str::to_string)
        .collect();
    headers.0.retain(|h| {
        let listed = |name: &String| name.eq_ignore_ascii_case(&h.name);
        !HOP_BY_HOP
            .iter()
            .any(|hop| hop.eq_ignore_ascii_case(&h.name))
            && !named.iter().any(listed)
    });
}

/// One `Content-Length` field with one value, when a body is `n` bytes long: a list of
/// equal values (`5, 5`) or repeated fields, which a sender may send and other recipients
/// may read differently, go on as one (RFC 9112 §6.3, item 5).
pub fn single_content_length(headers: &mut Headers, n: u64) {
    let mut number = itoa::Buffer::new();
    let value = number.format(n).as_bytes();
    let fields = headers.get_all("content-length").count();
    if fields != 1 || headers.get("content-length") != Some(value) {
        headers.set("Content-Length", value.to_vec());
    }
}

/// Whether a `Via` header already names this proxy: the request has looped back to us.
pub fn via_names(headers: &Headers, name: &str) -> bool {
    // Each Via element is `protocol received-by [comment]`.
    headers.tokens("via").any(|element| {
        element
            .split_whitespace()
            .nth(1)
            .is_some_and(|by| by.eq_ignore_ascii_case(name))
    })
}

/// Appends this proxy's entry to `Via`, keeping earlier entries first.
pub fn add_via(headers: &mut Headers, entry: &str) {
    let existing: Vec<&str> = headers.tokens("via").collect();
    if existing.is_empty() {
        headers.push("Via", entry);
    } else {
        let joined = format!("{}, {entry}", existing.join(", "));
        // Keep the position (and spelling) of the first Via field.
        let pos = headers
            .0
            .iter()
            .position(|h| h.name.eq_ignore_ascii_case("via"))
            .unwrap_or(0);
        let name = headers.0[pos].name.clone();
        headers.remove("via");
        headers.0.insert(
            pos.min(headers.0.len()),
            crate::http::wire::Header::new(name, joined),
        );
    }
}

/// Applies the `--forwarded-for` policy.
pub fn forwarded_for(headers: &mut Headers, mode: ForwardedFor, client: IpAddr) {
    match mode {
        ForwardedFor::Off => {}
        ForwardedFor::Strip => headers.remove("x-forwarded-for"),
        ForwardedFor::Append => {
            let mut list = String::with_capacity(48);
            for earlier in headers.tokens("x-forwarded-for") {
                list.push_str(earlier);
                list.push_str(", ");
            }
            push_ip(&mut list, client);
            headers.set("X-Forwarded-For", list);
        }
    }
}

/// Appends `ip` as text. IPv4 by hand: `Ipv4Addr`'s `Display` was the costliest single step
/// of forwarding a request (callgrind: 1,284 instructions of about 36,000).
fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            let mut digits = itoa::Buffer::new();
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                out.push_str(digits.format(octet));
            }
        }
        IpAddr::V6(v6) => {
            use std::fmt::Write as _;
            let _ = write!(out, "{v6}");
        }
    }
}

/// Sets `Host` from the target, replacing whatever the client sent (RFC 9112 §3.2.2:
/// a proxy must use the authority of an absolute-form target).
pub fn set_host(headers: &mut Headers, host: &str) {
    match headers
        .0
        .iter_mut()
        .find(|h| h.name.eq_ignore_ascii_case("host"))
    {
        Some(h) => h.value = bytes::Bytes::copy_from_slice(host.as_bytes()),
        None => headers
            .0
            .insert(0, crate::http::wire::Header::new("Host", host)),
    }
    // A second Host field would make the request ambiguous.
    let mut seen = false;
    headers.0.retain(|h| {
        if !h.name.eq_ignore_ascii_case("host") {
            return true;
        }
        !std::mem::replace(&mut seen, true)
    });
}

/// Reads `Max-Forwards` (RFC 9110 §7.6.2) for OPTIONS and TRACE: `Some(0)` means the
/// proxy must answer itself; otherwise the value is decremented in place.
pub fn max_forwards(headers: &mut Headers) -> Option<u64> {
    let value = std::str::from_utf8(headers.get("max-forwards")?).ok()?;
    let n: u64 = value.trim().parse().ok()?;
    if n > 0 {
        headers.set("Max-Forwards", (n - 1).to_string());
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        let mut h = Headers::default();
        for (n, v) in pairs {
            h.push(n.to_string(), *v);
        }
        h
    }

    /// The hand-written address text is what `Display` writes, for every IPv4 address
    /// (sampled) and IPv6 ones; X-Forwarded-For appends it to what earlier proxies wrote.
    #[test]
    fn client_addresses_are_written_as_display_writes_them() {
        let mut samples: Vec<IpAddr> = (0..=255u8)
            .flat_map(|a| {
                [
                    [a, 0, 0, 0],
                    [0, a, 10, 255],
                    [255, 9, a, a],
                    [1, 22, 133, a],
                ]
            })
            .map(IpAddr::from)
            .collect();
        samples.extend(
            ["::1", "2001:db8::7", "::ffff:10.0.0.1"].map(|s| s.parse::<IpAddr>().unwrap()),
        );
        for ip in samples {
            let mut out = String::new();
            push_ip(&mut out, ip);
            assert_eq!(out, ip.to_string());
        }
        let mut h = headers(&[("X-Forwarded-For", " 10.0.0.1 ,, 10.0.0.2")]);
        forwarded_for(&mut h, ForwardedFor::Append, "127.0.0.1".parse().unwrap());
        assert_eq!(
            h.get("x-forwarded-for"),
            Some(&b"10.0.0.1, 10.0.0.2, 127.0.0.1"[..])
        );
    }

    #[test]
    fn strips_listed_and_standard_hop_by_hop() {
        let mut h = headers(&[
            ("Host", "a"),
            ("Connection", "close, X-Secret"),
            ("X-Secret", "1"),
            ("Keep-Alive", "timeout=5"),
            ("TE", "trailers"),
            ("Proxy-Authorization", "Basic x"),
            ("X-Kept", "yes"),
        ]);
        strip_hop_by_hop(&mut h);
        let names: Vec<_> = h.0.iter().map(|h| &*h.name).collect();
        assert_eq!(names, ["Host", "X-Kept"]);
    }

    #[test]
    fn via_is_appended_and_loops_are_seen() {
        let mut h = headers(&[("Via", "1.0 squid, 1.1 other (comment)")]);
        assert!(!via_names(&h, "proxylab"));
        add_via(&mut h, "1.1 proxylab");
        assert_eq!(
            h.get("via").unwrap(),
            b"1.0 squid, 1.1 other (comment), 1.1 proxylab"
        );
        assert!(via_names(&h, "ProxyLab"));
    }

    #[test]
    fn forwarded_for_modes() {
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        let mut h = headers(&[("X-Forwarded-For", "1.1.1.1")]);
        forwarded_for(&mut h, ForwardedFor::Append, ip);
        assert_eq!(h.get("x-forwarded-for").unwrap(), b"1.1.1.1, 10.1.2.3");
        forwarded_for(&mut h, ForwardedFor::Strip, ip);
        assert!(!h.contains("x-forwarded-for"));
    }

    #[test]
    fn max_forwards_decrements() {
        let mut h = headers(&[("Max-Forwards", "2")]);
        assert_eq!(max_forwards(&mut h), Some(2));
        assert_eq!(h.get("max-forwards").unwrap(), b"1");
        let mut zero = headers(&[("Max-Forwards", "0")]);
        assert_eq!(max_forwards(&mut zero), Some(0));
    }
    #[test]
    fn host_comes_from_the_target_once() {
        let mut sent = headers(&[("Accept", "*/*"), ("HOST", "evil.example"), ("host", "x")]);
        set_host(&mut sent, "site.example:8080");
        assert_eq!(
            sent.0
                .iter()
                .map(|h| format!("{}: {}", h.name, String::from_utf8_lossy(&h.value)))
                .collect::<Vec<_>>(),
            ["Accept: */*", "HOST: site.example:8080"],
            "replaced in place, the second Host dropped"
        );
        let mut none = headers(&[("Accept", "*/*")]);
        set_host(&mut none, "site.example");
        assert_eq!(none.0[0].name, "Host", "added first when absent");
        assert_eq!(none.get("host"), Some(&b"site.example"[..]));
        assert_eq!(none.0.len(), 2);
    }
}
