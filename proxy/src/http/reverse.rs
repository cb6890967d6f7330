//! Reverse mode (`--upstream URL`, repeatable): the proxy stands in front of servers.
//!
//! Takes: an origin-form request (`GET /path`). Returns: the upstreams to try, in order.
//! Upstreams take turns (round-robin); one that refused a connection is passed over for
//! [`DOWN_FOR`] (passive health checking: no probes, only what real requests saw). A
//! request moves to the next upstream only if it was never sent — a refused connection —
//! never after an upstream may have seen it.

use crate::http::target::Authority;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long an upstream that refused a connection is passed over.
pub const DOWN_FOR: Duration = Duration::from_secs(10);

/// Passive health of a list of upstreams (reverse mode's servers, `--parent` proxies): one
/// that refused a connection is down for [`DOWN_FOR`], or until it answers again.
#[derive(Debug)]
pub struct Health {
    upstreams: Vec<Authority>,
    down_until: Mutex<Vec<Option<Instant>>>,
}

impl Health {
    pub fn new(upstreams: &[Authority]) -> Health {
        Health {
            upstreams: upstreams.to_vec(),
            down_until: Mutex::new(vec![None; upstreams.len()]),
        }
    }

    pub fn upstreams(&self) -> &[Authority] {
        &self.upstreams
    }

    /// Which of the upstreams (by index) are down now.
    pub fn down(&self) -> Vec<bool> {
        let now = Instant::now();
        let down = self
            .down_until
            .lock()
            .map(|d| d.clone())
            .unwrap_or_default();
        (0..self.upstreams.len())
            .map(|i| down.get(i).copied().flatten().is_some_and(|t| t > now))
            .collect()
    }

    /// `indices` in their order, those down moved to the end (tried only if all else
    /// fails).
    pub fn up_first(&self, indices: impl Iterator<Item = usize> + Clone) -> Vec<Authority> {
        let down = self.down();
        let is_down = |i: &usize| down.get(*i).copied().unwrap_or(false);
        let up = indices.clone().filter(|i| !is_down(i));
        up.chain(indices.filter(is_down))
            .map(|i| self.upstreams[i].clone())
            .collect()
    }

    /// Passes `upstream` over for [`DOWN_FOR`].
    pub fn mark_down(&self, upstream: &Authority) {
        tracing::warn!(
            "upstream {upstream} refused a connection; passing it over for {DOWN_FOR:?}"
        );
        self.set(upstream, Some(Instant::now() + DOWN_FOR));
    }

    /// Marks `upstream` healthy again (it answered).
    pub fn mark_up(&self, upstream: &Authority) {
        self.set(upstream, None);
    }

    fn set(&self, upstream: &Authority, until: Option<Instant>) {
        if let Ok(mut down) = self.down_until.lock() {
            for (i, u) in self.upstreams.iter().enumerate() {
                if u == upstream {
                    down[i] = until;
                }
            }
        }
    }
}

/// The upstream servers of reverse mode.
#[derive(Debug)]
pub struct Reverse {
    next: AtomicUsize,
    pub health: Health,
}

impl Reverse {
    /// `None` when no upstream is configured (forward-proxy mode).
    pub fn new(upstreams: &[Authority]) -> Option<Reverse> {
        (!upstreams.is_empty()).then(|| Reverse {
            next: AtomicUsize::new(0),
            health: Health::new(upstreams),
        })
    }

    /// The upstreams to try for the next request: this request's turn first, the others
    /// after it, and any marked down at the end (they are tried only if all else fails).
    pub fn order(&self) -> Vec<Authority> {
        let n = self.health.upstreams().len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        self.health.up_first((0..n).map(move |k| (start + k) % n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(port: u16) -> Authority {
        Authority {
            host: "127.0.0.1".into(),
            port,
        }
    }

    #[test]
    fn turns_rotate_and_down_upstreams_go_last() {
        let reverse = Reverse::new(&[a(1), a(2), a(3)]).unwrap();
        assert_eq!(reverse.order(), [a(1), a(2), a(3)]);
        assert_eq!(reverse.order(), [a(2), a(3), a(1)]);
        reverse.health.mark_down(&a(3));
        assert_eq!(reverse.order(), [a(1), a(2), a(3)]);
        assert_eq!(
            reverse.order(),
            [a(1), a(2), a(3)],
            "3's turn is skipped while down"
        );
        reverse.health.mark_up(&a(3));
        assert_eq!(reverse.order()[0], a(2));
    }
}
