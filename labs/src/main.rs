//! `lab`: list the labs, or grade a proxy on one of them.

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use labs::harness::Subject;
use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::PathBuf;

/// proxylab's grader: runs a lab's checks against a proxy — the reference proxy, or any
/// program — offline, and explains every lost point.
///
/// Each check starts a fresh origin (origin-sim, on loopback) and a fresh subject, so no
/// check depends on another. Exit status 0 only on full marks.
#[derive(Debug, Parser)]
#[command(name = "lab", version, about, long_about)]
#[command(after_help = "\
Examples:
  lab list
  lab run 2
  lab run 2 --cmd 'python3 myproxy.py {port}'
  lab run 4 --addr 127.0.0.1:8080 --only hit
  lab run 5 --cmd './myproxy {port} --blacklist {rules} --log {log}' --json lab5.json
  lab grade --cmd 'python3 myproxy.py {port}' --gradescope results.json")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The labs, their checks and points.
    List,
    /// Grade one lab.
    Run {
        /// The lab's number.
        lab: u8,
        #[command(flatten)]
        subject: SubjectArgs,
        #[command(flatten)]
        output: OutputArgs,
        /// Run only this check (its id, as `lab list` shows).
        #[arg(long, value_name = "CHECK")]
        only: Option<String>,
    },
    /// Grade every lab.
    Grade {
        #[command(flatten)]
        subject: SubjectArgs,
        /// The chat server to grade on lab 1 (`{port}` as for --cmd); default: the
        /// reference room.
        #[arg(long, value_name = "COMMAND")]
        chat_cmd: Option<String>,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Write files for graders elsewhere.
    #[command(subcommand)]
    Export(Export),
    /// Write a starter project for a proxy in Rust (std only: it compiles offline, listens
    /// on the port it is given, and answers 501 where the TODOs are).
    New {
        /// The directory to create it in.
        dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum Export {
    /// GitHub Classroom's autograding.json: one test per check, with its points, each a
    /// `cargo test -p labs --test labN` of that check.
    Classroom {
        /// The command that runs the student's proxy (`{port}` for its port).
        #[arg(long, value_name = "COMMAND")]
        cmd: String,
        /// The command that runs the student's chat server (lab 1) [default: --cmd's].
        #[arg(long, value_name = "COMMAND")]
        chat_cmd: Option<String>,
        /// Where to write it.
        #[arg(
            long,
            default_value = ".github/classroom/autograding.json",
            value_name = "FILE"
        )]
        out: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
struct SubjectArgs {
    /// The program to grade, run through `sh -c`: `{port}` is replaced by the port it must
    /// listen on (127.0.0.1), `{rules}` by the blacklist file, `{log}` by the access log
    /// file (lab 5). Default: the reference proxy.
    #[arg(long, value_name = "COMMAND", conflicts_with = "addr")]
    cmd: Option<String>,
    /// Grade a proxy already running at this address (it cannot be restarted between
    /// checks, so results may depend on their order).
    #[arg(long, value_name = "IP:PORT")]
    addr: Option<SocketAddr>,
}

#[derive(Debug, clap::Args)]
struct OutputArgs {
    /// Also write the results as JSON.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Also write Gradescope's results.json.
    #[arg(long, value_name = "FILE")]
    gradescope: Option<PathBuf>,
    /// Print every check's result as it finishes, passed ones included.
    #[arg(long)]
    verbose: bool,
    /// Write one pcap per check (labN-CHECK.pcap) of the traffic the grader saw on both
    /// sides: its connections to the subject, and the subject's connections to the origin.
    #[arg(long, value_name = "DIR")]
    pcap_dir: Option<PathBuf>,
}

fn subject(args: &SubjectArgs, lab: &labs::Lab) -> Subject {
    match (&args.cmd, args.addr) {
        (Some(cmd), _) => Subject::Command(cmd.clone()),
        (None, Some(addr)) => Subject::Addr(addr),
        (None, None) => lab.reference(&[]),
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    match cli.command {
        Command::List => {
            for lab in labs::all_labs() {
                println!(
                    "Lab {}: {} ({} points)",
                    lab.number,
                    lab.title,
                    lab.points()
                );
                for check in &lab.checks {
                    println!("  {:<20} {:>3}  {}", check.id, check.points, check.proves);
                }
                println!();
            }
            Ok(())
        }
        Command::Run {
            lab,
            subject: who,
            output,
            only,
        } => {
            let Some(lab) = labs::lab(lab) else {
                anyhow::bail!("there is no lab {lab} (see `lab list`)");
            };
            if let Some(id) = &only {
                anyhow::ensure!(
                    lab.check(id).is_some(),
                    "lab {} has no check {id:?} (see `lab list`)",
                    lab.number
                );
            }
            let subject = subject(&who, &lab);
            let report = runtime.block_on(grade(&lab, &subject, only.as_deref(), &output))?;
            write_outputs(&output, std::slice::from_ref(&report))?;
            std::process::exit(if report.full_marks() { 0 } else { 1 });
        }
        Command::Grade {
            subject: who,
            chat_cmd,
            output,
        } => {
            let mut reports = Vec::new();
            for lab in labs::all_labs() {
                // Lab 1 grades a chat server, not the proxy.
                let subject = match (&chat_cmd, lab.chat) {
                    (Some(cmd), true) => Subject::Command(cmd.clone()),
                    (None, true) => lab.reference(&[]),
                    (_, false) => subject(&who, &lab),
                };
                reports.push(runtime.block_on(grade(&lab, &subject, None, &output))?);
            }
            let (score, max): (u32, u32) = reports
                .iter()
                .fold((0, 0), |(s, m), r| (s + r.score(), m + r.max()));
            println!("All labs: {score}/{max}");
            write_outputs(&output, &reports)?;
            std::process::exit(if reports.iter().all(|r| r.full_marks()) {
                0
            } else {
                1
            });
        }
        Command::Export(Export::Classroom { cmd, chat_cmd, out }) => {
            let chat = chat_cmd.as_deref().unwrap_or(&cmd);
            if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            std::fs::write(&out, labs::classroom(&cmd, chat))
                .with_context(|| format!("writing {}", out.display()))?;
            println!("wrote {}", out.display());
            Ok(())
        }
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

/// Runs one lab with a progress line per check on a terminal; Ctrl-C stops it (the
/// subject is torn down on the way out).
async fn grade(
    lab: &labs::Lab,
    subject: &Subject,
    only: Option<&str>,
    output: &OutputArgs,
) -> anyhow::Result<labs::report::Report> {
    let terminal = std::io::stderr().is_terminal();
    let verbose = output.verbose;
    let run = labs::run_lab_recorded(
        lab,
        subject,
        only,
        output.pcap_dir.as_deref(),
        |i, n, outcome| {
            if terminal || verbose {
                let mark = if outcome.passed() { "pass" } else { "FAIL" };
                eprintln!(
                    "[{i}/{n}] lab {} {:<20} {mark} ({:.1} s)",
                    lab.number,
                    outcome.id,
                    outcome.elapsed.as_secs_f64()
                );
            }
        },
    );
    let report = tokio::select! {
        report = run => report,
        _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted"),
    };
    print!("{}", report.table());
    if lab.number == 3 && only.is_none() {
        // Reported, not graded: speed depends on the machine.
        match labs::labs::lab3::sweep(subject).await {
            Ok(text) => print!("{text}"),
            Err(e) => println!("\n(no concurrency sweep: {e})"),
        }
    }
    Ok(report)
}

fn write_outputs(output: &OutputArgs, reports: &[labs::report::Report]) -> anyhow::Result<()> {
    if let Some(path) = &output.json {
        let text = if reports.len() == 1 {
            reports[0].json()
        } else {
            format!(
                "[{}]",
                reports
                    .iter()
                    .map(|r| r.json())
                    .collect::<Vec<_>>()
                    .join(",")
            )
        };
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &output.gradescope {
        std::fs::write(path, labs::report::gradescope(reports))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
