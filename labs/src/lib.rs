//! proxylab's graded labs: a grader for any proxy program, in any language, offline.
//!
//! Takes: a lab number and a subject — the reference proxy (default), any program started
//! with `--cmd "python3 myproxy.py {port}"`, or one already running at `--addr`. Returns: a
//! report with each check's points, what it proves, and for a failure what happened, a hint
//! and a command that reproduces it.
//!
//! How a check is run ([`run_lab`]): origin-sim and the subject start fresh for it (nothing
//! one check does can change another's result), it gets a time limit, and everything is torn
//! down after it, the subject's whole process group included. Checks never wait a fixed
//! time for something: they ask again until it happened or a deadline passed; concurrency
//! is proven by responses the origin holds until the check lets them go, caching by
//! `X-Origin-Hits` (how many requests reached the origin).
//!
//! - [`harness`]: the origin, the subject, raw HTTP connections.
//! - [`labs`]: the checks of each lab.
//! - [`report`]: the table, JSON and Gradescope output.

#![forbid(unsafe_code)]

pub mod harness;
pub mod labs;
pub mod report;

use harness::{Env, Subject};
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

/// What a check's body returns.
pub type CheckFuture<'a> = Pin<Box<dyn Future<Output = Result<(), Fail>> + Send + 'a>>;

/// One graded check.
pub struct Check {
    /// A short stable name: `--only`, the cargo test, the reports.
    pub id: &'static str,
    pub points: u32,
    /// What passing proves, in one sentence.
    pub proves: &'static str,
    /// Where to look when it fails.
    pub hint: &'static str,
    pub run: for<'a> fn(&'a Env) -> CheckFuture<'a>,
}

/// Why a check failed: what the harness saw, and a command to see it yourself.
#[derive(Debug, Clone)]
pub struct Fail {
    pub what: String,
    pub reproduce: String,
}

impl Fail {
    pub fn new(what: impl Into<String>, reproduce: impl Into<String>) -> Fail {
        Fail {
            what: what.into(),
            reproduce: reproduce.into(),
        }
    }
}

/// A lab: its checks, and how the reference proxy runs for it.
pub struct Lab {
    pub number: u8,
    pub title: &'static str,
    /// Flags the reference proxy runs with for this lab (the handout states the same
    /// requirements for any subject).
    pub reference_flags: &'static [&'static str],
    /// What the rules file (`{rules}`) holds when the subject starts.
    pub rules: &'static str,
    /// A chat-server lab (its reference is origin-sim's chat room), not a proxy lab.
    pub chat: bool,
    pub checks: Vec<Check>,
}

impl Lab {
    pub fn points(&self) -> u32 {
        self.checks.iter().map(|c| c.points).sum()
    }

    pub fn check(&self, id: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.id == id)
    }

    /// The reference proxy for this lab, with `extra` flags (a mutant when they switch a
    /// feature off).
    pub fn reference(&self, extra: &[&str]) -> Subject {
        Subject::reference(self.reference_flags, extra)
    }
}

/// Every lab, in order.
pub fn all_labs() -> Vec<Lab> {
    vec![
        labs::lab1::lab(),
        labs::lab2::lab(),
        labs::lab3::lab(),
        labs::lab4::lab(),
        labs::lab5::lab(),
    ]
}

pub fn lab(number: u8) -> Option<Lab> {
    all_labs().into_iter().find(|l| l.number == number)
}

/// The result of one check.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Outcome {
    pub id: String,
    pub points: u32,
    pub max: u32,
    pub proves: String,
    /// `None` when it passed.
    pub failure: Option<String>,
    pub hint: Option<String>,
    pub reproduce: Option<String>,
    #[serde(skip)]
    pub elapsed: Duration,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.failure.is_none()
    }
}

/// How long one check may take, start and teardown included.
pub const CHECK_LIMIT: Duration = Duration::from_secs(30);

/// Runs one check of `lab` against a fresh origin and subject.
pub async fn run_check(lab: &Lab, check: &Check, subject: &Subject) -> Outcome {
    run_check_recorded(lab, check, subject, None).await
}

/// [`run_check`], recording the traffic on both sides in `pcap_dir/labN-CHECK.pcap`.
pub async fn run_check_recorded(
    lab: &Lab,
    check: &Check,
    subject: &Subject,
    pcap_dir: Option<&std::path::Path>,
) -> Outcome {
    let started = Instant::now();
    let pcap = pcap_dir.map(|dir| dir.join(format!("lab{}-{}.pcap", lab.number, check.id)));
    let result = tokio::time::timeout(CHECK_LIMIT, async {
        let env = Env::start(subject, lab.rules, lab.chat, pcap.as_deref())
            .await
            .map_err(|e| Fail::new(e.to_string(), "(see the message above)"))?;
        let result = (check.run)(&env).await;
        env.stop().await;
        result
    })
    .await
    .unwrap_or_else(|_| {
        Err(Fail::new(
            format!("the check did not finish within {CHECK_LIMIT:?}"),
            "(run the subject by hand and try the check's requests with curl)",
        ))
    });
    let (failure, hint, reproduce) = match result {
        Ok(()) => (None, None, None),
        Err(f) => (
            Some(f.what),
            Some(check.hint.to_string()),
            Some(f.reproduce),
        ),
    };
    Outcome {
        id: check.id.to_string(),
        points: if failure.is_none() { check.points } else { 0 },
        max: check.points,
        proves: check.proves.to_string(),
        failure,
        hint,
        reproduce,
        elapsed: started.elapsed(),
    }
}

