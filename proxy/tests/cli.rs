//! The `proxy` binary as a user runs it.

// Tests may panic on the unexpected: that is how they fail.
#![allow(clippy::unwrap_used)]

use assert_cmd::Command;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Stdio};

fn proxy() -> Command {
    Command::cargo_bin("proxy").unwrap()
}

#[test]
fn help_explains_every_option() {
    let out = proxy()
        .arg("--help")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    insta::assert_snapshot!("proxy_help", String::from_utf8(out).unwrap());
}

#[test]
fn bad_arguments_say_what_is_wrong() {
    let out = proxy()
        .args(["--resolve", "no-equals-sign"])
        .assert()
        .failure()
        .get_output()
        .stderr
        .clone();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("expected NAME=IP"), "{text}");
    let out = proxy()
        .args(["--header-timeout", "soon"])
        .assert()
        .failure()
        .get_output()
        .stderr
        .clone();
    assert!(String::from_utf8(out).unwrap().contains("10s, 250ms"));
}

#[test]
fn listen_on_a_taken_port_fails_clearly() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = proxy()
        .args(["--listen", &addr])
        .assert()
        .failure()
        .get_output()
        .stderr
        .clone();
    assert!(String::from_utf8(out)
        .unwrap()
        .contains(&format!("cannot listen on {addr}")));
}

/// Kills the child if the test fails before it is stopped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Prints `proxy listening on http://IP:PORT`, serves, and exits cleanly on SIGTERM.
#[test]
fn prints_listening_line_serves_and_stops_on_sigterm() {
    let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("proxy"))
        .args(["--listen", "127.0.0.1:0", "--workers", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut running = Running(child);
    let mut line = String::new();
    BufReader::new(running.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("proxy listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();

    let mut conn = std::net::TcpStream::connect(&addr).unwrap();
    conn.write_all(b"GET / HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut page = String::new();
    conn.read_to_string(&mut page).unwrap();
    assert!(page.starts_with("HTTP/1.1 200 OK"), "{page}");

    let pid = running.0.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = running.0.wait().unwrap();
    assert!(status.success(), "exit status {status}");
    let mut log = String::new();
    running
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(log.contains("[NEW CONNECTION] 127.0.0.1:"), "{log}");
    assert!(
        log.contains("on worker-"),
        "the worker thread is named: {log}"
    );
    assert!(log.contains("[ACTIVE CONNECTIONS] 1"), "{log}");
    assert!(log.contains("proxy stopped"), "{log}");
}
