//! HTTP caching arithmetic (RFC 9111 §4.2): how long a response stays fresh, how old a
//! stored response is, and what a request's own directives allow.
//!
//! Takes: header sections and the times a response was requested and received. Returns:
//! numbers and decisions, with no I/O, so every rule can be tested against the RFC's own
//! words. This is where student caches go wrong most: a fixed TTL instead of the
//! response's own freshness, `Age` ignored, `max-age=-1` crashing the parser. Lab 4.

use crate::http::wire::Headers;
use std::time::{Duration, SystemTime};

/// The largest delta-seconds value we count to (RFC 9111 §1.2.2: 2^31).
const DELTA_MAX: u64 = 2_147_483_648;

/// A `Cache-Control` header section, parsed (request or response directives).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheControl {
    pub no_store: bool,
    pub no_cache: bool,
    pub private: bool,
    pub public: bool,
    pub must_revalidate: bool,
    pub proxy_revalidate: bool,
    /// `Some(None)`: present but invalid (makes a response stale, RFC 9111 §4.2.1).
    pub max_age: Option<Option<u64>>,
    pub s_maxage: Option<Option<u64>>,
    /// Request: `max-stale` with no value means any staleness is acceptable.
    pub max_stale: Option<Option<u64>>,
    pub min_fresh: Option<Option<u64>>,
    pub only_if_cached: bool,
    /// Response: store only if the cache understands the status code's caching rules,
    /// and then `no-store` does not apply (RFC 9111 §5.2.2.3).
    pub must_understand: bool,
    /// Response: `private="a, b"` and `no-cache="a, b"` (RFC 9111 §5.2.2.4, §5.2.2.7): the
    /// response may be stored and reused, without these fields (lower case).
    pub omit_fields: Vec<String>,
    /// `stale-if-error=N` (RFC 5861 §4): stale for up to N more seconds when the origin
    /// fails; in a request or a response.
    pub stale_if_error: Option<u64>,
    /// `stale-while-revalidate=N` (RFC 5861 §3): for N seconds after it goes stale, serve
    /// the stored response at once and revalidate it in the background.
    pub stale_while_revalidate: Option<u64>,
    /// These directives came from a targeted field (RFC 9213): `Expires` does not count.
    pub targeted: bool,
}

impl CacheControl {
    /// Whether a stale response with these directives may ever be served (RFC 9111
    /// §4.2.4): not with must-revalidate, proxy-revalidate, s-maxage or no-cache.
    pub fn forbids_stale(&self) -> bool {
        self.must_revalidate || self.proxy_revalidate || self.s_maxage.is_some() || self.no_cache
    }
}

impl CacheControl {
    /// Parses every `Cache-Control` field; directive names in any letter case. When a
    /// directive appears twice, the first occurrence wins (RFC 9111 §4.2.1).
    pub fn parse(headers: &Headers) -> CacheControl {
        let mut cc = CacheControl::default();
        let values = headers
            .get_all("cache-control")
            .filter_map(|v| std::str::from_utf8(v).ok());
        for directive in values.flat_map(directives) {
            let (name, value) = match directive.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
                None => (directive, None),
            };
            // The qualified forms name fields; the directive itself then does not apply.
            let fields = value.filter(|v| !v.trim().is_empty()).map(|v| {
                v.split(',')
                    .map(|f| f.trim().to_ascii_lowercase())
                    .filter(|f| !f.is_empty())
            });
            let seconds = || value.and_then(delta_seconds);
            let first = |slot: &mut Option<Option<u64>>, v: Option<u64>| {
                if slot.is_none() {
                    *slot = Some(v);
                }
            };
            match name.to_ascii_lowercase().as_str() {
                "no-store" => cc.no_store = true,
                "no-cache" | "private" if fields.is_some() => {
                    cc.omit_fields.extend(fields.into_iter().flatten());
                }
                "no-cache" => cc.no_cache = true,
                "private" => cc.private = true,
                "public" => cc.public = true,
                "must-revalidate" => cc.must_revalidate = true,
                "proxy-revalidate" => cc.proxy_revalidate = true,
                "only-if-cached" => cc.only_if_cached = true,
                "must-understand" => cc.must_understand = true,
                "max-age" => first(&mut cc.max_age, seconds()),
                "s-maxage" => first(&mut cc.s_maxage, seconds()),
                "min-fresh" => first(&mut cc.min_fresh, seconds()),
                "max-stale" => first(&mut cc.max_stale, seconds()),
                "stale-if-error" if cc.stale_if_error.is_none() => cc.stale_if_error = seconds(),
                "stale-while-revalidate" if cc.stale_while_revalidate.is_none() => {
                    cc.stale_while_revalidate = seconds();
                }
                _ => {}
            }
        }
        cc
    }
}

/// The targeted cache-control fields this cache obeys (RFC 9213), most specific first:
/// `--targeted-cache-control NAME`s, then `CDN-Cache-Control`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Targeting {
    /// Field names, lower case, in priority order.
    pub fields: Vec<String>,
    /// Whether the fields are removed from responses sent downstream (reverse mode: this
    /// proxy is the cache they target, and what is behind it is not).
    pub strip: bool,
}

impl Default for Targeting {
    fn default() -> Self {
        Targeting {
            fields: vec!["cdn-cache-control".into()],
            strip: false,
        }
    }
}

