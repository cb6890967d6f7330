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
    for (flag, value, says) in [
        (
            "--cache-store",
            "http://127.0.0.1:6379",
            "expected redis://HOST:PORT[/DB]",
        ),
        (
            "--parent",
            "http://127.0.0.1:3128/x",
            "give the server only",
        ),
    ] {
        let out = proxy().args([flag, value]).assert().failure();
        let text = String::from_utf8(out.get_output().stderr.clone()).unwrap();
        assert!(text.contains(says), "{flag} {value}: {text}");
    }
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

impl Running {
    /// Sends `signal` (e.g. `-TERM`) with kill(1); whether it was delivered.
    fn signal(&self, signal: &str) -> bool {
        std::process::Command::new("kill")
            .args([signal, &self.0.id().to_string()])
            .status()
            .unwrap()
            .success()
    }
}

/// Starts the proxy binary with `args`, stdout piped (its `listening on` lines) and stderr
/// as given; the process is killed when the returned guard is dropped.
fn spawn_proxy<S: AsRef<std::ffi::OsStr>>(
    args: impl IntoIterator<Item = S>,
    stderr: Stdio,
) -> (Running, BufReader<std::process::ChildStdout>) {
    let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("proxy"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let mut running = Running(child);
    let out = BufReader::new(running.0.stdout.take().unwrap());
    (running, out)
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Prints `proxy listening on http://IP:PORT`, serves, and exits cleanly on SIGTERM.
#[test]
fn prints_listening_line_serves_and_stops_on_sigterm() {
    let (mut running, mut out) = spawn_proxy(
        ["--listen", "127.0.0.1:0", "--workers", "2"],
        Stdio::piped(),
    );
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
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

    assert!(running.signal("-TERM"));
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

/// `proxy block`, `unblock` and `rules check` edit and read both file formats.
#[test]
fn block_unblock_and_check_edit_the_rules_file() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["rules.toml", "blacklist.txt"] {
        let path = dir.path().join(name);
        let file = path.to_str().unwrap();
        // The file is created by the first block.
        proxy()
            .args(["--rules", file, "block", "*.ads.example"])
            .assert()
            .success()
            .stdout(format!("blocked *.ads.example in {file}\n"));
        proxy()
            .args(["--rules", file, "block", "*.ads.example"])
            .assert()
            .success()
            .stdout(format!("*.ads.example is already blocked in {file}\n"));
        proxy()
            .args(["block", "http://site.example/private/", "--rules", file])
            .assert()
            .success();
        let out = proxy().args(["rules", "check", file]).assert().success();
        let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
        assert_eq!(
            text,
            format!(
                "{file}: ok: 2 rule(s) (2 block, 0 allow), default allow, 0 header rewrite(s)\n"
            )
        );
        proxy()
            .args(["--rules", file, "unblock", "*.ads.example"])
            .assert()
            .success();
        let left = std::fs::read_to_string(&path).unwrap();
        assert!(!left.contains("ads.example"), "{left}");
        assert!(left.contains("http://site.example/private/"), "{left}");
        let out = proxy()
            .args(["--rules", file, "unblock", "never.example"])
            .assert()
            .failure();
        let err = String::from_utf8(out.get_output().stderr.clone()).unwrap();
        assert!(err.contains("no block rule for never.example"), "{err}");
        // No temporary files are left beside the rules file.
        let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(files.len() <= 2, "{files:?}");
    }
}

#[test]
fn rules_check_points_at_the_mistake() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rules.toml");
    std::fs::write(
        &path,
        "default = \"allow\"\n\n[[rule]]\naction = \"block\"\nregex = \"(unclosed\"\n",
    )
    .unwrap();
    let out = proxy()
        .args(["rules", "check", path.to_str().unwrap()])
        .assert()
        .failure();
    let err = String::from_utf8(out.get_output().stderr.clone()).unwrap();
    assert!(
        err.starts_with(&format!("proxy: {}:5:9: invalid regex", path.display())),
        "{err}"
    );
    // A broken rules file stops the proxy at start, with the same message.
    let out = proxy()
        .args(["--listen", "127.0.0.1:0", "--rules", path.to_str().unwrap()])
        .assert()
        .failure();
    let err = String::from_utf8(out.get_output().stderr.clone()).unwrap();
    assert!(err.contains("line 5, column 9: invalid regex"), "{err}");
}

#[test]
fn hash_password_makes_a_line_the_auth_file_accepts() {
    let out = proxy()
        .args(["hash-password", "ann"])
        .write_stdin("s3cret\n")
        .assert()
        .success();
    let line = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(line.starts_with("ann:$2"), "{line}");
    assert!(!line.contains("s3cret"));
    proxy::policy::auth::Auth::parse(&line).unwrap();
}

/// Reads `NAME listening on http://ADDR` lines until `name`'s, and returns ADDR.
fn listening(lines: &mut impl BufRead, name: &str) -> String {
    let mut line = String::new();
    loop {
        line.clear();
        assert!(lines.read_line(&mut line).unwrap() > 0, "no {name} line");
        if let Some(addr) = line
            .trim()
            .strip_prefix(&format!("{name} listening on http://"))
        {
            return addr.to_string();
        }
    }
}

fn http_get(addr: &str, request: &str) -> String {
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    conn.write_all(request.as_bytes()).unwrap();
    let mut page = String::new();
    conn.read_to_string(&mut page).unwrap();
    page
}

/// The access log is written, reopened on SIGUSR1 after rotation, and flushed at exit;
/// the admin listener serves /metrics.
#[test]
fn access_log_rotates_on_sigusr1_and_admin_serves_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("access.log");
    let (mut running, mut out) = spawn_proxy(
        [
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--access-log",
            log_path.to_str().unwrap(),
            "--log-format",
            "common",
        ],
        Stdio::null(),
    );
    let addr = listening(&mut out, "proxy");
    let admin = listening(&mut out, "proxy admin");
    let page = http_get(
        &addr,
        "GET / HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n",
    );
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    // Wait for the line, then rotate the file away and ask for a new one.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::fs::read_to_string(&log_path)
        .unwrap_or_default()
        .is_empty()
    {
        assert!(std::time::Instant::now() < deadline, "no access log line");
        std::thread::yield_now();
    }
    let rotated = dir.path().join("access.log.1");
    std::fs::rename(&log_path, &rotated).unwrap();
    assert!(running.signal("-USR1"));
    while !log_path.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the log was not reopened"
        );
        std::thread::yield_now();
    }
    let page = http_get(
        &addr,
        "GET /nowhere HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n",
    );
    assert!(page.starts_with("HTTP/1.1 404"), "{page}");
    let metrics = http_get(&admin, "GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n");
    assert!(metrics.starts_with("HTTP/1.1 200 OK"), "{metrics}");
    assert!(
        metrics.contains("proxylab_requests_total{method=\"GET\",status=\"2xx\"} 1\n"),
        "{metrics}"
    );
    assert!(running.signal("-TERM"));
    assert!(running.0.wait().unwrap().success());
    let first = std::fs::read_to_string(&rotated).unwrap();
    let second = std::fs::read_to_string(&log_path).unwrap();
    assert!(first.contains("\"GET / HTTP/1.1\" 200"), "{first}");
    assert!(second.contains("\"GET /nowhere HTTP/1.1\" 404"), "{second}");
    assert_eq!((first.lines().count(), second.lines().count()), (1, 1));
}

