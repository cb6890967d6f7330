//! Parent proxies (`--parent URL`, repeatable): a cache hierarchy. Cacheable requests that
//! miss here go to a parent proxy instead of the origin, so that a popular object is
//! fetched from the origin once for all the children.
//!
//! Takes: a request's cache key (its absolute URI). Returns: the parents to try, in order.
//! Each key has one parent, chosen by rendezvous (highest-random-weight) hashing: every
//! parent gets a score from a hash of its address and the key, and the highest score wins.
//! So each object lives on one parent, every child picks the same one without talking to
//! the others, and when a parent is down (passive health, as reverse mode does) only its
//! own keys move — each to the parent with its second-highest score — while every other
//! key stays where it was (Squid's CARP and Traffic Server's parent selection work the
//! same way).

use crate::http::reverse::Health;
use crate::http::target::Authority;

/// The parent proxies and what is known of their health.
#[derive(Debug)]
pub struct Parents {
    pub health: Health,
    /// Each parent's own hash, worked out once.
    seeds: Vec<u64>,
}

impl Parents {
    /// `None` when no parent is configured.
    pub fn new(parents: &[Authority]) -> Option<Parents> {
        (!parents.is_empty()).then(|| Parents {
            health: Health::new(parents),
            seeds: parents
                .iter()
                .map(|p| fnv1a(FNV_OFFSET, p.to_string().as_bytes()))
                .collect(),
        })
    }

    /// The parents to try for `key`: by score, highest first, those marked down last.
    pub fn order(&self, key: &str) -> Vec<Authority> {
        let ranked = rank(&self.seeds, key);
        self.health.up_first(ranked.into_iter())
    }
}

/// Indices of the parents with these seeds, by score for `key`, highest first (a tie,
/// which needs two equal 64-bit scores, goes to the earlier parent).
pub fn rank(seeds: &[u64], key: &str) -> Vec<usize> {
    let key_hash = fnv1a(FNV_OFFSET, key.as_bytes());
    let mut scored: Vec<(u64, usize)> = seeds
        .iter()
        .enumerate()
        .map(|(i, seed)| (score(*seed, key_hash), i))
        .collect();
    scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    scored.into_iter().map(|(_, i)| i).collect()
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a: stable across Rust versions and machines, so children built apart agree.
fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// A parent's score for a key: the two hashes mixed by MurmurHash3's finaliser, so that
/// every bit of each changes about half the bits of the score (FNV alone spreads close
/// keys poorly, and the ranking would favour one parent).
fn score(seed: u64, key_hash: u64) -> u64 {
    let mut h = seed ^ key_hash.rotate_left(32);
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parents(n: usize) -> Vec<Authority> {
        (0..n)
            .map(|i| Authority {
                host: "127.0.0.1".into(),
                port: 3200 + i as u16,
            })
            .collect()
    }

    fn seeds(parents: &[Authority]) -> Vec<u64> {
        Parents::new(parents).map(|p| p.seeds).unwrap_or_default()
    }

    fn keys(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("http://127.0.0.1:9000/cache/{i}"))
            .collect()
    }

    #[test]
    fn keys_spread_over_every_parent() {
        let parents = parents(4);
        let seeds = seeds(&parents);
        let mut per_parent = [0usize; 4];
        for key in keys(4000) {
            per_parent[rank(&seeds, &key)[0]] += 1;
        }
        for (i, n) in per_parent.iter().enumerate() {
            assert!(
                (800..1200).contains(n),
                "parent {i} got {n} of 4000 keys: {per_parent:?}"
            );
        }
    }

    #[test]
    fn a_parent_marked_down_goes_last_and_comes_back_when_up() {
        let list = parents(3);
        let parents = Parents::new(&list).unwrap();
        let key = "http://127.0.0.1:9000/x";
        let order = parents.order(key);
        parents.health.mark_down(&order[0]);
        let without = parents.order(key);
        assert_eq!(without[..2], order[1..]);
        assert_eq!(without[2], order[0]);
        parents.health.mark_up(&order[0]);
        assert_eq!(parents.order(key), order);
    }

    proptest! {
        /// Removing one parent moves exactly its keys, each to the parent that ranked
        /// second for it, and leaves every other key where it was; adding it back
        /// restores every key.
        #[test]
        fn only_a_removed_parents_keys_move(
            n in 2usize..8,
            gone in 0usize..8,
            keys in proptest::collection::vec("[a-z0-9/._-]{1,40}", 1..200),
        ) {
            let gone = gone % n;
            let all = parents(n);
            let seeds_all = seeds(&all);
            let rest: Vec<Authority> =
                all.iter().enumerate().filter(|(i, _)| *i != gone).map(|(_, p)| p.clone()).collect();
            let seeds_rest = seeds(&rest);
            for key in &keys {
                let key = format!("http://h{key}");
                let before = rank(&seeds_all, &key);
                let after = &rest[rank(&seeds_rest, &key)[0]];
                if before[0] == gone {
                    prop_assert_eq!(after, &all[before[1]]);
                } else {
                    prop_assert_eq!(after, &all[before[0]]);
                }
                prop_assert_eq!(rank(&seeds_all, &key), before, "stable");
            }
        }
    }
}
