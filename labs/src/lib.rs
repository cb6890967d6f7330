//! proxylab's graded labs — not built yet.
//!
//! This crate will hold the grader (issue 6): a harness that starts origin-sim and any
//! proxy program, runs each lab's checks with partial credit, hints and reproducer
//! commands, and reports as a table, JSON or Gradescope results. Until then it is empty
//! on purpose: nothing here pretends to grade.
//!
//! The five labs, as planned: 1 sockets and many clients (a chat server), 2 forwarding,
//! 3 concurrency, 4 caching, 5 HTTPS tunnels and filtering.

#![forbid(unsafe_code)]
