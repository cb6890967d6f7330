//! proxylab's graded labs: a grader for any proxy program, in any language, offline.
//!
//! Takes: a lab number and a subject — the reference proxy (default), any program started
//! with `--cmd "python3 myproxy.py {port}"`, or one already running at `--addr`. Returns: a
//! report with each check's points, what it proves, and for a failure what happened, a hint
//! and how to reproduce it.
//!
//! How a check is run ([`run_lab`]): origin-sim and the subject start fresh for it (nothing
//! one check does can change another's result), every step of it has a short deadline, and
//! everything is torn down after it, every process of the subject included. Checks
//! never wait a fixed time for something: they ask again until it happened or a deadline
//! passed; concurrency is proven by responses the origin holds until the check lets them
//! go, caching by `X-Origin-Hits` (how many requests reached the origin).
//!
//! The grader is fair to programs it did not write (docs/architecture.md, "Grading programs
//! we did not write"): it sees readiness in `/proc` instead of connecting, drains the
//! program's output, and a check first proves the ability it builds on — when that is
//! missing the check is *not judged* and points to the check that covers it, instead of
//! blaming its own feature.
//!
//! - [`harness`]: the origin, the subject, raw HTTP connections with step deadlines.
//! - [`process`]: what the grader sees of the subject's process: port, output, readiness.
//! - [`sandbox`]: the subject's room: its start, limits, isolation and end; a program that
//!   is not the student's own is refused.
//! - [`labs`]: the checks of each lab.
//! - [`points`]: what each check is worth (`labs/points.toml`, or an instructor's file).
//! - [`report`]: the table, JSON and Gradescope output; [`html`]: the HTML report.
//! - [`submission`]: a student's folder: how it is built and started (`proxylab.toml`).
//! - [`batch`]: every submission in a folder, into `grades.csv`.
//! - [`export`]: GitHub Classroom and Gradescope autograders, and the student kit.

#![forbid(unsafe_code)]

pub mod batch;
pub mod export;
pub mod harness;
pub mod html;
pub mod labs;
pub mod points;
pub mod process;
pub mod report;
pub mod sandbox;
pub mod submission;

use harness::{secs, sh, Env, HarnessError, Subject};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::{Duration, Instant};

/// What a check's body returns.
pub type CheckFuture<'a> = Pin<Box<dyn Future<Output = Result<(), Fail>> + Send + 'a>>;

/// One graded check.
pub struct Check {
    /// A short stable name: `--only`, the cargo test, the reports.
    pub id: &'static str,
    /// What it is worth: from the points table (`labs/points.toml`, or `--points FILE`).
    pub points: u32,
    /// What passing proves, in one sentence.
    pub proves: &'static str,
    /// Where to look when it fails (unless the failure brings a hint of its own).
    pub hint: &'static str,
    pub run: for<'a> fn(&'a Env) -> CheckFuture<'a>,
}

impl Check {
    /// A check worth 0 until a points table says (see [`all_labs`]).
    pub fn new(
        id: &'static str,
        proves: &'static str,
        hint: &'static str,
        run: for<'a> fn(&'a Env) -> CheckFuture<'a>,
    ) -> Check {
        Check {
            id,
            points: 0,
            proves,
            hint,
            run,
        }
    }
}

/// Why a check failed: what the harness saw, and a command to see it yourself.
#[derive(Debug, Clone)]
pub struct Fail {
    pub what: String,
    pub reproduce: String,
    /// A hint for what actually went wrong, instead of the check's own.
    pub hint: Option<String>,
    /// The check could not judge its own feature, because the ability it builds on is
    /// missing; this names the check that covers that ability.
    pub not_judged: Option<String>,
    /// Where a body differed from what was expected (boxed: a `Fail` travels in every
    /// `Result` of the checks).
    pub diff: Option<Box<Diff>>,
}

/// Where a received body first differs from the expected one, with a window of both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diff {
    /// The first differing byte.
    pub at: usize,
    /// Where the windows start.
    pub offset: usize,
    pub expected: Vec<u8>,
    pub received: Vec<u8>,
}

impl Diff {
    /// The first difference between `received` and `expected` (there is one), with up to
    /// 32 bytes before it and 64 after.
    pub fn between(received: &[u8], expected: &[u8]) -> Diff {
        let at = received
            .iter()
            .zip(expected)
            .position(|(a, b)| a != b)
            .unwrap_or(received.len().min(expected.len()));
        let offset = at.saturating_sub(32);
        let window = |b: &[u8]| b[offset.min(b.len())..(at + 64).min(b.len())].to_vec();
        Diff {
            at,
            offset,
            expected: window(expected),
            received: window(received),
        }
    }
}