impl Targeting {
    /// The fields `names` (given first, most specific first), then `CDN-Cache-Control`.
    pub fn new(names: &[String], strip: bool) -> Targeting {
        let mut fields: Vec<String> = names.iter().map(|n| n.to_ascii_lowercase()).collect();
        fields.push("cdn-cache-control".into());
        fields.dedup();
        Targeting { fields, strip }
    }

    /// The response directives this cache follows (RFC 9213 §2.1): those of the first
    /// targeted field in the list with a valid, non-empty value, or else `Cache-Control`'s.
    pub fn control(&self, headers: &Headers) -> CacheControl {
        self.fields
            .iter()
            .find_map(|name| targeted(headers, name))
            .unwrap_or_else(|| CacheControl::parse(headers))
    }

    /// Whether `name` is one of the targeted fields.
    pub fn is_targeted(&self, name: &str) -> bool {
        self.fields.iter().any(|f| name.eq_ignore_ascii_case(f))
    }
}

/// The directives of the targeted field `name`, when it is present, is a valid Structured
/// Fields dictionary (RFC 8941 §3.2; several lines are one list) and is not empty. A
/// directive whose value has the wrong type is ignored, as an unknown one is.
fn targeted(headers: &Headers, name: &str) -> Option<CacheControl> {
    let mut joined = Vec::new();
    for value in headers.get_all(name) {
        if !joined.is_empty() {
            joined.extend_from_slice(b", ");
        }
        joined.extend_from_slice(value);
    }
    if joined.is_empty() {
        return None;
    }
    let dictionary: sfv::Dictionary = sfv::Parser::new(&joined).parse().ok()?;
    if dictionary.is_empty() {
        return None;
    }
    let mut cc = CacheControl {
        targeted: true,
        ..CacheControl::default()
    };
    for (key, member) in &dictionary {
        let sfv::ListEntry::Item(item) = member else {
            continue;
        };
        let value = &item.bare_item;
        let flag = value.as_boolean() == Some(true);
        // An integer directive: a negative one is invalid (Some(None)), as in Cache-Control.
        let seconds = value
            .as_integer()
            .map(|n| u64::try_from(i64::from(n)).ok().map(|n| n.min(DELTA_MAX)));
        let fields = value.as_string().map(|names| {
            names
                .as_str()
                .split(',')
                .map(|f| f.trim().to_ascii_lowercase())
                .filter(|f| !f.is_empty())
                .collect::<Vec<_>>()
        });
        match key.as_str() {
            "no-store" if flag => cc.no_store = true,
            "no-cache" | "private" if fields.is_some() => {
                cc.omit_fields.extend(fields.into_iter().flatten());
            }
            "no-cache" if flag => cc.no_cache = true,
            "private" if flag => cc.private = true,
            "public" if flag => cc.public = true,
            "must-revalidate" if flag => cc.must_revalidate = true,
            "proxy-revalidate" if flag => cc.proxy_revalidate = true,
            "must-understand" if flag => cc.must_understand = true,
            "max-age" if seconds.is_some() => cc.max_age = seconds,
            "s-maxage" if seconds.is_some() => cc.s_maxage = seconds,
            "stale-if-error" => cc.stale_if_error = seconds.flatten(),
            "stale-while-revalidate" => cc.stale_while_revalidate = seconds.flatten(),
            _ => {}
        }
    }
    Some(cc)
}

/// The directives of one Cache-Control value: split at commas outside quoted strings (a
/// qualified `private="a, b"` is one directive).
fn directives(value: &str) -> impl Iterator<Item = &str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&value[start..]);
    parts.into_iter().map(str::trim).filter(|d| !d.is_empty())
}

/// delta-seconds: digits only (so `-1` and `1.5` are invalid), capped at 2^31.
fn delta_seconds(v: &str) -> Option<u64> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(v.parse::<u64>().unwrap_or(DELTA_MAX).min(DELTA_MAX))
}

/// An HTTP-date header (IMF-fixdate and the two obsolete forms, RFC 9110 §5.6.7); `None`
/// when invalid.
pub fn http_date(headers: &Headers, name: &str) -> Option<SystemTime> {
    let value = std::str::from_utf8(headers.get(name)?).ok()?;
    parse_date(value)
}

/// Parses an HTTP-date in any of its three forms. Day and month names and `GMT` are
/// matched in any letter case ("the recipient ... SHOULD be tolerant", as senders get the
/// case wrong), so they are put in their canonical case before the strict parser sees them.
pub fn parse_date(value: &str) -> Option<SystemTime> {
    let value = value.trim();
    let mut canonical = String::with_capacity(value.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if word.eq_ignore_ascii_case("gmt") {
            out.push_str("GMT");
        } else if let Some(first) = word.chars().next() {
            out.push(first.to_ascii_uppercase());
            out.push_str(&word[first.len_utf8()..].to_ascii_lowercase());
        }
        word.clear();
    };
    for c in value.chars() {
        if c.is_ascii_alphabetic() {
            word.push(c);
        } else {
            flush(&mut word, &mut canonical);
            canonical.push(c);
        }
    }
    flush(&mut word, &mut canonical);
    httpdate::parse_http_date(&canonical).ok()
}

