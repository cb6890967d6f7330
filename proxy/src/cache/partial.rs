//! Partial responses: a 206 is kept for the byte range it covers (RFC 9111 §3.3) and serves
//! later requests for ranges inside it; 206s whose strong validators match are combined
//! (§3.4), and once the pieces cover the whole representation they become one complete
//! stored response.
//!
//! Kept only when the 206 is one `Content-Range: bytes first-last/length` with a known
//! length, a strong `ETag`, no `Vary`, and a body exactly that long: what cannot be
//! combined safely is not kept at all.

use super::entry::Facts;
use super::freshness::{self, CacheControl, StoreRequest, Targeting};
use crate::http::wire::{Headers, ResponseHead};
use bytes::{Bytes, BytesMut};
use std::time::{Duration, SystemTime};

/// The pieces of one representation the cache holds.
#[derive(Debug)]
pub struct Partial {
    /// The latest 206's head, without Content-Range and Content-Length.
    pub head: ResponseHead,
    /// Its strong entity tag: only pieces with the same one are combined.
    pub etag: Vec<u8>,
    /// The whole representation's length.
    pub total: u64,
    /// Sorted, disjoint and not touching: (first byte, bytes).
    pub pieces: Vec<(u64, Bytes)>,
    pub request_time: SystemTime,
    pub response_time: SystemTime,
    pub facts: Facts,
}

/// The one `Content-Range` of a 206, when every number in it is known.
fn content_range(headers: &Headers) -> Option<(u64, u64, u64)> {
    let mut values = headers.get_all("content-range");
    let (Some(value), None) = (values.next(), values.next()) else {
        return None;
    };
    crate::http::range::content_range(std::str::from_utf8(value).ok()?)
}

/// A strong entity tag (`"…"`, not `W/"…"`).
fn strong_etag(headers: &Headers) -> Option<&[u8]> {
    headers
        .get("etag")
        .map(<[u8]>::trim_ascii)
        .filter(|tag| tag.len() >= 2 && tag.starts_with(b"\"") && tag.ends_with(b"\""))
}

/// Whether a 206 with this head may be kept (RFC 9111 §3, §3.3): storable as its 200
/// would be, one byte range with a known length, a strong validator, no Vary.
pub fn storable(request: &StoreRequest<'_>, head: &ResponseHead, cc: &CacheControl) -> bool {
    head.status == 206
        && freshness::storable(request, 200, &head.headers, cc)
        && content_range(&head.headers).is_some()
        && strong_etag(&head.headers).is_some()
        && !head.headers.contains("vary")
}

impl Partial {
    /// The piece a 206 carries; `None` when it is not one that [`storable`] accepts or its
    /// body is not as long as its Content-Range says.
    pub fn new(
        mut head: ResponseHead,
        body: Bytes,
        (request_time, response_time): (SystemTime, SystemTime),
        targeting: &Targeting,
    ) -> Option<Partial> {
        let (first, last, total) = content_range(&head.headers)?;
        if body.len() as u64 != last - first + 1 || head.headers.contains("vary") {
            return None;
        }
        let etag = strong_etag(&head.headers)?.to_vec();
        head.headers.remove("content-range");
        head.headers.remove("content-length");
        head.headers.compact();
        Some(Partial {
            facts: Facts::of(&head, response_time, targeting),
            head,
            etag,
            total,
            pieces: vec![(first, body)],
            request_time,
            response_time,
        })
    }

    /// `newer` with this partial's pieces added, when both are pieces of one representation
    /// (the same strong ETag and length, RFC 9111 §3.4); otherwise `newer` alone. The newer
    /// head and times are kept.
    pub fn combine(&self, mut newer: Partial) -> Partial {
        if self.etag != newer.etag || self.total != newer.total {
            return newer;
        }
        let mut all: Vec<(u64, Bytes)> = self.pieces.clone();
        all.append(&mut newer.pieces);
        all.sort_by_key(|(first, _)| *first);
        let mut merged: Vec<(u64, Bytes)> = Vec::with_capacity(all.len());
        for (first, bytes) in all {
            let end = first + bytes.len() as u64;
            match merged.last_mut() {
                Some((start, held)) if first <= *start + held.len() as u64 => {
                    let held_end = *start + held.len() as u64;
                    if end > held_end {
                        let mut joined = BytesMut::with_capacity((end - *start) as usize);
                        joined.extend_from_slice(held);
                        joined.extend_from_slice(&bytes[(held_end - first) as usize..]);
                        *held = joined.freeze();
                    }
                }
                _ => merged.push((first, bytes)),
            }
        }
        newer.pieces = merged;
        newer
    }

