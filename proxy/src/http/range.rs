//! Byte ranges (RFC 9110 §14): what a `Range` header asks of a representation of a known
//! length. Shared by the cache stage (answers from stored responses) and origin-sim.

/// What part of a representation a request's `Range` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// No range, one that is not served (another unit, several ranges, a syntax that must
    /// be ignored): the whole representation, 200.
    Whole,
    /// Bytes `first..=last`: 206.
    Bytes(u64, u64),
    /// A range that starts past the end: 416.
    Unsatisfiable,
}

/// The part of a `total`-byte representation that the `Range` value `range` asks for
/// (forms `a-b`, `a-`, `-n`; `last` past the end is cut to it). Several ranges get the
/// whole representation, which RFC 9110 §14.2 allows instead of `multipart/byteranges`.
pub fn requested(range: &str, total: u64) -> Part {
    let range = range.trim();
    let Some(specs) = range
        .get(..6)
        .filter(|unit| unit.eq_ignore_ascii_case("bytes="))
        .map(|_| &range[6..])
    else {
        return Part::Whole;
    };
    let specs: Vec<&str> = specs
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let [spec] = specs.as_slice() else {
        return Part::Whole;
    };
    let Some((first, last)) = spec.split_once('-') else {
        return Part::Whole;
    };
    match (first.trim(), last.trim()) {
        ("", suffix) => match number(suffix) {
            Some(0) => Part::Unsatisfiable,
            Some(_) if total == 0 => Part::Unsatisfiable,
            Some(n) => Part::Bytes(total.saturating_sub(n), total - 1),
            None => Part::Whole,
        },
        (first, last) => match (number(first), last) {
            (None, _) => Part::Whole,
            (Some(first), _) if first >= total => Part::Unsatisfiable,
            (Some(first), "") => Part::Bytes(first, total - 1),
            (Some(first), last) => match number(last) {
                Some(last) if last >= first => Part::Bytes(first, last.min(total - 1)),
                _ => Part::Whole,
            },
        },
    }
}

/// Digits only, as a number.
fn number(s: &str) -> Option<u64> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse::<u64>().ok())
        .flatten()
}

/// `Content-Range: bytes first-last/length` with every number known.
pub fn content_range(value: &str) -> Option<(u64, u64, u64)> {
    let value = value.trim();
    let rest = value
        .get(..6)
        .filter(|unit| unit.eq_ignore_ascii_case("bytes "))
        .map(|_| value[6..].trim_start())?;
    let (range, total) = rest.split_once('/')?;
    let (first, last) = range.split_once('-')?;
    let (first, last, total) = (
        number(first.trim())?,
        number(last.trim())?,
        number(total.trim())?,
    );
    (first <= last && last < total).then_some((first, last, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_single_range_form() {
        for (range, part) in [
            ("bytes=10-19", Part::Bytes(10, 19)),
            ("bytes=90-", Part::Bytes(90, 99)),
            ("bytes=-5", Part::Bytes(95, 99)),
            ("bytes=-500", Part::Bytes(0, 99)),
            ("bytes=95-500", Part::Bytes(95, 99)),
            ("BYTES=0-0", Part::Bytes(0, 0)),
            (" bytes= 3-4 ", Part::Bytes(3, 4)),
            ("bytes=100-", Part::Unsatisfiable),
            ("bytes=-0", Part::Unsatisfiable),
            ("bytes=0-1,5-6", Part::Whole),
            ("items=0-1", Part::Whole),
            ("bytes=5-1", Part::Whole),
            ("bytes=a-b", Part::Whole),
            ("bytes=-", Part::Whole),
        ] {
            assert_eq!(requested(range, 100), part, "{range}");
        }
        assert_eq!(requested("bytes=-5", 0), Part::Unsatisfiable);
    }

    #[test]
    fn content_range_needs_every_number() {
        assert_eq!(content_range("bytes 0-3/10"), Some((0, 3, 10)));
        assert_eq!(content_range("Bytes  2-2/3"), Some((2, 2, 3)));
        for bad in [
            "bytes 0-3/*",
            "bytes */10",
            "bytes 3-0/10",
            "bytes 0-10/10",
            "items 0-3/10",
        ] {
            assert_eq!(content_range(bad), None, "{bad}");
        }
    }
}
