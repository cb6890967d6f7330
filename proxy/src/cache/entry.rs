//! One stored response ([`Entry`]), what it says about itself ([`Facts`]), and the key it
//! is stored under. The store keeps entries; [`super::disk`] writes them to files.

use super::freshness::Targeting;
use crate::http::wire::{Headers, ResponseHead};
use bytes::Bytes;
use std::time::SystemTime;

/// The request fields that make a request conditional (RFC 9110 §13.1).
pub const CONDITIONAL_FIELDS: [&str; 5] = [
    "if-none-match",
    "if-modified-since",
    "if-match",
    "if-unmodified-since",
    "if-range",
];

/// One stored response.
#[derive(Debug)]
pub struct Entry {
    /// Status line and end-to-end header fields, as received (hop-by-hop ones removed).
    pub head: ResponseHead,
    pub body: Bytes,
    /// When the request that produced it was sent, and when its response arrived.
    pub request_time: SystemTime,
    pub response_time: SystemTime,
    /// The request's values of the header fields `Vary` names, lower-cased names.
    pub vary: Vec<(String, Option<Vec<u8>>)>,
    /// Worked out once, when stored, so a hit does not parse headers again.
    pub facts: Facts,
}

/// What a stored response says about itself, parsed once.
#[derive(Debug, Clone)]
pub struct Facts {
    /// Its freshness lifetime (RFC 9111 §4.2.1).
    pub lifetime: std::time::Duration,
    pub cache_control: super::freshness::CacheControl,
    /// Its `Date` and `Age` header values.
    pub date: Option<SystemTime>,
    pub age_value: std::time::Duration,
    /// Its header lines as they are sent on a hit, minus the ones a hit sets itself
    /// (Age, Content-Length, Transfer-Encoding, Connection).
    pub replay: Vec<u8>,
}

impl Facts {
    /// The current age (RFC 9111 §4.2.3) of the response these facts are of, requested at
    /// `request_time` and received at `response_time`.
    pub fn age(
        &self,
        request_time: SystemTime,
        response_time: SystemTime,
        now: SystemTime,
    ) -> std::time::Duration {
        super::freshness::age_from(self.age_value, self.date, request_time, response_time, now)
    }

    /// What `head`, received at `received`, says about itself to a cache that follows
    /// `targeting`.
    pub(super) fn of(head: &ResponseHead, received: SystemTime, targeting: &Targeting) -> Facts {
        let cache_control = targeting.control(&head.headers);
        let mut replay = Vec::with_capacity(256);
        for h in &head.headers.0 {
            // The fields a hit sets itself, and those private="…" or no-cache="…" name.
            let skip = ["age", "content-length", "transfer-encoding", "connection"]
                .iter()
                .any(|s| h.name.eq_ignore_ascii_case(s))
                || cache_control
                    .omit_fields
                    .iter()
                    .any(|f| h.name.eq_ignore_ascii_case(f))
                || (targeting.strip && targeting.is_targeted(&h.name));
            if !skip {
                replay.extend_from_slice(h.name.as_bytes());
                replay.extend_from_slice(b": ");
                replay.extend_from_slice(&h.value);
                replay.extend_from_slice(b"\r\n");
            }
        }
        Facts {
            // An invalid Age makes the response stale (RFC 9111 §5.1): no lifetime at all.
            lifetime: match super::freshness::age_is_valid(&head.headers) {
                true => {
                    super::freshness::freshness_lifetime_received(
                        head.status,
                        &head.headers,
                        &cache_control,
                        received,
                    )
                    .0
                }
                false => std::time::Duration::ZERO,
            },
            cache_control,
            date: super::freshness::http_date(&head.headers, "date"),
            age_value: super::freshness::age_value(&head.headers),
            replay,
        }
    }
}

impl Entry {
    /// Builds an entry for a cache that follows `targeting`; `None` when `Vary: *` makes
    /// it unusable.
    pub fn new(
        head: ResponseHead,
        body: Bytes,
        request: &Headers,
        (request_time, response_time): (SystemTime, SystemTime),
        targeting: &Targeting,
    ) -> Option<Entry> {
        let mut vary = Vec::new();
        for name in head.headers.tokens("vary") {
            if name == "*" {
                return None;
            }
            let name = name.to_ascii_lowercase();
            let value = request_value(request, &name);
            vary.push((name, value));
        }
        Some(Entry::assemble(
            head,
            body,
            (request_time, response_time),
            vary,
            targeting,
        ))
    }