impl Fail {
    pub fn new(what: impl Into<String>, reproduce: impl Into<String>) -> Fail {
        Fail {
            what: what.into(),
            reproduce: reproduce.into(),
            hint: None,
            not_judged: None,
            diff: None,
        }
    }

    /// The same failure with a hint chosen for what went wrong.
    pub fn hint(mut self, hint: impl Into<String>) -> Fail {
        self.hint = Some(hint.into());
        self
    }

    /// `base` (a failure of the ability this check builds on) turned into "not judged:
    /// `missing` — see `covered_by`".
    pub fn not_judged(base: Fail, missing: &str, covered_by: &str) -> Fail {
        if base.not_judged.is_some() {
            return base;
        }
        Fail {
            not_judged: Some(covered_by.to_string()),
            ..Fail::new(
                format!("not judged: {missing} — see {covered_by} ({})", base.what),
                base.reproduce,
            )
            .hint(format!(
                "this check builds on what {covered_by} grades: make that pass first"
            ))
        }
    }
}

/// How checks run: deadlines and what to keep.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long one check may take in all, start and teardown included (a backstop: every
    /// step has its own deadline).
    pub check_limit: Duration,
    /// How long one step may take: a response head, the next bytes of a body, a chat line.
    pub step: Duration,
    /// Write one pcap per check here (labN-CHECK.pcap).
    pub pcap_dir: Option<PathBuf>,
    /// Write the subject's stdout and stderr of each check here (labN-CHECK.log, bounded).
    pub output_dir: Option<PathBuf>,
    /// Copy the subject's output to stderr as it comes (`lab repro`).
    pub echo_output: bool,
    /// What the subject's program may use (its build has larger ones).
    pub limits: sandbox::Limits,
}

/// A check may take 60 s in all; a step 5 s.
impl Default for Options {
    fn default() -> Self {
        Options {
            check_limit: Duration::from_secs(60),
            step: Duration::from_secs(5),
            pcap_dir: None,
            output_dir: None,
            echo_output: false,
            limits: sandbox::Limits::RUN,
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

/// Every lab, in order, as the checks' code defines them (no points yet).
pub fn definitions() -> Vec<Lab> {
    vec![
        labs::lab1::lab(),
        labs::lab2::lab(),
        labs::lab3::lab(),
        labs::lab4::lab(),
        labs::lab5::lab(),
    ]
}

/// Every lab, in order, with the built-in points.
pub fn all_labs() -> Vec<Lab> {
    all_labs_with(&points::Points::builtin())
}

/// Every lab, in order, with `points` (over the built-in ones).
pub fn all_labs_with(points: &points::Points) -> Vec<Lab> {
    let points = points.clone().over(&points::Points::builtin());
    let mut labs = definitions();
    for lab in &mut labs {
        points.apply(lab);
    }
    labs
}

pub fn lab(number: u8) -> Option<Lab> {
    all_labs().into_iter().find(|l| l.number == number)
}

/// What became of a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Passed,
    Failed,
    /// The ability the check builds on is missing (another check grades it): no points,
    /// and no blame on this check's feature.
    NotJudged,
    /// The subject never started, so the check did not run.
    NotRun,
}

/// The result of one check.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Outcome {
    pub id: String,
    pub points: u32,
    pub max: u32,
    pub proves: String,
    pub verdict: Verdict,
    /// `None` when it passed.
    pub failure: Option<String>,
    pub hint: Option<String>,
    /// What the check did, as commands (with the ports of that run).
    pub reproduce: Option<String>,
    /// The `lab repro` command that runs the check again and keeps everything up.
    pub repro: Option<String>,
    /// The last lines the subject printed (stdout and stderr), when it failed.
    pub output: Vec<String>,
    #[serde(skip)]
    pub elapsed: Duration,
    /// Where a wrong body first differed.
    #[serde(skip)]
    pub diff: Option<Box<Diff>>,
    /// The subject's and the origin's addresses during the check (to read its capture).
    #[serde(skip)]
    pub addrs: Option<(std::net::SocketAddr, std::net::SocketAddr)>,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.verdict == Verdict::Passed
    }
}