    /// The complete response, once one piece holds the whole representation: a 200 head
    /// with its Content-Length, and the body.
    pub fn whole(&self) -> Option<(ResponseHead, Bytes)> {
        let [(0, body)] = self.pieces.as_slice() else {
            return None;
        };
        if body.len() as u64 != self.total {
            return None;
        }
        let mut head = self.head.clone();
        head.status = 200;
        head.reason = "OK".into();
        head.headers.push("Content-Length", self.total.to_string());
        Some((head, body.clone()))
    }

    /// Bytes `first..=last` of the representation, when one piece holds them all.
    pub fn bytes(&self, first: u64, last: u64) -> Option<&[u8]> {
        self.pieces.iter().find_map(|(start, held)| {
            let end = start + held.len() as u64;
            (first >= *start && last < end)
                .then(|| &held[(first - start) as usize..=(last - start) as usize])
        })
    }

    /// What it costs the cache: the pieces, the header lines, and a fixed overhead.
    pub fn size(&self) -> usize {
        let pieces: usize = self.pieces.iter().map(|(_, b)| b.len()).sum();
        pieces + self.facts.replay.len() + 128
    }

    /// Its current age (RFC 9111 §4.2.3).
    pub fn age(&self, now: SystemTime) -> Duration {
        self.facts.age(self.request_time, self.response_time, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(range: &str, body: &'static [u8], etag: &str) -> Option<Partial> {
        let mut head = ResponseHead::new(206, "Partial Content");
        head.headers.push("Cache-Control", "max-age=60");
        head.headers.push("ETag", etag);
        head.headers.push("Content-Range", range);
        let now = SystemTime::now();
        Partial::new(
            head,
            Bytes::from_static(body),
            (now, now),
            &Targeting::default(),
        )
    }

    #[test]
    fn only_a_single_known_range_with_its_own_length_is_kept() {
        assert!(piece("bytes 0-3/10", b"0123", "\"a\"").is_some());
        for range in [
            "bytes 0-3/*",
            "bytes */10",
            "bytes 3-0/10",
            "bytes 0-10/10",
            "items 0-3/10",
        ] {
            assert!(piece(range, b"0123", "\"a\"").is_none(), "{range}");
        }
        assert!(
            piece("bytes 0-4/10", b"0123", "\"a\"").is_none(),
            "body too short"
        );
        assert!(
            piece("bytes 0-3/10", b"0123", "W/\"a\"").is_none(),
            "weak ETag"
        );
    }

    #[test]
    fn pieces_combine_into_the_whole_when_their_etags_match() {
        let a = piece("bytes 0-3/10", b"0123", "\"v\"").unwrap();
        let c = piece("bytes 7-9/10", b"789", "\"v\"").unwrap();
        let ac = a.combine(c);
        assert_eq!(ac.pieces.len(), 2);
        assert_eq!(ac.bytes(1, 3), Some(&b"123"[..]));
        assert_eq!(ac.bytes(7, 9), Some(&b"789"[..]));
        assert_eq!(ac.bytes(3, 7), None, "the gap is not held");
        assert!(ac.whole().is_none());
        // An overlapping middle piece joins all three.
        let b = piece("bytes 2-8/10", b"2345678", "\"v\"").unwrap();
        let all = ac.combine(b);
        assert_eq!(all.pieces.len(), 1);
        let (head, body) = all.whole().unwrap();
        assert_eq!((head.status, &body[..]), (200, &b"0123456789"[..]));
        assert_eq!(head.headers.get("content-length"), Some(&b"10"[..]));
        assert!(!head.headers.contains("content-range"));
        // Another ETag is another representation: the newer piece alone is kept.
        let other = piece("bytes 4-6/10", b"456", "\"w\"").unwrap();
        let replaced = all.combine(other);
        assert_eq!(replaced.pieces.len(), 1);
        assert_eq!(replaced.bytes(4, 6), Some(&b"456"[..]));
        assert_eq!(replaced.bytes(0, 1), None);
    }
}
