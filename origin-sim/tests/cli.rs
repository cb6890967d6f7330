//! The `origin-sim` binary as a user runs it.

// Tests may panic on the unexpected: that is how they fail.
#![allow(clippy::unwrap_used)]

use assert_cmd::Command;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::Stdio;

#[test]
fn help_lists_every_route() {
    let out = Command::cargo_bin("origin-sim")
        .unwrap()
        .arg("--help")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).unwrap();
    for (route, _) in origin_sim::ROUTES {
        assert!(text.contains(route), "{route} missing from --help");
    }
    insta::assert_snapshot!("origin_sim_help", text);
}

#[test]
fn prints_listening_line_and_serves() {
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("origin-sim"))
        .args(["--http", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("origin-sim http listening on http://")
        .map(str::to_string);
    let result = std::panic::catch_unwind(|| {
        let addr = addr.expect("listening line");
        let mut conn = std::net::TcpStream::connect(&addr).unwrap();
        conn.write_all(b"GET /bytes/16 HTTP/1.1\r\nHost: o\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut response = Vec::new();
        conn.read_to_end(&mut response).unwrap();
        let text = String::from_utf8_lossy(&response);
        assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
        assert!(
            text.contains("X-Origin-Hits: 1") && text.contains("X-Origin-Conn: 1"),
            "{text}"
        );
        assert!(response.ends_with(&origin_sim::seeded_body(origin_sim::DEFAULT_SEED, 16)));
    });
    let _ = child.kill();
    let _ = child.wait();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}