/// The `lab repro` command for `check` of `lab` on `subject`.
pub fn repro_command(lab: &Lab, check: &Check, subject: &Subject) -> String {
    let who = match subject {
        Subject::Reference(_) => String::new(),
        Subject::Command(cmd) => format!(" --cmd {}", sh(cmd)),
        Subject::Folder { dir, .. } => format!(" --submission {}", sh(&dir.display().to_string())),
        Subject::Addr(addr) => format!(" --addr {addr}"),
    };
    format!("lab repro {} {}{who}", lab.number, check.id)
}

/// How many lines of the subject's output a failed check shows.
const OUTPUT_LINES: usize = 5;

/// Runs one check of `lab` against a fresh origin and subject.
pub async fn run_check(lab: &Lab, check: &Check, subject: &Subject, options: &Options) -> Outcome {
    check_once(lab, check, subject, options).await.outcome
}

/// What one check's run tells [`run_lab`] besides its outcome.
struct Ran {
    outcome: Outcome,
    /// The origin and the subject started.
    started: bool,
    /// The subject is not the student's own program: the whole lab is refused.
    refused: Option<String>,
    isolation: Option<sandbox::Isolation>,
}

async fn check_once(lab: &Lab, check: &Check, subject: &Subject, options: &Options) -> Ran {
    let started = Instant::now();
    let mut refused = None;
    let mut isolation = None;
    let (result, output, addrs) = match Env::start(subject, lab, check.id, options).await {
        Ok(mut env) => {
            let mut result = judge(check, &env, options).await;
            // The grader stopped the program (a limit, or not the student's own): that is
            // what the check says, not the broken connection that followed.
            match env.stopped() {
                Some(sandbox::Stop::Refused(why)) => {
                    refused = Some(why.clone());
                    result = Err(Fail::new(why, "(see above)"));
                }
                Some(sandbox::Stop::Limit(why)) => {
                    result = Err(Fail::new(why, "(run it by hand and watch what it uses: top, ps -L)")
                        .hint("every program the grader starts has limits (grading.md, \"Limits\"); an honest proxy or chat server stays far below them"));
                }
                None => {}
            }
            let output = match (&result, env.output()) {
                (Err(_), Some(out)) => out.last_lines(OUTPUT_LINES),
                _ => Vec::new(),
            };
            let addrs = (env.subject, env.origin.addr());
            isolation = env.isolation.clone();
            env.stop().await;
            (result, output, Some(addrs))
        }
        Err(HarnessError::Refused(why)) => {
            refused = Some(why.clone());
            (Err(Fail::new(why, "(see above)")), Vec::new(), None)
        }
        Err(e) => (Err(start_failure(e)), Vec::new(), None),
    };
    let mut outcome = outcome(lab, check, subject, result, output, started.elapsed());
    outcome.addrs = addrs;
    Ran {
        outcome,
        started: addrs.is_some(),
        refused,
        isolation,
    }
}

/// A subject that did not start, as a failure.
fn start_failure(e: HarnessError) -> Fail {
    if let HarnessError::Sandbox(_) = e {
        return Fail::new(
            e.to_string(),
            "(lab doctor says what the sandbox can do here)",
        )
        .hint("a grading error: your program never ran; the instructor can run `lab doctor`");
    }
    Fail::new(
        e.to_string(),
        "(run the command by hand: does it start and listen?)",
    )
    .hint("the program must listen on 127.0.0.1 at the port given as {port} and keep running")
}

/// Runs `check` on `env` within the check limit.
async fn judge(check: &Check, env: &Env, options: &Options) -> Result<(), Fail> {
    tokio::time::timeout(options.check_limit, (check.run)(env))
        .await
        .unwrap_or_else(|_| {
            Err(Fail::new(
                format!(
                    "the check did not finish within {} in all (each of its steps had {}); --check-limit allows more",
                    secs(options.check_limit),
                    secs(options.step)
                ),
                "(see the reproduce command)",
            ))
        })
}

fn outcome(
    lab: &Lab,
    check: &Check,
    subject: &Subject,
    result: Result<(), Fail>,
    output: Vec<String>,
    elapsed: Duration,
) -> Outcome {
    let base = Outcome {
        id: check.id.to_string(),
        points: 0,
        max: check.points,
        proves: check.proves.to_string(),
        verdict: Verdict::Passed,
        failure: None,
        hint: None,
        reproduce: None,
        repro: None,
        output: Vec::new(),
        elapsed,
        diff: None,
        addrs: None,
    };
    match result {
        Ok(()) => Outcome {
            points: check.points,
            ..base
        },
        Err(f) => Outcome {
            verdict: if f.not_judged.is_some() {
                Verdict::NotJudged
            } else {
                Verdict::Failed
            },
            failure: Some(f.what),
            hint: Some(f.hint.unwrap_or_else(|| check.hint.to_string())),
            reproduce: Some(f.reproduce),
            repro: Some(repro_command(lab, check, subject)),
            output,
            diff: f.diff,
            ..base
        },
    }
}