    /// An entry from its parts (the variant key `vary` already worked out), for a cache
    /// that follows `targeting`.
    pub fn assemble(
        mut head: ResponseHead,
        body: Bytes,
        (request_time, response_time): (SystemTime, SystemTime),
        vary: Vec<(String, Option<Vec<u8>>)>,
        targeting: &Targeting,
    ) -> Entry {
        head.headers.compact();
        Entry {
            facts: Facts::of(&head, response_time, targeting),
            head,
            body,
            request_time,
            response_time,
            vary,
        }
    }

    /// Adds the conditionals that revalidate it (RFC 9111 §4.3.1) to a request's `up`
    /// header section: its entity tag, its Last-Modified date.
    pub fn add_conditionals(&self, up: &mut Headers) {
        if let Some(etag) = self.etag() {
            up.push("If-None-Match", etag.to_vec());
        }
        if let Some(modified) = self.head.headers.get("last-modified") {
            up.push("If-Modified-Since", modified.to_vec());
        }
    }

    /// Its current age (RFC 9111 §4.2.3).
    pub fn age(&self, now: SystemTime) -> std::time::Duration {
        self.facts.age(self.request_time, self.response_time, now)
    }

    /// Whether this variant was stored for a request like `request` (RFC 9111 §4.1).
    pub fn matches(&self, request: &Headers) -> bool {
        self.vary
            .iter()
            .all(|(name, value)| request_value(request, name) == *value)
    }

    /// The bytes this entry counts against `--cache-size`.
    pub fn size(&self) -> usize {
        let headers: usize = self
            .head
            .headers
            .0
            .iter()
            .map(|h| h.name.len() + h.value.len() + 4)
            .sum();
        self.body.len() + headers + 128
    }

    /// The entry's strong or weak validator, if any.
    pub fn etag(&self) -> Option<&[u8]> {
        self.head.headers.get("etag")
    }
}

/// All values of a request header, joined, with whitespace around commas normalised; for
/// `Accept-Language` and `Accept-Encoding`, also case, parameter spacing and order, so that
/// equivalent requests select the same variant (RFC 9111 §4.1).
fn request_value(request: &Headers, name: &str) -> Option<Vec<u8>> {
    let values: Vec<&str> = request.tokens(name).collect();
    if values.is_empty() && !request.contains(name) {
        return None;
    }
    if name.eq_ignore_ascii_case("accept-language") || name.eq_ignore_ascii_case("accept-encoding")
    {
        return Some(preference_list(&values).into_bytes());
    }
    Some(values.join(", ").into_bytes())
}

/// A list of `token;q=N` preferences in one canonical form: lower case, no spaces, `q=1`
/// left out, the most preferred first (equal weights by name).
fn preference_list(values: &[&str]) -> String {
    let mut items: Vec<(u32, String)> = values
        .iter()
        .map(|item| {
            let mut parts = item.split(';').map(str::trim);
            let token = parts.next().unwrap_or("").to_ascii_lowercase();
            let mut weight = 1000;
            for param in parts {
                if let Some((key, value)) = param.split_once('=') {
                    if key.trim().eq_ignore_ascii_case("q") {
                        let q: f64 = value.trim().parse().unwrap_or(1.0);
                        weight = (q.clamp(0.0, 1.0) * 1000.0).round() as u32;
                    }
                }
            }
            (weight, token)
        })
        .collect();
    items.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let parts: Vec<String> = items
        .into_iter()
        .map(|(weight, token)| match weight {
            1000 => token,
            w => format!("{token};q={}", f64::from(w) / 1000.0),
        })
        .collect();
    parts.join(",")
}