/// Status codes a cache may give heuristic freshness to (RFC 9110 §15.1).
pub fn heuristically_cacheable(status: u16) -> bool {
    matches!(
        status,
        200 | 203 | 204 | 206 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// Status codes whose caching rules this cache implements (RFC 9111 §5.2.2.3,
/// `must-understand`): the final statuses RFC 9110 defines as cacheable, and the others it
/// stores only with explicit freshness.
fn understood_status(status: u16) -> bool {
    matches!(
        status,
        200 | 203 | 204 | 300 | 301 | 302 | 303 | 307 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// What of the request matters to whether its response may be stored.
#[derive(Debug, Clone, Copy)]
pub struct StoreRequest<'a> {
    pub method: &'a str,
    /// The request said `no-store`.
    pub no_store: bool,
    /// The request carried `Authorization`.
    pub authorization: bool,
}

/// Whether a shared cache may store this response (RFC 9111 §3, §3.5), whose directives
/// for this cache are `cc` ([`Targeting::control`]).
pub fn storable(
    request: &StoreRequest<'_>,
    status: u16,
    headers: &Headers,
    cc: &CacheControl,
) -> bool {
    // must-understand: a status whose caching rules this cache implements may be stored
    // even with no-store beside it (which is there for caches that do not understand).
    let no_store = if cc.must_understand {
        if !understood_status(status) {
            return false;
        }
        false
    } else {
        cc.no_store
    };
    if request.method != "GET" || request.no_store || no_store || cc.private {
        return false;
    }
    if !(200..600).contains(&status) || status == 206 || status == 304 {
        return false;
    }
    if request.authorization && !(cc.public || cc.s_maxage.is_some() || cc.must_revalidate) {
        return false;
    }
    has_explicit_freshness(headers, cc)
        || cc.public
        || (heuristically_cacheable(status)
            && (headers.contains("last-modified") || headers.contains("etag")))
}

/// How long a response is fresh for a shared cache (RFC 9111 §4.2.1), and whether that
/// came from the heuristic; a response without a valid `Date` gets no `Expires` or
/// heuristic lifetime (see [`freshness_lifetime_received`]).
pub fn freshness_lifetime(status: u16, headers: &Headers) -> (Duration, bool) {
    lifetime(status, headers, &CacheControl::parse(headers), None)
}

/// [`freshness_lifetime`] for a response received at `received`, which stands in for a
/// missing or invalid `Date` (RFC 9111 §4.2.1, RFC 9110 §6.6.1): `Expires` still counts.
/// `cc` are its directives for this cache ([`Targeting::control`]).
pub fn freshness_lifetime_received(
    status: u16,
    headers: &Headers,
    cc: &CacheControl,
    received: SystemTime,
) -> (Duration, bool) {
    lifetime(status, headers, cc, Some(received))
}

fn lifetime(
    status: u16,
    headers: &Headers,
    cc: &CacheControl,
    received: Option<SystemTime>,
) -> (Duration, bool) {
    let date = http_date(headers, "date").or(received);
    if let Some(s) = cc.s_maxage {
        return (Duration::from_secs(s.unwrap_or(0)), false);
    }
    if let Some(m) = cc.max_age {
        return (Duration::from_secs(m.unwrap_or(0)), false);
    }
    // A targeted field's directives stand in for Cache-Control and Expires (RFC 9213 §2.1).
    if headers.contains("expires") && !cc.targeted {
        // An invalid Expires (or one with no usable Date) means "already expired".
        let (Some(expires), Some(date)) = (http_date(headers, "expires"), date) else {
            return (Duration::ZERO, false);
        };
        return (
            expires.duration_since(date).unwrap_or(Duration::ZERO),
            false,
        );
    }
    // Heuristic: 10% of the time since Last-Modified, only where the RFC allows it.
    if heuristically_cacheable(status) && !cc.no_cache {
        if let (Some(modified), Some(date)) = (http_date(headers, "last-modified"), date) {
            let since = date.duration_since(modified).unwrap_or(Duration::ZERO);
            return (since / 10, true);
        }
    }
    (Duration::ZERO, false)
}

/// Whether the response carries anything a cache could use to compute freshness at all;
/// `cc` are its directives for this cache.
pub fn has_explicit_freshness(headers: &Headers, cc: &CacheControl) -> bool {
    cc.max_age.is_some() || cc.s_maxage.is_some() || (headers.contains("expires") && !cc.targeted)
}

/// Whether the `Age` header, if present, is one non-negative integer (RFC 9111 §5.1): a
/// response with any other `Age` (a list, two fields, `-1`, `abc`) is to be taken as stale.
pub fn age_is_valid(headers: &Headers) -> bool {
    let mut values = headers.get_all("age");
    match (values.next(), values.next()) {
        (None, _) => true,
        (Some(v), None) => std::str::from_utf8(v)
            .ok()
            .and_then(|v| delta_seconds(v.trim()))
            .is_some(),
        (Some(_), Some(_)) => false,
    }
}

/// The `Age` header's value (0 when absent or invalid).
pub fn age_value(headers: &Headers) -> Duration {
    headers
        .get("age")
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| delta_seconds(v.trim()))
        .map_or(Duration::ZERO, Duration::from_secs)
}

/// The current age of a stored response (RFC 9111 §4.2.3).
pub fn current_age(
    headers: &Headers,
    request_time: SystemTime,
    response_time: SystemTime,
    now: SystemTime,
) -> Duration {
    age_from(
        age_value(headers),
        http_date(headers, "date"),
        request_time,
        response_time,
        now,
    )
}

/// [`current_age`] from the already parsed `Age` and `Date` values.
pub fn age_from(
    age_value: Duration,
    date: Option<SystemTime>,
    request_time: SystemTime,
    response_time: SystemTime,
    now: SystemTime,
) -> Duration {
    let date = date.unwrap_or(response_time);
    let apparent_age = response_time.duration_since(date).unwrap_or(Duration::ZERO);
    let response_delay = response_time
        .duration_since(request_time)
        .unwrap_or(Duration::ZERO);
    let corrected_age_value = age_value + response_delay;
    let corrected_initial_age = apparent_age.max(corrected_age_value);
    let resident_time = now.duration_since(response_time).unwrap_or(Duration::ZERO);
    corrected_initial_age + resident_time
}

/// Whether a stored response of `age` and `lifetime` may be served for a request with
/// `req` directives without contacting the origin (RFC 9111 §4.2, §5.2.1).
pub fn satisfies_request(
    lifetime: Duration,
    age: Duration,
    req: &CacheControl,
    response: &CacheControl,
) -> bool {
    if req.no_cache || response.no_cache {
        return false;
    }
    if let Some(max_age) = req.max_age {
        if age > Duration::from_secs(max_age.unwrap_or(0)) {
            return false;
        }
    }
    if let Some(min_fresh) = req.min_fresh {
        let wanted = Duration::from_secs(min_fresh.unwrap_or(0));
        if lifetime < age + wanted {
            return false;
        }
    }
    if age < lifetime {
        return true;
    }
    // Stale: only a request's max-stale allows it, and never past must-revalidate.
    if response.must_revalidate || response.proxy_revalidate || response.s_maxage.is_some() {
        return false;
    }
    match req.max_stale {
        Some(None) => true,
        Some(Some(extra)) => age < lifetime + Duration::from_secs(extra),
        None => false,
    }
}

/// Whether a stored response that does not satisfy the request may still be served at
/// once while it is revalidated in the background (RFC 5861 §3): it is stale by less than
/// its `stale-while-revalidate` window, nothing forbids serving it stale (RFC 9111
/// §4.2.4), and the request did not ask for a fresh or validated response.
pub fn serves_while_revalidating(
    lifetime: Duration,
    age: Duration,
    req: &CacheControl,
    response: &CacheControl,
) -> bool {
    let Some(window) = response.stale_while_revalidate else {
        return false;
    };
    let insists = req.no_cache || req.max_age.is_some() || req.min_fresh.is_some();
    age >= lifetime
        && age < lifetime + Duration::from_secs(window)
        && !response.forbids_stale()
        && !insists
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Headers {
        let mut headers = Headers::default();
        for (n, v) in pairs {
            headers.push(n.to_string(), *v);
        }
        headers
    }

    #[test]
    fn cache_control_parsing_follows_the_rfc() {
        let cc = CacheControl::parse(&h(&[
            ("Cache-Control", "MAX-AGE=60, max-age=5, No-Store"),
            ("cache-control", "s-maxage=\"30\""),
        ]));
        assert_eq!(
            cc.max_age,
            Some(Some(60)),
            "first occurrence wins, any case"
        );
        assert_eq!(cc.s_maxage, Some(Some(30)), "quoted values are accepted");
        assert!(cc.no_store);
        assert_eq!(
            CacheControl::parse(&h(&[("Cache-Control", "max-age=-1")])).max_age,
            Some(None)
        );
        assert_eq!(
            CacheControl::parse(&h(&[("Cache-Control", "max-age=99999999999999999999")])).max_age,
            Some(Some(DELTA_MAX))
        );
        assert_eq!(
            CacheControl::parse(&h(&[("Cache-Control", "max-stale")])).max_stale,
            Some(None)
        );
    }

    #[test]
    fn lifetime_prefers_s_maxage_then_max_age_then_expires_then_heuristic() {
        let date = "Thu, 01 Jan 2026 00:00:00 GMT";
        let both = h(&[("Cache-Control", "max-age=10, s-maxage=20"), ("Date", date)]);
        assert_eq!(
            freshness_lifetime(200, &both),
            (Duration::from_secs(20), false)
        );
        let expires = h(&[("Date", date), ("Expires", "Thu, 01 Jan 2026 00:01:40 GMT")]);
        assert_eq!(
            freshness_lifetime(200, &expires),
            (Duration::from_secs(100), false)
        );
        let bad_expires = h(&[("Date", date), ("Expires", "0")]);
        assert_eq!(
            freshness_lifetime(200, &bad_expires),
            (Duration::ZERO, false)
        );
        let heuristic = h(&[
            ("Date", date),
            ("Last-Modified", "Mon, 22 Dec 2025 00:00:00 GMT"),
        ]);
        assert_eq!(
            freshness_lifetime(200, &heuristic),
            (Duration::from_secs(86_400), true)
        );
        assert_eq!(
            freshness_lifetime(302, &heuristic),
            (Duration::ZERO, false),
            "302 is not heuristically cacheable"
        );
        let invalid = h(&[("Cache-Control", "max-age=soon")]);
        assert_eq!(freshness_lifetime(200, &invalid), (Duration::ZERO, false));
    }

    #[test]
    fn age_counts_the_age_header_transit_and_residence() {
        let t0 = httpdate::parse_http_date("Thu, 01 Jan 2026 00:00:00 GMT").unwrap();
        let headers = h(&[("Date", "Thu, 01 Jan 2026 00:00:00 GMT"), ("Age", "30")]);
        let requested = t0;
        let received = t0 + Duration::from_secs(2);
        let now = t0 + Duration::from_secs(12);
        // corrected age 30 + 2 delay = 32 > apparent 2; plus 10 s resident.
        assert_eq!(
            current_age(&headers, requested, received, now),
            Duration::from_secs(42)
        );
    }

    mod properties {
        use super::super::*;
        use super::h;
        use proptest::prelude::*;

        /// A directive value: valid seconds, or something invalid.
        fn seconds() -> impl Strategy<Value = (String, Option<u64>)> {
            prop_oneof![
                (0u64..100_000).prop_map(|n| (n.to_string(), Some(n))),
                Just(("-1".to_string(), None)),
                Just(("1.5".to_string(), None)),
                Just(("soon".to_string(), None)),
            ]
        }

        fn any_case(s: &str, upper: Vec<bool>) -> String {
            s.chars()
                .zip(upper.into_iter().chain(std::iter::repeat(false)))
                .map(|(c, u)| if u { c.to_ascii_uppercase() } else { c })
                .collect()
        }

        proptest! {
            /// The lifetime matches a model written from RFC 9111 §4.2.1, over generated
            /// header sets (directive order and letter case, invalid values, dates).
            #[test]
            fn lifetime_matches_the_reference_model(
                status in prop::sample::select(vec![200u16, 203, 302, 404, 500]),
                s_maxage in prop::option::of(seconds()),
                max_age in prop::option::of(seconds()),
                second_max_age in prop::option::of(0u64..100),
                expires in prop::option::of(prop::option::of(-5000i64..5000)),
                lm_days in prop::option::of(0u64..60),
                no_cache in any::<bool>(),
                case in prop::collection::vec(any::<bool>(), 8),
            ) {
                let date = httpdate::parse_http_date("Thu, 01 Jan 2026 00:00:00 GMT").unwrap();
                let mut directives = Vec::new();
                if let Some((v, _)) = &s_maxage { directives.push(format!("{}={v}", any_case("s-maxage", case.clone()))); }
                if let Some((v, _)) = &max_age { directives.push(format!("{}={v}", any_case("max-age", case.clone()))); }
                if let Some(n) = second_max_age { directives.push(format!("max-age={n}")); }
                if no_cache { directives.push("no-cache".into()); }
                let mut headers = h(&[("Date", "Thu, 01 Jan 2026 00:00:00 GMT")]);
                if !directives.is_empty() { headers.push("Cache-Control", directives.join(", ")); }
                match expires {
                    Some(Some(offset)) => {
                        let at = if offset >= 0 { date + Duration::from_secs(offset as u64) } else { date - Duration::from_secs(offset.unsigned_abs()) };
                        headers.push("Expires", httpdate::fmt_http_date(at));
                    }
                    Some(None) => headers.push("Expires", "0"),
                    None => {}
                }
                if let Some(days) = lm_days {
                    headers.push("Last-Modified", httpdate::fmt_http_date(date - Duration::from_secs(days * 86_400)));
                }

                // The model, straight from the RFC's list.
                let expected = if let Some((_, v)) = &s_maxage {
                    v.unwrap_or(0)
                } else if let Some((_, v)) = &max_age {
                    v.unwrap_or(0)
                } else if let Some(n) = second_max_age {
                    n
                } else if let Some(e) = expires {
                    e.map_or(0, |offset| offset.max(0) as u64)
                } else if [200, 203, 404].contains(&status) && !no_cache {
                    lm_days.map_or(0, |d| d * 86_400 / 10)
                } else {
                    0
                };
                prop_assert_eq!(freshness_lifetime(status, &headers).0, Duration::from_secs(expected));
            }

            /// A response with no-store or private (any case, any company) is never stored.
            #[test]
            fn no_store_and_private_are_never_storable(
                forbidding in prop::sample::select(vec!["no-store", "private", "No-Store", "PRIVATE", "private=\"\""]),
                others in prop::collection::vec(prop::sample::select(vec!["public", "max-age=60", "s-maxage=30", "must-revalidate"]), 0..4),
                status in prop::sample::select(vec![200u16, 301, 404]),
                authorization in any::<bool>(),
            ) {
                let mut directives = others.clone();
                directives.insert(directives.len() / 2, forbidding);
                let headers = h(&[("Cache-Control", &directives.join(", ")), ("ETag", "\"x\"")]);
                let request = StoreRequest { method: "GET", no_store: false, authorization };
                prop_assert!(!storable(&request, status, &headers, &CacheControl::parse(&headers)));
            }

            /// A stale response is never served without validation unless the request's own
            /// max-stale allows it.
            #[test]
            fn stale_is_never_served_without_validation(
                lifetime in 0u64..10_000,
                extra in 0u64..10_000,
                req_max_age in prop::option::of(0u64..20_000),
                min_fresh in prop::option::of(0u64..100),
            ) {
                let req = CacheControl {
                    max_age: req_max_age.map(Some),
                    min_fresh: min_fresh.map(Some),
                    ..CacheControl::default()
                };
                let age = Duration::from_secs(lifetime + extra);
                prop_assert!(!satisfies_request(Duration::from_secs(lifetime), age, &req, &CacheControl::default()));
            }
        }
    }

    #[test]
    fn request_directives() {
        let none = CacheControl::default();
        let fresh = (Duration::from_secs(60), Duration::from_secs(10));
        assert!(satisfies_request(fresh.0, fresh.1, &none, &none));
        let max_age_5 = CacheControl {
            max_age: Some(Some(5)),
            ..Default::default()
        };
        assert!(!satisfies_request(fresh.0, fresh.1, &max_age_5, &none));
        let min_fresh = CacheControl {
            min_fresh: Some(Some(55)),
            ..Default::default()
        };
        assert!(!satisfies_request(fresh.0, fresh.1, &min_fresh, &none));
        let stale = (Duration::from_secs(60), Duration::from_secs(70));
        assert!(!satisfies_request(stale.0, stale.1, &none, &none));
        let max_stale = CacheControl {
            max_stale: Some(Some(20)),
            ..Default::default()
        };
        assert!(satisfies_request(stale.0, stale.1, &max_stale, &none));
        let must = CacheControl {
            must_revalidate: true,
            ..Default::default()
        };
        assert!(!satisfies_request(stale.0, stale.1, &max_stale, &must));
    }
    #[test]
    fn every_directive_is_recognised() {
        let cc = CacheControl::parse(&h(&[(
            "Cache-Control",
            "public, must-revalidate, proxy-revalidate, only-if-cached, min-fresh=7, \
             no-cache, private, max-stale=3, s-maxage=9, no-store, max-age=1, x-unknown=2, \
             stale-if-error=30, stale-while-revalidate=40, \
             Must-Understand",
        )]));
        let all = CacheControl {
            no_store: true,
            no_cache: true,
            private: true,
            public: true,
            must_revalidate: true,
            proxy_revalidate: true,
            max_age: Some(Some(1)),
            s_maxage: Some(Some(9)),
            max_stale: Some(Some(3)),
            min_fresh: Some(Some(7)),
            only_if_cached: true,
            must_understand: true,
            omit_fields: Vec::new(),
            stale_if_error: Some(30),
            stale_while_revalidate: Some(40),
            targeted: false,
        };
        assert_eq!(cc, all);
        // The same directives in a targeted field (a Structured Fields dictionary, where
        // keys are lower case); only-if-cached and the request directives mean nothing in
        // a response.
        let targeted = Targeting::default().control(&h(&[(
            "CDN-Cache-Control",
            "public, must-revalidate, proxy-revalidate, no-cache, private, s-maxage=9, \
             no-store, max-age=1, x-unknown=2, stale-if-error=30, stale-while-revalidate=40, \
             must-understand",
        )]));
        let response_only = CacheControl {
            targeted: true,
            only_if_cached: false,
            max_stale: None,
            min_fresh: None,
            ..all
        };
        assert_eq!(targeted, response_only);
    }

    /// RFC 9111 §3: who may store what, one rule per row.
    #[test]
    fn what_a_shared_cache_may_store() {
        let get = StoreRequest {
            method: "GET",
            no_store: false,
            authorization: false,
        };
        let with_auth = StoreRequest {
            authorization: true,
            ..get
        };
        // (why, request, status, response fields, storable)
        type Row<'a> = (
            &'a str,
            StoreRequest<'a>,
            u16,
            &'a [(&'a str, &'a str)],
            bool,
        );
        let cases: &[Row<'_>] = &[
            (
                "explicit freshness",
                get,
                200,
                &[("Cache-Control", "max-age=60")],
                true,
            ),
            (
                "Expires alone",
                get,
                200,
                &[("Expires", "Thu, 01 Jan 2026 00:00:00 GMT")],
                true,
            ),
            (
                "s-maxage alone",
                get,
                200,
                &[("Cache-Control", "s-maxage=5")],
                true,
            ),
            (
                "a 500 with max-age",
                get,
                500,
                &[("Cache-Control", "max-age=60")],
                true,
            ),
            (
                "HEAD",
                StoreRequest {
                    method: "HEAD",
                    ..get
                },
                200,
                &[("Cache-Control", "max-age=60")],
                false,
            ),
            (
                "request no-store",
                StoreRequest {
                    no_store: true,
                    ..get
                },
                200,
                &[("Cache-Control", "max-age=60")],
                false,
            ),
            ("1xx", get, 199, &[("Cache-Control", "max-age=60")], false),
            (
                "past 599",
                get,
                600,
                &[("Cache-Control", "max-age=60")],
                false,
            ),
            ("206", get, 206, &[("Cache-Control", "max-age=60")], false),
            ("304", get, 304, &[("Cache-Control", "max-age=60")], false),
            (
                "authorized, max-age only",
                with_auth,
                200,
                &[("Cache-Control", "max-age=60")],
                false,
            ),
            (
                "authorized, public",
                with_auth,
                200,
                &[("Cache-Control", "public, max-age=60")],
                true,
            ),
            (
                "authorized, s-maxage",
                with_auth,
                200,
                &[("Cache-Control", "s-maxage=60")],
                true,
            ),
            (
                "authorized, must-revalidate",
                with_auth,
                200,
                &[("Cache-Control", "must-revalidate, max-age=60")],
                true,
            ),
            (
                "public without a lifetime",
                get,
                200,
                &[("Cache-Control", "public")],
                true,
            ),
            ("heuristic by ETag", get, 200, &[("ETag", "\"a\"")], true),
            (
                "heuristic by Last-Modified",
                get,
                404,
                &[("Last-Modified", "Thu, 01 Jan 2026 00:00:00 GMT")],
                true,
            ),
            (
                "no heuristic for a 302",
                get,
                302,
                &[("ETag", "\"a\"")],
                false,
            ),
            ("nothing to go on", get, 200, &[], false),
            (
                "private naming fields",
                get,
                200,
                &[(
                    "Cache-Control",
                    "private=\"Set-Cookie, X-User\", max-age=60",
                )],
                true,
            ),
            (
                "no-cache naming a field",
                get,
                200,
                &[("Cache-Control", "no-cache=\"set-cookie\", max-age=60")],
                true,
            ),
            (
                "must-understand overrides no-store for a known status",
                get,
                200,
                &[("Cache-Control", "must-understand, no-store, max-age=60")],
                true,
            ),
            (
                "must-understand with an unknown status",
                get,
                299,
                &[("Cache-Control", "must-understand, no-store, max-age=60")],
                false,
            ),
            (
                "must-understand does not override private",
                get,
                200,
                &[("Cache-Control", "must-understand, private, max-age=60")],
                false,
            ),
        ];
        for (why, request, status, headers, expected) in cases {
            let headers = h(headers);
            let cc = Targeting::default().control(&headers);
            assert_eq!(
                storable(request, *status, &headers, &cc),
                *expected,
                "{why}"
            );
        }
    }

    #[test]
    fn explicit_freshness_is_max_age_s_maxage_or_expires() {
        for field in [
            ("Cache-Control", "max-age=1"),
            ("Cache-Control", "s-maxage=1"),
            ("Expires", "0"),
        ] {
            let headers = h(&[field]);
            let cc = CacheControl::parse(&headers);
            assert!(has_explicit_freshness(&headers, &cc), "{field:?}");
        }
        let none = h(&[("ETag", "\"a\""), ("Cache-Control", "public")]);
        assert!(!has_explicit_freshness(&none, &CacheControl::parse(&none)));
    }

    /// The edges of RFC 9111 §4.2 and §5.2.1: fresh means age < lifetime; a request's
    /// max-age and min-fresh are inclusive limits; max-stale's window is exclusive.
    #[test]
    fn request_directives_at_their_edges() {
        let none = CacheControl::default();
        let secs = Duration::from_secs;
        let req = |f: fn(&mut CacheControl)| {
            let mut cc = CacheControl::default();
            f(&mut cc);
            cc
        };
        assert!(
            !satisfies_request(secs(60), secs(60), &none, &none),
            "age = lifetime is stale"
        );
        let max_age_5 = req(|c| c.max_age = Some(Some(5)));
        assert!(
            satisfies_request(secs(60), secs(5), &max_age_5, &none),
            "age = max-age"
        );
        let min_fresh_50 = req(|c| c.min_fresh = Some(Some(50)));
        assert!(
            satisfies_request(secs(60), secs(10), &min_fresh_50, &none),
            "exactly fresh enough"
        );
        let no_cache = req(|c| c.no_cache = true);
        assert!(
            !satisfies_request(secs(60), secs(1), &no_cache, &none),
            "request no-cache"
        );
        assert!(
            !satisfies_request(secs(60), secs(1), &none, &no_cache),
            "response no-cache"
        );
        let max_stale_20 = req(|c| c.max_stale = Some(Some(20)));
        assert!(satisfies_request(secs(60), secs(79), &max_stale_20, &none));
        assert!(
            !satisfies_request(secs(60), secs(80), &max_stale_20, &none),
            "window's end"
        );
        let any_stale = req(|c| c.max_stale = Some(None));
        assert!(satisfies_request(secs(60), secs(6000), &any_stale, &none));
        for forbids in [
            req(|c| c.must_revalidate = true),
            req(|c| c.proxy_revalidate = true),
            req(|c| c.s_maxage = Some(Some(60))),
        ] {
            assert!(
                !satisfies_request(secs(60), secs(61), &any_stale, &forbids),
                "{forbids:?}"
            );
        }
    }
    /// RFC 9110 §5.6.7: the three date forms, with day, month and zone in any case.
    #[test]
    fn every_date_form_in_any_case() {
        let expected = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        for form in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
            "sun, 06 nov 1994 08:49:37 gmt",
            "SUN, 06 NOV 1994 08:49:37 GMT",
            "SUNDAY, 06-NOV-94 08:49:37 Gmt",
            "sun nov  6 08:49:37 1994",
            " Sun, 06 Nov 1994 08:49:37 GMT ",
        ] {
            assert_eq!(parse_date(form), Some(expected), "{form:?}");
        }
        for bad in [
            "",
            "0",
            "yesterday",
            "Sun, 06 Nov 1994 08:49:37 PST",
            "Sun, 32 Nov 1994 08:49:37 GMT",
        ] {
            assert_eq!(parse_date(bad), None, "{bad:?}");
        }
    }

    /// RFC 9111 §5.1: an Age that is not one non-negative integer makes a response stale.
    #[test]
    fn an_invalid_age_means_stale() {
        assert!(age_is_valid(&h(&[])));
        assert!(age_is_valid(&h(&[("Age", "30")])));
        assert!(age_is_valid(&h(&[("Age", " 0 ")])));
        for bad in [
            &[("Age", "-1")][..],
            &[("Age", "1, 2")],
            &[("Age", "abc")],
            &[("Age", "1"), ("Age", "1")],
        ] {
            assert!(!age_is_valid(&h(bad)), "{bad:?}");
        }
    }
    #[test]
    fn qualified_private_and_no_cache_name_fields() {
        let cc = CacheControl::parse(&h(&[(
            "Cache-Control",
            "max-age=60, private=\"Set-Cookie, X-User\", no-cache=\"X-Debug\"",
        )]));
        assert!(!cc.private && !cc.no_cache);
        assert_eq!(cc.omit_fields, ["set-cookie", "x-user", "x-debug"]);
        assert_eq!(
            cc.max_age,
            Some(Some(60)),
            "the comma inside quotes splits nothing"
        );
        let bare = CacheControl::parse(&h(&[("Cache-Control", "private, no-cache")]));
        assert!(bare.private && bare.no_cache && bare.omit_fields.is_empty());
    }

    /// RFC 9213 §2.1–2.2: the first targeted field in the list with a valid, non-empty
    /// Structured Fields dictionary rules; Cache-Control and Expires are then ignored; an
    /// invalid or empty field is skipped as a whole.
    #[test]
    fn targeted_fields_rule_in_order_and_invalid_ones_are_skipped() {
        let targeting = Targeting::new(&["Proxylab-Cache-Control".into()], false);
        let control = |fields: &[(&str, &str)]| targeting.control(&h(fields));
        let cc_no_store = ("Cache-Control", "no-store");
        let cdn = control(&[cc_no_store, ("CDN-Cache-Control", "max-age=60")]);
        assert!(cdn.targeted && !cdn.no_store);
        assert_eq!(cdn.max_age, Some(Some(60)));
        let own = control(&[
            ("CDN-Cache-Control", "max-age=60"),
            ("proxylab-cache-control", "no-store"),
        ]);
        assert!(own.no_store && own.max_age.is_none(), "{own:?}");
        for invalid in [
            "max-age=1.5.0",
            "max-age=60,",
            "",
            "MAX-AGE=60",
            "a=\"unterminated",
        ] {
            let cc = control(&[cc_no_store, ("CDN-Cache-Control", invalid)]);
            assert!(
                !cc.targeted && cc.no_store,
                "{invalid:?} is not a valid dictionary"
            );
        }
        let falls_through = control(&[
            ("Proxylab-Cache-Control", "max-age=60;"),
            ("CDN-Cache-Control", "max-age=5"),
        ]);
        assert_eq!(falls_through.max_age, Some(Some(5)));
        // Several lines are one dictionary; a directive of the wrong type is ignored.
        let lines = control(&[
            (
                "CDN-Cache-Control",
                "max-age=\"60\", private=\"Set-Cookie\"",
            ),
            (
                "CDN-Cache-Control",
                "stale-if-error=30, no-cache=?0, max-age=-1",
            ),
        ]);
        assert_eq!(lines.max_age, Some(None), "-1 is an integer, and invalid");
        assert_eq!(lines.omit_fields, ["set-cookie"]);
        assert_eq!(lines.stale_if_error, Some(30));
        assert!(!lines.no_cache && !lines.private);
    }

    #[test]
    fn a_targeted_field_sets_freshness_and_storability_without_expires() {
        let get = StoreRequest {
            method: "GET",
            no_store: false,
            authorization: false,
        };
        let targeting = Targeting::default();
        let decide = |fields: &[(&str, &str)]| {
            let headers = h(fields);
            let cc = targeting.control(&headers);
            let received = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
            let lifetime = freshness_lifetime_received(200, &headers, &cc, received).0;
            (storable(&get, 200, &headers, &cc), lifetime.as_secs())
        };
        let date = ("Date", "Fri, 15 Jan 2027 08:00:00 GMT");
        let expires = ("Expires", "Fri, 15 Jan 2027 09:00:00 GMT");
        assert_eq!(decide(&[date, expires]), (true, 3600));
        assert_eq!(
            decide(&[date, expires, ("CDN-Cache-Control", "public")]),
            (true, 0),
            "Expires does not count beside a targeted field"
        );
        assert_eq!(
            decide(&[
                ("Cache-Control", "private"),
                ("CDN-Cache-Control", "max-age=60")
            ]),
            (true, 60)
        );
        assert_eq!(
            decide(&[
                ("Cache-Control", "max-age=60"),
                ("CDN-Cache-Control", "no-store")
            ]),
            (false, 0)
        );
    }

    /// RFC 5861 §3 with RFC 9111 §4.2.4: stale, within the window, not forbidden, and not
    /// against the request's own wishes.
    #[test]
    fn stale_while_revalidate_has_a_window_and_yields_to_must_revalidate() {
        let lifetime = Duration::from_secs(10);
        let swr = CacheControl::parse(&h(&[(
            "Cache-Control",
            "max-age=10, stale-while-revalidate=5",
        )]));
        let none = CacheControl::default();
        let at = |secs| Duration::from_secs(secs);
        assert!(
            !serves_while_revalidating(lifetime, at(9), &none, &swr),
            "fresh"
        );
        assert!(serves_while_revalidating(lifetime, at(10), &none, &swr));
        assert!(serves_while_revalidating(lifetime, at(14), &none, &swr));
        assert!(
            !serves_while_revalidating(lifetime, at(15), &none, &swr),
            "past the window"
        );
        for forbidding in [
            "must-revalidate",
            "proxy-revalidate",
            "no-cache",
            "s-maxage=10",
        ] {
            let cc = CacheControl::parse(&h(&[(
                "Cache-Control",
                &format!("max-age=10, stale-while-revalidate=5, {forbidding}"),
            )]));
            assert!(
                !serves_while_revalidating(lifetime, at(12), &none, &cc),
                "{forbidding}"
            );
        }
        for insisting in ["no-cache", "max-age=0", "min-fresh=1"] {
            let req = CacheControl::parse(&h(&[("Cache-Control", insisting)]));
            assert!(
                !serves_while_revalidating(lifetime, at(12), &req, &swr),
                "{insisting}"
            );
        }
        let plain = CacheControl::parse(&h(&[("Cache-Control", "max-age=10")]));
        assert!(!serves_while_revalidating(lifetime, at(12), &none, &plain));
    }
}