/// `lab repro`: runs `check` once and keeps the origin and the subject running; the caller
/// prints the outcome and the live commands, and stops the [`Env`] when the user is done.
pub async fn repro(
    lab: &Lab,
    check: &Check,
    subject: &Subject,
    options: &Options,
) -> Result<(Outcome, Env), HarnessError> {
    let started = Instant::now();
    let env = Env::start(subject, lab, check.id, options).await?;
    let result = judge(check, &env, options).await;
    let output = match (&result, env.output()) {
        (Err(_), Some(out)) => out.last_lines(OUTPUT_LINES),
        _ => Vec::new(),
    };
    let outcome = outcome(lab, check, subject, result, output, started.elapsed());
    Ok((outcome, env))
}

/// Runs a lab's checks (or only one) and reports each as it finishes to `progress`. A
/// subject that cannot be graded (no `{port}` in its command, or it does not start for the
/// first check) is reported once, and no other check runs.
pub async fn run_lab(
    lab: &Lab,
    subject: &Subject,
    only: Option<&str>,
    options: &Options,
    mut progress: impl FnMut(usize, usize, &Outcome),
) -> report::Report {
    if let Some(dir) = &options.pcap_dir {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Some(dir) = &options.output_dir {
        let _ = std::fs::create_dir_all(dir);
    }
    let started = Instant::now();
    let checks: Vec<&Check> = lab
        .checks
        .iter()
        .filter(|c| only.is_none_or(|o| o == c.id))
        .collect();
    let mut outcomes = Vec::new();
    let mut aborted = subject.validate().err();
    let mut isolation = None;
    let mut refused = None;
    for (i, check) in checks.iter().enumerate() {
        let outcome = match &aborted {
            Some(_) => not_run(check),
            None => {
                let ran = check_once(lab, check, subject, options).await;
                if i == 0 && !ran.started {
                    aborted = ran.outcome.failure.clone();
                }
                isolation = isolation.or(ran.isolation);
                if let Some(why) = ran.refused {
                    aborted = Some(why.clone());
                    refused = Some(why);
                }
                ran.outcome
            }
        };
        progress(i + 1, checks.len(), &outcome);
        outcomes.push(outcome);
    }
    // A program that is not the student's own earns nothing, whatever it passed before.
    if refused.is_some() {
        for o in outcomes.iter_mut().filter(|o| o.verdict == Verdict::Passed) {
            o.points = 0;
            o.verdict = Verdict::NotRun;
            o.failure = Some("not counted (see above)".into());
        }
    }
    report::Report {
        lab: lab.number,
        title: lab.title.to_string(),
        subject: describe(subject),
        aborted,
        outcomes,
        elapsed: started.elapsed(),
        isolation,
    }
}

/// The report of a lab nobody handed a program in for: every check not run, 0 points, and
/// `why` said once.
pub fn not_submitted(lab: &Lab, why: &str) -> report::Report {
    report::Report {
        lab: lab.number,
        title: lab.title.to_string(),
        subject: "nothing".into(),
        aborted: Some(why.to_string()),
        outcomes: lab.checks.iter().map(not_run).collect(),
        elapsed: Duration::ZERO,
        isolation: None,
    }
}

fn not_run(check: &Check) -> Outcome {
    Outcome {
        id: check.id.to_string(),
        points: 0,
        max: check.points,
        proves: check.proves.to_string(),
        verdict: Verdict::NotRun,
        failure: Some("not run (see above)".into()),
        hint: None,
        reproduce: None,
        repro: None,
        output: Vec::new(),
        elapsed: Duration::ZERO,
        diff: None,
        addrs: None,
    }
}

/// How a report names the subject.
pub fn describe(subject: &Subject) -> String {
    match subject {
        Subject::Reference(flags) if flags.is_empty() => "the reference".into(),
        Subject::Reference(flags) => format!("the reference ({})", flags.join(" ")),
        Subject::Command(cmd) => format!("`{cmd}`"),
        Subject::Folder { command, .. } => format!("`{command}` (a submission)"),
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
