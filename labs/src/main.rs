//! `lab`: list the labs, or grade a proxy on one of them.

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use labs::harness::Subject;
use labs::submission::Submission;
use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// proxylab's grader: runs a lab's checks against a proxy (or, for lab 1, a chat server) —
/// the reference, or any program — offline, and explains every lost point.
///
/// Each check starts a fresh origin (origin-sim, on loopback) and a fresh subject, so no
/// check depends on another. A program started with --cmd is ready when a listening socket
/// on its port shows up in /proc/net/tcp (owned by the program): the grader never opens a
/// test connection to find out. Its stdout and stderr are read all along, and a failed check
/// shows their last lines. Every step of a check (a response head, the next body bytes, a
/// chat line) has its own deadline (--step), and a step that runs out says which it was.
///
/// A check that builds on a more basic ability proves that first; when it is missing, the
/// check is "not judged" (N/J, no points) and names the check that grades that ability, so
/// one defect costs its own points once. `lab repro` runs one check again and keeps
/// everything running, printing the commands it ran with live ports.
///
/// Exit status 0 only on full marks. Ctrl-C, SIGTERM and SIGHUP stop at once, and the
/// program being graded (its whole process group) stops with it.
#[derive(Debug, Parser)]
#[command(name = "lab", version, about, long_about)]
#[command(after_help = "\
Examples:
  lab list
  lab run 2
  lab run 2 --cmd 'python3 myproxy.py {port}'
  lab run 4 --addr 127.0.0.1:8080 --only hit
  lab run 5 --cmd './myproxy {port} --blacklist {rules} --log {log}' --json lab5.json
  lab repro 2 keep-alive --cmd 'python3 myproxy.py {port}'
  lab grade --cmd 'python3 myproxy.py {port}' --gradescope results.json")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The labs, their checks and points.
    List {
        /// Points per check from this file (the form of labs/points.toml).
        #[arg(long, value_name = "FILE")]
        points: Option<PathBuf>,
    },
    /// Grade one lab.
    Run {
        /// The lab's number.
        lab: u8,
        #[command(flatten)]
        subject: SubjectArgs,
        #[command(flatten)]
        output: OutputArgs,
        #[command(flatten)]
        limits: LimitArgs,
        /// Run only this check (its id, as `lab list` shows).
        #[arg(long, value_name = "CHECK")]
        only: Option<String>,
    },
    /// Run one check again and keep everything running, to try it by hand.
    ///
    /// Starts origin-sim and the program, runs the check, and prints what it saw, where
    /// everything listens and the commands the check ran, with those live ports; the
    /// program's output shows as it comes. Ctrl-C stops everything.
    Repro {
        /// The lab's number.
        lab: u8,
        /// The check's id (as `lab list` shows, and the report names it).
        check: String,
        #[command(flatten)]
        subject: SubjectArgs,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Grade every lab.
    ///
    /// Each lab grades the program given for it: --chat-cmd for lab 1 (a chat server),
    /// --cmd (or --addr) for labs 2 to 5. A lab whose program was not given is "not
    /// submitted" and scores 0 — never graded against the reference by accident
    /// (--reference grades the reference on purpose).
    Grade {
        /// The labs to grade, e.g. 2,3,4 [default: all].
        #[arg(long, value_name = "N,N,…", value_delimiter = ',')]
        labs: Vec<u8>,
        #[command(flatten)]
        subject: SubjectArgs,
        /// The chat server to grade on lab 1 (`{port}` as for --cmd).
        #[arg(long, value_name = "COMMAND")]
        chat_cmd: Option<String>,
        /// Grade the reference proxy and chat room (what full marks look like).
        #[arg(long, conflicts_with_all = ["cmd", "addr", "chat_cmd"])]
        reference: bool,
        #[command(flatten)]
        output: OutputArgs,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Grade every submission in a folder on one lab, several at once, into grades.csv.
    ///
    /// Each subfolder of DIR is one student's submission (its name is the student's), built
    /// and started as `--submission` does. Each check of each submission has its own ports,
    /// origin, temporary files and process group, so one that hangs or crashes costs only
    /// its own score. Writes OUT/grades.csv (a row per student: each check's points, total,
    /// maximum, seconds, a note) and OUT/reports/STUDENT.txt and .json.
    GradeAll {
        /// The folder of submissions.
        dir: PathBuf,
        /// The lab.
        #[arg(long, value_name = "N")]
        lab: u8,
        /// How many submissions are graded at once [default: the machine's cores].
        #[arg(long, value_name = "N")]
        jobs: Option<usize>,
        /// Where grades.csv and reports/ go.
        #[arg(long, default_value = "grades", value_name = "DIR")]
        out: PathBuf,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Build a submission as grading would (its proxylab.toml's `build`, or `make` when it
    /// has a Makefile, `cargo build --release` when it has a Cargo.toml) and say which
    /// programs it has for which lab.
    Build {
        /// The submission's folder.
        #[arg(long, value_name = "DIR", default_value = ".")]
        submission: PathBuf,
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
    /// GitHub Classroom for one lab, in a student repository (the student kit's layout):
    /// .github/classroom/autograding.json and .github/workflows/classroom.yml, one graded
    /// test per check with its points, each `LAB_BIN run N --submission . --only CHECK` run
    /// from the repository's root after one build step.
    Classroom {
        /// The lab.
        #[arg(long, value_name = "N")]
        lab: u8,
        /// The repository's root, where .github/ goes.
        #[arg(long, default_value = ".", value_name = "DIR")]
        out: PathBuf,
        /// Where `lab` is in the repository (the student kit puts it in bin/lab).
        #[arg(long, default_value = "bin/lab", value_name = "PATH")]
        lab_bin: String,
        /// Points per check from this file (the form of labs/points.toml).
        #[arg(long, value_name = "FILE")]
        points: Option<PathBuf>,
    },
    /// The student kit: handouts, the starter, the lab, origin-sim and client binaries,
    /// a Makefile that grades the folder it is in, and no reference proxy. `make
    /// student-kit` builds a `lab` without the reference and writes the kit with it.
    StudentKit {
        /// The folder to write (created if missing).
        dir: PathBuf,
        /// Where origin-sim and client are [default: beside this lab binary].
        #[arg(long, value_name = "DIR")]
        bin_dir: Option<PathBuf>,
        /// The lab binary to put in it [default: this one].
        #[arg(long, value_name = "FILE")]
        lab_binary: Option<PathBuf>,
    },
    /// A Gradescope autograder for one lab: a folder to zip and upload (setup.sh,
    /// run_autograder, the lab binary, points.toml and a README for the instructor).
    Gradescope {
        /// The lab.
        #[arg(long, value_name = "N")]
        lab: u8,
        /// The folder to write (created if missing).
        dir: PathBuf,
        /// Points per check from this file (the form of labs/points.toml).
        #[arg(long, value_name = "FILE")]
        points: Option<PathBuf>,
        /// The lab binary to put in it [default: this one].
        #[arg(long, value_name = "FILE")]
        lab_binary: Option<PathBuf>,
    },
}

#[derive(Debug, clap::Args)]
struct SubjectArgs {
    /// The program to grade, run through `sh -c`: `{port}` is replaced by the port it must
    /// listen on (127.0.0.1), `{rules}` by the blacklist file, `{log}` by the access log
    /// file (lab 5). It is ready once it listens on that port. Default: the reference
    /// proxy (in the student kit's lab, which has none: the submission in this folder).
    #[arg(long, value_name = "COMMAND", conflicts_with = "addr")]
    cmd: Option<String>,
    /// Grade a proxy already running at this address (it cannot be restarted between
    /// checks, so results may depend on their order).
    #[arg(long, value_name = "IP:PORT")]
    addr: Option<SocketAddr>,
    /// Grade the submission in this folder: its proxylab.toml (or the convention: a
    /// Makefile is built with make; ./myproxy, myproxy.py, proxy.py … and chat.py for lab 1
    /// are started from the folder) says how. Its build runs once, first.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["cmd", "addr"])]
    submission: Option<PathBuf>,
    /// With --submission: skip its build (it was built already).
    #[arg(long, requires = "submission")]
    no_build: bool,
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
    /// Also write a self-contained HTML report (lab run): each check's verdict, hint and
    /// reproducer, each lost check's exchange (what was sent, what the origin received, what
    /// came back) and, for lab 3, the sweep as a plot.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// Write what the program printed (stdout and stderr) during each check to
    /// DIR/labN-CHECK.log (at most 4 MiB each; the report always shows the last lines).
    #[arg(long, value_name = "DIR")]
    output_dir: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct LimitArgs {
    /// Points per check from this file (the form of labs/points.toml; checks it does not
    /// name keep their built-in points).
    #[arg(long, value_name = "FILE")]
    points: Option<PathBuf>,
    /// How long one step of a check may take: a response head, the next bytes of a body,
    /// a chat line. A step that runs out fails the check and says which step it was.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration)]
    step: Duration,
    /// How long one check may take in all (a backstop behind the step deadline).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
    check_limit: Duration,
}

impl LimitArgs {
    fn options(&self) -> labs::Options {
        labs::Options {
            step: self.step,
            check_limit: self.check_limit,
            ..labs::Options::default()
        }
    }
}

/// What `args` ask to grade on `lab`, given the submission (found and built) if they name
/// one; `Err` says why there is nothing to grade (a not-submitted report).
fn subject(
    args: &SubjectArgs,
    lab: &labs::Lab,
    submission: Option<&Result<Submission, String>>,
) -> Result<Subject, String> {
    match (&args.cmd, args.addr, submission) {
        (Some(cmd), _, _) => Ok(Subject::Command(cmd.clone())),
        (None, Some(addr), _) => Ok(Subject::Addr(addr)),
        (None, None, Some(Ok(sub))) => sub.command(lab).map(Subject::Command).ok_or_else(|| {
            let which = if lab.chat { "chat" } else { "proxy" };
            format!(
                "not submitted: {} has no program for lab {} ({which} = \"…\" in {}, or a program named as the convention says)",
                sub.dir.display(),
                lab.number,
                labs::submission::FILE
            )
        }),
        (None, None, Some(Err(why))) => Err(why.clone()),
        (None, None, None) => Ok(lab.reference(&[])),
    }
}

/// The submission `args` name, found and (unless --no-build) built; `Err` says why it
/// cannot be graded (a missing folder, a bad proxylab.toml, a failed build). The student
/// kit's `lab` (built without the reference) grades the current folder when no program is
/// named.
async fn prepare(args: &SubjectArgs) -> Option<Result<Submission, String>> {
    let here = PathBuf::from(".");
    let unnamed = args.cmd.is_none() && args.addr.is_none() && args.submission.is_none();
    let dir = match &args.submission {
        Some(dir) => dir,
        None if unnamed && !cfg!(feature = "reference") => &here,
        None => return None,
    };
    let sub = match Submission::find(dir) {
        Ok(sub) => sub,
        Err(e) => return Some(Err(format!("not submitted: {e}"))),
    };
    if !args.no_build {
        if let Some(build) = &sub.build {
            eprintln!("building: {build}  (in {})", sub.dir.display());
        }
        if let Err(e) = sub.build().await {
            return Some(Err(e));
        }
    }
    Some(Ok(sub))
}

/// Stops at once on Ctrl-C, SIGTERM or SIGHUP, taking every program being graded with it
/// (their process groups): no subject outlives the grader, whatever ends it.
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
        labs::process::kill_all();
        eprintln!("\nlab: {what}; the programs being graded were stopped");
        std::process::exit(code);
    });
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    stop_on_signals(&runtime);
    match cli.command {
        Command::List { points } => {
            for lab in labs_with(points.as_deref())? {
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
            limits,
            only,
        } => {
            let lab = lab_with(lab, limits.points.as_deref())?;
            if let Some(id) = &only {
                anyhow::ensure!(
                    lab.check(id).is_some(),
                    "lab {} has no check {id:?} (see `lab list`)",
                    lab.number
                );
            }
            let options = options(&output, &limits);
            let submission = runtime.block_on(prepare(&who));
            let report = match subject(&who, &lab, submission.as_ref()) {
                Ok(subject) => {
                    subject.validate().map_err(anyhow::Error::msg)?;
                    runtime.block_on(grade(
                        &lab,
                        &subject,
                        only.as_deref(),
                        &output,
                        &options,
                        true,
                        who.submission.as_deref(),
                    ))?
                }
                Err(why) => {
                    let report = labs::not_submitted(&lab, &why);
                    print!("{}", report.table());
                    write_outputs(&output, std::slice::from_ref(&report))?;
                    write_html(&output, &options, &report, None)?;
                    report
                }
            };
            if output.pcap_dir.is_none() {
                // The captures taken only to draw the HTML report's exchanges.
                if let Some(dir) = &options.pcap_dir {
                    let _ = std::fs::remove_dir_all(dir);
                }
            }
            std::process::exit(if report.full_marks() { 0 } else { 1 });
        }
        Command::Repro {
            lab,
            check,
            subject: who,
            limits,
        } => {
            let lab = lab_with(lab, limits.points.as_deref())?;
            let Some(check) = lab.check(&check) else {
                anyhow::bail!("lab {} has no check {check:?} (see `lab list`)", lab.number);
            };
            let submission = runtime.block_on(prepare(&who));
            let subject = subject(&who, &lab, submission.as_ref()).map_err(anyhow::Error::msg)?;
            subject.validate().map_err(anyhow::Error::msg)?;
            let options = labs::Options {
                echo_output: true,
                ..limits.options()
            };
            runtime.block_on(repro(&lab, check, &subject, &options))
        }
        Command::Grade {
            labs: numbers,
            subject: who,
            chat_cmd,
            reference,
            output,
            limits,
        } => {
            let options = options(&output, &limits);
            let all = labs_with(limits.points.as_deref())?;
            for n in &numbers {
                anyhow::ensure!(
                    all.iter().any(|l| l.number == *n),
                    "there is no lab {n} (see `lab list`)"
                );
            }
            if !reference
                && who.cmd.is_none()
                && who.addr.is_none()
                && who.submission.is_none()
                && chat_cmd.is_none()
            {
                anyhow::bail!(
                    "no program to grade: give --cmd (labs 2-5) and/or --chat-cmd (lab 1), \
                     --submission DIR, or --reference to grade the reference"
                );
            }
            let submission = runtime.block_on(prepare(&who));
            let mut reports = Vec::new();
            for lab in all
                .iter()
                .filter(|l| numbers.is_empty() || numbers.contains(&l.number))
            {
                // Lab 1 grades a chat server, the others the proxy; a lab whose program
                // was not given is not submitted.
                let flag = if lab.chat { "--chat-cmd" } else { "--cmd" };
                let missing = format!(
                    "not submitted: no program was given for lab {} ({flag})",
                    lab.number
                );
                // The subject, and the submission folder it came from (for `lab repro`).
                let chosen = match (&chat_cmd, lab.chat) {
                    _ if reference => Ok((lab.reference(&[]), None)),
                    (Some(cmd), true) => Ok((Subject::Command(cmd.clone()), None)),
                    _ if who.submission.is_some()
                        || (!lab.chat && (who.cmd.is_some() || who.addr.is_some())) =>
                    {
                        subject(&who, lab, submission.as_ref())
                            .map(|s| (s, who.submission.as_deref()))
                    }
                    _ => Err(missing),
                };
                let report = match chosen {
                    Ok((subject, folder)) => {
                        subject.validate().map_err(anyhow::Error::msg)?;
                        runtime.block_on(grade(
                            lab, &subject, None, &output, &options, false, folder,
                        ))?
                    }
                    Err(why) => {
                        let report = labs::not_submitted(lab, &why);
                        print!("{}", report.table());
                        report
                    }
                };
                reports.push(report);
            }
            let (score, max): (u32, u32) = reports
                .iter()
                .fold((0, 0), |(s, m), r| (s + r.score(), m + r.max()));
            println!("All labs graded: {score}/{max}");
            write_outputs(&output, &reports)?;
            std::process::exit(if reports.iter().all(|r| r.full_marks()) {
                0
            } else {
                1
            });
        }
        Command::Export(Export::Classroom {
            lab,
            out,
            lab_bin,
            points,
        }) => {
            let lab = lab_with(lab, points.as_deref())?;
            let files = labs::export::classroom(&lab, &lab_bin);
            for path in labs::export::write(&out, &files)
                .with_context(|| format!("writing into {}", out.display()))?
            {
                println!("wrote {}", path.display());
            }
            Ok(())
        }
        Command::Export(Export::Gradescope {
            lab,
            dir,
            points,
            lab_binary,
        }) => {
            let lab = lab_with(lab, points.as_deref())?;
            let binary = match lab_binary {
                Some(path) => path,
                None => std::env::current_exe().context("finding this lab binary")?,
            };
            let files = labs::export::gradescope(&lab, &binary, &labs::export::points_toml(&lab))
                .with_context(|| format!("reading {}", binary.display()))?;
            for path in labs::export::write(&dir, &files)
                .with_context(|| format!("writing into {}", dir.display()))?
            {
                println!("wrote {}", path.display());
            }
            println!(
                "zip it and upload it to Gradescope: cd {} && zip -r ../proxylab-lab{}-autograder.zip .",
                dir.display(),
                lab.number
            );
            Ok(())
        }
        Command::GradeAll {
            dir,
            lab,
            jobs,
            out,
            limits,
        } => {
            let points = match &limits.points {
                Some(path) => labs::points::Points::load(path).map_err(anyhow::Error::msg)?,
                None => labs::points::Points::default(),
            };
            let the_lab = lab_with(lab, limits.points.as_deref())?;
            let count = labs::batch::submissions(&dir)
                .map_err(anyhow::Error::msg)?
                .len();
            anyhow::ensure!(count > 0, "{} holds no submission folders", dir.display());
            let jobs = jobs.unwrap_or_else(|| {
                std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
            });
            let bar = indicatif::ProgressBar::new(count as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} graded  {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar.enable_steady_tick(std::time::Duration::from_millis(200));
            let options = limits.options();
            let graded = runtime
                .block_on(labs::batch::grade_all(
                    &dir,
                    lab,
                    &points,
                    jobs,
                    &options,
                    |g| {
                        bar.inc(1);
                        bar.set_message(format!(
                            "{}: {}/{}",
                            g.student,
                            g.report.score(),
                            g.report.max()
                        ));
                    },
                ))
                .map_err(anyhow::Error::msg)?;
            bar.finish_and_clear();
            for g in &graded {
                println!(
                    "{:<24} {:>3}/{:<3} ({:.1} s){}",
                    g.student,
                    g.report.score(),
                    g.report.max(),
                    g.wall.as_secs_f64(),
                    g.report
                        .aborted
                        .as_deref()
                        .and_then(|a| a.lines().next())
                        .map(|a| format!("  {a}"))
                        .unwrap_or_default()
                );
            }
            let csv = labs::batch::write(&out, &the_lab, &graded)
                .with_context(|| format!("writing into {}", out.display()))?;
            println!(
                "wrote {} and {}",
                csv.display(),
                out.join("reports").display()
            );
            Ok(())
        }
        Command::Export(Export::StudentKit {
            dir,
            bin_dir,
            lab_binary,
        }) => {
            let me = std::env::current_exe().context("finding this lab binary")?;
            if cfg!(feature = "reference") && lab_binary.is_none() {
                eprintln!(
                    "note: this lab has the reference proxy built in; for students, use \
                     `make student-kit` (a lab built without it)"
                );
            }
            let bin_dir = match bin_dir {
                Some(d) => d,
                None => me.parent().map(Path::to_path_buf).unwrap_or_default(),
            };
            let files = labs::export::student_kit(
                &lab_binary.unwrap_or(me),
                &bin_dir.join("origin-sim"),
                &bin_dir.join("client"),
            )
            .context("collecting the kit's binaries (build them: cargo build --release -p origin-sim -p client)")?;
            labs::export::write(&dir, &files)
                .with_context(|| format!("writing into {}", dir.display()))?;
            println!(
                "wrote the student kit to {} ({} files)",
                dir.display(),
                files.len()
            );
            Ok(())
        }
        Command::Build { submission } => {
            let sub = Submission::find(&submission).map_err(anyhow::Error::msg)?;
            match &sub.build {
                Some(build) => println!("building: {build}  (in {})", sub.dir.display()),
                None => println!("nothing to build in {}", sub.dir.display()),
            }
            runtime.block_on(sub.build()).map_err(anyhow::Error::msg)?;
            for lab in labs::all_labs() {
                match sub.command(&lab) {
                    Some(cmd) => println!("lab {}: {cmd}", lab.number),
                    None => println!("lab {}: no program (not submitted)", lab.number),
                }
            }
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

/// Every lab, with the points of `file` over the built-in ones.
fn labs_with(file: Option<&std::path::Path>) -> anyhow::Result<Vec<labs::Lab>> {
    let points = match file {
        Some(path) => labs::points::Points::load(path).map_err(anyhow::Error::msg)?,
        None => labs::points::Points::default(),
    };
    Ok(labs::all_labs_with(&points))
}

/// Lab `number`, with the points of `file` over the built-in ones.
fn lab_with(number: u8, file: Option<&std::path::Path>) -> anyhow::Result<labs::Lab> {
    labs_with(file)?
        .into_iter()
        .find(|l| l.number == number)
        .ok_or_else(|| anyhow::anyhow!("there is no lab {number} (see `lab list`)"))
}

fn options(output: &OutputArgs, limits: &LimitArgs) -> labs::Options {
    // The HTML report draws each lost check's exchange from its capture.
    let pcap_dir = output.pcap_dir.clone().or_else(|| {
        output
            .html
            .as_ref()
            .map(|_| std::env::temp_dir().join(format!("proxylab-html-{}", std::process::id())))
    });
    labs::Options {
        pcap_dir,
        output_dir: output.output_dir.clone(),
        ..limits.options()
    }
}

/// Runs one lab with a progress line per check on a terminal and prints the table. Alone
/// (`lab run`), it then writes the requested files, and only then runs what is optional:
/// lab 3's sweep (reported, not graded), which runs once every concurrency check passed.
async fn grade(
    lab: &labs::Lab,
    subject: &Subject,
    only: Option<&str>,
    output: &OutputArgs,
    options: &labs::Options,
    alone: bool,
    submission: Option<&Path>,
) -> anyhow::Result<labs::report::Report> {
    let terminal = std::io::stderr().is_terminal();
    let verbose = output.verbose;
    let report = labs::run_lab(lab, subject, only, options, |i, n, outcome| {
        if terminal || verbose {
            let mark = match outcome.verdict {
                labs::Verdict::Passed => "pass",
                labs::Verdict::Failed => "FAIL",
                labs::Verdict::NotJudged => "not judged",
                labs::Verdict::NotRun => "not run",
            };
            eprintln!(
                "[{i}/{n}] lab {} {:<20} {mark} ({:.1} s)",
                lab.number,
                outcome.id,
                outcome.elapsed.as_secs_f64()
            );
        }
    })
    .await;
    // A submission's checks are reproduced from its folder, as the student has it.
    let mut report = report;
    if let Some(dir) = submission {
        for o in report.outcomes.iter_mut().filter(|o| o.repro.is_some()) {
            o.repro = Some(format!(
                "lab repro {} {} --submission {}",
                lab.number,
                o.id,
                labs::harness::sh(&dir.display().to_string())
            ));
        }
    }
    print!("{}", report.table());
    if !alone {
        return Ok(report);
    }
    write_outputs(output, std::slice::from_ref(&report))?;
    write_html(output, options, &report, None)?;
    if lab.number == 3 && only.is_none() {
        if report.full_marks() {
            use std::io::Write as _;
            println!(
                "\n(the grade above is final; now the concurrency sweep, which Ctrl-C may stop)"
            );
            let _ = std::io::stdout().flush();
            match labs::labs::lab3::sweep(subject, options).await {
                Ok((text, points)) => {
                    print!("{text}");
                    if output.html.is_some() {
                        let mut sweep = labs::html::Sweep {
                            student: points,
                            reference: Vec::new(),
                        };
                        // The reference beside it, where this lab binary has one.
                        if cfg!(feature = "reference") && !matches!(subject, Subject::Reference(_))
                        {
                            if let Ok((_, reference)) =
                                labs::labs::lab3::sweep(&lab.reference(&[]), options).await
                            {
                                sweep.reference = reference;
                            }
                        }
                        write_html(output, options, &report, Some(&sweep))?;
                    }
                }
                Err(e) => println!("\n(no concurrency sweep: {e})"),
            }
        } else {
            println!("\n(no concurrency sweep: it runs once every concurrency check passes)");
        }
    }
    Ok(report)
}

/// `lab repro`: runs the check once, prints its outcome and what it ran (with live ports),
/// and keeps origin-sim and the program up until Ctrl-C.
async fn repro(
    lab: &labs::Lab,
    check: &labs::Check,
    subject: &Subject,
    options: &labs::Options,
) -> anyhow::Result<()> {
    let (outcome, env) = labs::repro(lab, check, subject, options).await?;
    println!();
    let origin = &env.origin;
    println!("origin-sim http listening on {}", origin.url());
    if let Some(a) = origin.tls_addr() {
        println!("origin-sim https listening on https://{a} (its CA: lab repro writes it to origin-sim-ca.pem)");
        if let Some(pem) = origin.ca_pem() {
            let _ = std::fs::write("origin-sim-ca.pem", pem);
        }
    }
    if let Some(a) = origin.echo_addr() {
        println!("origin-sim echo listening on tcp://{a}");
    }
    if let Some(a) = origin.chat_addr() {
        println!("origin-sim chat listening on tcp://{a}");
    }
    println!("the subject listens on {}", env.subject);
    if !env.files.rules.as_os_str().is_empty() && lab.number == 5 {
        println!("its blacklist ({{rules}}): {}", env.files.rules.display());
        println!("its access log ({{log}}):  {}", env.files.log.display());
    }
    println!();
    match &outcome.failure {
        None => println!("lab {} {}: PASS — {}", lab.number, check.id, check.proves),
        Some(f) => {
            println!(
                "lab {} {}: {} — {}",
                lab.number,
                check.id,
                if outcome.verdict == labs::Verdict::NotJudged {
                    "NOT JUDGED"
                } else {
                    "FAIL"
                },
                check.proves
            );
            println!("  what happened: {f}");
            if let Some(h) = &outcome.hint {
                println!("  hint:          {h}");
            }
            if let Some(r) = &outcome.reproduce {
                println!("  try it:        {r}");
            }
        }
    }
    println!("\nEverything stays up for you to try by hand; Ctrl-C stops it.");
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    let _ = tokio::signal::ctrl_c().await;
    env.stop().await;
    Ok(())
}
/// `--html`: the page for `report`, each lost check's exchange read from its capture.
fn write_html(
    output: &OutputArgs,
    options: &labs::Options,
    report: &labs::report::Report,
    sweep: Option<&labs::html::Sweep>,
) -> anyhow::Result<()> {
    let Some(path) = &output.html else {
        return Ok(());
    };
    let mut exchanges = std::collections::BTreeMap::new();
    if let Some(dir) = &options.pcap_dir {
        for o in report.outcomes.iter().filter(|o| !o.passed()) {
            let pcap = dir.join(format!("lab{}-{}.pcap", report.lab, o.id));
            if let (Some((subject, origin)), true) = (o.addrs, pcap.exists()) {
                if let Ok(messages) = labs::html::exchange(&pcap, subject, origin) {
                    exchanges.insert(o.id.clone(), messages);
                }
            }
        }
    }
    std::fs::write(path, labs::html::page(report, &exchanges, sweep))
        .with_context(|| format!("writing {}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
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