/// Runs a lab's checks (or only one) and reports each as it finishes to `progress`.
pub async fn run_lab(
    lab: &Lab,
    subject: &Subject,
    only: Option<&str>,
    progress: impl FnMut(usize, usize, &Outcome),
) -> report::Report {
    run_lab_recorded(lab, subject, only, None, progress).await
}

/// [`run_lab`], with a pcap per check in `pcap_dir` (created if missing).
pub async fn run_lab_recorded(
    lab: &Lab,
    subject: &Subject,
    only: Option<&str>,
    pcap_dir: Option<&std::path::Path>,
    mut progress: impl FnMut(usize, usize, &Outcome),
) -> report::Report {
    if let Some(dir) = pcap_dir {
        let _ = std::fs::create_dir_all(dir);
    }
    let started = Instant::now();
    let checks: Vec<&Check> = lab
        .checks
        .iter()
        .filter(|c| only.is_none_or(|o| o == c.id))
        .collect();
    let mut outcomes = Vec::new();
    for (i, check) in checks.iter().enumerate() {
        let outcome = run_check_recorded(lab, check, subject, pcap_dir).await;
        progress(i + 1, checks.len(), &outcome);
        outcomes.push(outcome);
    }
    report::Report {
        lab: lab.number,
        title: lab.title.to_string(),
        subject: describe(subject),
        outcomes,
        elapsed: started.elapsed(),
    }
}

/// How a report names the subject.
pub fn describe(subject: &Subject) -> String {
    match subject {
        Subject::Reference(flags) if flags.is_empty() => "the reference".into(),
        Subject::Reference(flags) => format!("the reference ({})", flags.join(" ")),
        Subject::Command(cmd) => format!("`{cmd}`"),
        Subject::Addr(addr) => format!("the proxy at {addr}"),
    }
}

/// The subject `cargo test` grades: `PROXYLAB_SUBJECT` (a command with `{port}`), or the
/// reference proxy with the lab's flags.
pub fn subject_from_env(lab: &Lab) -> Subject {
    match std::env::var("PROXYLAB_SUBJECT") {
        Ok(cmd) if !cmd.trim().is_empty() => Subject::Command(cmd),
        _ => lab.reference(&[]),
    }
}

/// `lab new DIR`: a starter project for students who write their proxy in Rust. It
/// compiles with the standard library alone, listens on the port it is given, and answers
/// 501 where the TODOs are.
pub fn write_starter(dir: &std::path::Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    if dir.join("Cargo.toml").exists() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            format!("{} already holds a Cargo.toml", dir.display()),
        ));
    }
    std::fs::create_dir_all(dir.join("src"))?;
    let files = [
        (
            dir.join("Cargo.toml"),
            include_str!("../starter/Cargo.toml.txt"),
        ),
        (
            dir.join("src/main.rs"),
            include_str!("../starter/main.rs.txt"),
        ),
    ];
    for (path, text) in &files {
        std::fs::write(path, text)?;
    }
    Ok(files.into_iter().map(|(p, _)| p).collect())
}

/// `lab export classroom`: GitHub Classroom's `autograding.json`, one test per check, each
/// a `cargo test` of that check with its points. `subject` is the command that runs the
/// student's program (`{port}` for its port); `chat_subject` the same for lab 1.
pub fn classroom(subject: &str, chat_subject: &str) -> String {
    let tests: Vec<serde_json::Value> = all_labs()
        .iter()
        .flat_map(|lab| {
            let who = if lab.chat { chat_subject } else { subject };
            lab.checks.iter().map(move |check| {
                serde_json::json!({
                    "name": format!("lab{}: {}", lab.number, check.id),
                    "setup": "",
                    "run": format!(
                        "PROXYLAB_SUBJECT='{}' cargo test -q -p labs --test lab{} -- --exact {}",
                        who.replace('\'', "'\\''"),
                        lab.number,
                        check.id.replace('-', "_")
                    ),
                    "input": "",
                    "output": "",
                    "comparison": "included",
                    "timeout": 5,
                    "points": check.points,
                })
            })
        })
        .collect();
    serde_json::to_string_pretty(&serde_json::json!({ "tests": tests })).unwrap_or_default()
}