/// SIGHUP reloads the rules. The rules path is a symlink into another directory, so the
/// file watcher (which watches the link's directory) does not see the change: only the
/// signal can apply it.
#[test]
fn sighup_reloads_the_rules() {
    let watched = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let real = elsewhere.path().join("real.txt");
    std::fs::write(&real, "# nothing blocked\n").unwrap();
    let link = watched.path().join("rules.txt");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let (running, mut out) = spawn_proxy(
        [
            "--listen".as_ref(),
            "127.0.0.1:0".as_ref(),
            "--offline".as_ref(),
            "--rules".as_ref(),
            link.as_os_str(),
        ],
        Stdio::null(),
    );
    let addr = listening(&mut out, "proxy");
    let ask = || {
        http_get(
            &addr,
            "GET http://blocked.test/ HTTP/1.1\r\nHost: blocked.test\r\nConnection: close\r\n\r\n",
        )
    };
    // --offline: an unblocked name that is not local cannot be resolved.
    assert!(ask().starts_with("HTTP/1.1 502"));
    std::fs::write(&real, "blocked.test\n").unwrap();
    assert!(running.signal("-HUP"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let page = ask();
        if page.starts_with("HTTP/1.1 403") {
            assert!(
                page.contains("rules.txt rule 1 (line 1: blocked.test)"),
                "{page}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "SIGHUP did not reload: {page}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
