//! `lab`: proxylab's grader. `main` parses the command line and hands each command to its
//! module; the grading itself is the `labs` library.
//!
//! - `list` — the labs, their checks and points ([`list`]);
//! - `run`, `grade` — grade one lab, or several ([`grade`]); `repro` — one check, kept up
//!   to try by hand ([`repro`]); `grade-all` — a folder of submissions ([`grade_all`]);
//! - `build` — a submission, in place ([`build`]); `doctor` — what the sandbox can do here
//!   ([`doctor`]);
//! - `export` — Classroom, Gradescope, the student kit ([`export`]); `new` — a starter.
//!
//! The same binary is also the sandbox's helper (`lab __sandbox …`, see
//! `labs::sandbox::helper`): that is checked first, before anything else runs.

mod build;
mod cli;
mod doctor;
mod export;
mod grade;
mod grade_all;
mod list;
mod repro;
mod shared;

use anyhow::Context as _;
use clap::Parser as _;
use cli::{Cli, Command};

/// What this executable is, marked for the grader: it refuses proxylab's own programs as a
/// student's answer, and an export refuses to ship a `lab` that holds the reference
/// (`labs::sandbox::identity`).
#[cfg(feature = "reference")]
static IDENTITY: &str = "\u{1}proxylab-identity lab+reference\u{1}";
#[cfg(not(feature = "reference"))]
static IDENTITY: &str = "\u{1}proxylab-identity lab\u{1}";

/// `lab --version`: the version, and whether the reference proxy is inside.
#[cfg(feature = "reference")]
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (with the reference proxy)");
#[cfg(not(feature = "reference"))]
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (without the reference proxy)");

fn main() -> anyhow::Result<()> {
    if let Some(code) = labs::sandbox::helper::run_if_helper() {
        std::process::exit(code);
    }
    std::hint::black_box(IDENTITY);
    let cli = Cli::parse();
    // A grading moves into a network namespace of its own before anything starts (without
    // root that takes a user namespace, which only a process with one thread may enter).
    // What became of it, every report says.
    if grades_here(&cli.command) {
        let _ = labs::sandbox::network::enter();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    stop_on_signals(&runtime);
    match cli.command {
        Command::List { points } => list::run(points.as_deref()),
        Command::Run {
            lab,
            subject,
            output,
            limits,
            only,
        } => grade::run(&runtime, lab, &subject, &output, &limits, only.as_deref()),
        Command::Repro {
            lab,
            check,
            subject,
            limits,
        } => repro::run(&runtime, lab, &check, &subject, &limits),
        Command::Grade {
            labs,
            subject,
            chat_cmd,
            reference,
            output,
            limits,
        } => grade::several(
            &runtime,
            &labs,
            &subject,
            chat_cmd.as_deref(),
            reference,
            &output,
            &limits,
        ),
        Command::GradeAll {
            dir,
            lab,
            jobs,
            out,
            limits,
        } => grade_all::run(&runtime, &dir, lab, jobs, &out, &limits),
        Command::Build {
            submission,
            sandbox,
        } => build::run(&runtime, &submission, &sandbox),
        Command::Doctor => doctor::run(),
        Command::Export(export) => export::run(export),
        Command::New { dir } => {
            let files = labs::write_starter(&dir)?;
            for f in files {
                println!("wrote {}", f.display());
            }
            println!(
                "build it with `cargo build --release --manifest-path {0}/Cargo.toml`; grade it with\n  make lab2 PROXY_CMD=\"{0}/target/release/myproxy {{port}}\"",
                dir.display()
            );
            Ok(())
        }
    }
}

/// Whether this command grades programs it starts itself (and so in a network namespace of
/// its own). `repro` does not: its point is to be tried by hand from outside. `grade-all`
/// does not either: each of its gradings is a `lab run` that does.
fn grades_here(command: &Command) -> bool {
    match command {
        Command::Run { subject, .. } | Command::Grade { subject, .. } => subject.addr.is_none(),
        _ => false,
    }
}

/// Stops at once on Ctrl-C, SIGTERM or SIGHUP, taking every program being graded with it:
/// no subject outlives the grader, whatever ends it.
fn stop_on_signals(runtime: &tokio::runtime::Runtime) {
    use tokio::signal::unix::{signal, SignalKind};
    runtime.spawn(async {
        let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) else {
            return;
        };
        let (what, code) = tokio::select! {
            _ = int.recv() => ("interrupted", 130),
            _ = term.recv() => ("terminated", 143),
            _ = hup.recv() => ("hung up", 129),
        };
        labs::sandbox::end_all();
        labs::batch::stop_all();
        eprintln!("\nlab: {what}; the programs being graded were stopped");
        std::process::exit(code);
    });
}