/// The primary cache key: the absolute URI (RFC 9111 §2).
pub fn key(authority: &crate::http::target::Authority, path: &str) -> String {
    // Built by hand: `format!` through Authority's Display was a visible share of a hit.
    let mut port = itoa::Buffer::new();
    let port = port.format(authority.port);
    let mut key = String::with_capacity(authority.host.len() + path.len() + port.len() + 10);
    key.push_str("http://");
    authority.push_host_for_url(&mut key);
    key.push(':');
    key.push_str(port);
    key.push_str(path);
    key
}

/// The stored header section updated from a 304's (RFC 9111 §3.2): every field the 304
/// carries replaces the stored one, except framing fields.
pub fn refresh_headers(stored: &Headers, from_304: &Headers) -> Headers {
    let framing = [
        "content-length",
        "transfer-encoding",
        "content-encoding",
        "content-range",
    ];
    let fresh: Vec<_> = from_304
        .0
        .iter()
        .filter(|h| !framing.iter().any(|f| h.name.eq_ignore_ascii_case(f)))
        .collect();
    let mut updated = stored.clone();
    for h in &fresh {
        updated.remove(&h.name);
    }
    updated.0.extend(fresh.into_iter().cloned());
    updated
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::target::Authority;
    use std::time::Duration;

    fn head(fields: &[(&str, &str)]) -> ResponseHead {
        let mut head = ResponseHead::new(200, "OK");
        for (n, v) in fields {
            head.headers.push(n.to_string(), *v);
        }
        head
    }

    #[test]
    fn a_hit_replays_every_field_but_the_ones_it_sets_itself() {
        let head = head(&[
            ("ETag", "\"v1\""),
            ("Age", "5"),
            ("Content-Length", "3"),
            ("Transfer-Encoding", "chunked"),
            ("Connection", "close"),
            ("X-Kept", "yes"),
        ]);
        let replay = Facts::of(&head, SystemTime::now(), &Targeting::default()).replay;
        assert_eq!(
            String::from_utf8_lossy(&replay),
            "ETag: \"v1\"\r\nX-Kept: yes\r\n"
        );
    }

    #[test]
    fn age_and_validator_come_from_the_stored_head() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let stored = head(&[("Age", "30"), ("ETag", "W/\"x\"")]);
        let entry = Entry::assemble(
            stored,
            Bytes::new(),
            (t0, t0),
            Vec::new(),
            &Targeting::default(),
        );
        let later = t0 + Duration::from_secs(10);
        assert_eq!(entry.age(later), Duration::from_secs(40));
        assert_eq!(entry.etag(), Some(&b"W/\"x\""[..]));
        let plain = Entry::assemble(
            head(&[]),
            Bytes::new(),
            (t0, t0),
            Vec::new(),
            &Targeting::default(),
        );
        assert_eq!(plain.etag(), None);
    }

    /// The budget counts the body, each header line with its ": " and CRLF, and a fixed
    /// 128 bytes for the rest of the entry.
    #[test]
    fn size_counts_body_header_lines_and_overhead() {
        let now = SystemTime::now();
        let entry = Entry::assemble(
            head(&[("A", "bb"), ("Ccc", "d")]),
            Bytes::from_static(b"0123456789"),
            (now, now),
            Vec::new(),
            &Targeting::default(),
        );
        assert_eq!(entry.size(), 10 + (1 + 2 + 4) + (3 + 1 + 4) + 128);
    }

    #[test]
    fn an_absent_request_header_and_an_empty_one_are_different_variants() {
        let now = SystemTime::now();
        let mut empty = Headers::default();
        empty.push("Accept-Language", "");
        let mut two = Headers::default();
        two.push("Accept-Language", "en ,  fr");
        let vary = head(&[("Vary", "Accept-Language")]);
        let for_empty = Entry::new(
            vary.clone(),
            Bytes::new(),
            &empty,
            (now, now),
            &Targeting::default(),
        )
        .unwrap();
        assert!(for_empty.matches(&empty));
        assert!(!for_empty.matches(&Headers::default()));
        let for_absent = Entry::new(
            vary.clone(),
            Bytes::new(),
            &Headers::default(),
            (now, now),
            &Targeting::default(),
        )
        .unwrap();
        assert!(!for_absent.matches(&empty));
        let mut same = Headers::default();
        same.push("accept-language", "en, fr");
        let for_two =
            Entry::new(vary, Bytes::new(), &two, (now, now), &Targeting::default()).unwrap();
        assert!(
            for_two.matches(&same),
            "whitespace around commas is normalised"
        );
    }

    #[test]
    fn the_key_is_the_absolute_uri_with_its_port() {
        let site = Authority {
            host: "site.example".into(),
            port: 8080,
        };
        assert_eq!(key(&site, "/a?b"), "http://site.example:8080/a?b");
        let v6 = Authority {
            host: "::1".into(),
            port: 80,
        };
        assert_eq!(key(&v6, "/"), "http://[::1]:80/");
    }
    #[test]
    fn an_invalid_age_leaves_no_lifetime() {
        let now = SystemTime::now();
        let fresh = Facts::of(
            &head(&[("Cache-Control", "max-age=60"), ("Age", "5")]),
            now,
            &Targeting::default(),
        );
        assert_eq!(fresh.lifetime, Duration::from_secs(60));
        for age in ["-5", "5, 6", "five"] {
            let facts = Facts::of(
                &head(&[("Cache-Control", "max-age=60"), ("Age", age)]),
                now,
                &Targeting::default(),
            );
            assert_eq!(facts.lifetime, Duration::ZERO, "Age: {age}");
        }
    }
    /// RFC 9111 §4.2.1: with no valid `Date`, `Expires` counts from when the response
    /// arrived.
    #[test]
    fn expires_counts_from_arrival_when_date_is_invalid() {
        let received = httpdate::parse_http_date("Thu, 01 Jan 2026 00:00:00 GMT").unwrap();
        let expires = ("Expires", "Thu, 01 Jan 2026 00:01:40 GMT");
        for date in [None, Some("not a date")] {
            let mut fields = vec![expires];
            fields.extend(date.map(|d| ("Date", d)));
            let facts = Facts::of(&head(&fields), received, &Targeting::default());
            assert_eq!(facts.lifetime, Duration::from_secs(100), "Date: {date:?}");
        }
        let dated = Facts::of(
            &head(&[expires, ("Date", "Thu, 01 Jan 2026 00:01:00 GMT")]),
            received,
            &Targeting::default(),
        );
        assert_eq!(dated.lifetime, Duration::from_secs(40), "a valid Date wins");
    }
    /// RFC 9111 §4.1: equivalent Accept-Language and Accept-Encoding values (order, case,
    /// spacing, an explicit q=1) select the same variant; different preferences do not.
    #[test]
    fn equivalent_preferences_share_a_variant() {
        let value = |v: &str| {
            let mut headers = Headers::default();
            headers.push("Accept-Language", v);
            request_value(&headers, "accept-language")
        };
        let canonical = value("en-US, fr;q=0.5");
        for same in [
            "fr;q=0.5,en-us",
            "EN-us;q=1, FR; Q=0.50",
            "fr ; q=0.5 , en-US;q=1.0",
        ] {
            assert_eq!(value(same), canonical, "{same}");
        }
        assert_ne!(value("en-US, fr;q=0.6"), canonical);
        assert_ne!(value("fr, en-US;q=0.5"), canonical);
        let mut gzip = Headers::default();
        gzip.push("Accept-Encoding", "GZIP, br");
        assert_eq!(
            request_value(&gzip, "accept-encoding"),
            Some(b"br,gzip".to_vec())
        );
    }
    #[test]
    fn fields_named_by_private_or_no_cache_are_not_replayed() {
        let head = head(&[
            (
                "Cache-Control",
                "max-age=60, private=\"Set-Cookie\", no-cache=\"x-debug\"",
            ),
            ("Set-Cookie", "id=1"),
            ("X-Debug", "on"),
            ("X-Kept", "yes"),
        ]);
        let replay =
            String::from_utf8(Facts::of(&head, SystemTime::now(), &Targeting::default()).replay)
                .unwrap();
        assert!(!replay.contains("\nSet-Cookie:"), "{replay}");
        assert!(!replay.contains("\nX-Debug:"), "{replay}");
        assert!(replay.contains("X-Kept: yes"), "{replay}");
    }
}
