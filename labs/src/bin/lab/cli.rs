//! The command line: every command, its arguments and their help.

use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
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
/// Every program the grader starts — a submission's build and the program of each check —
/// runs in a sandbox: its own PID namespace (everything it starts ends with it), as an
/// unprivileged user of its own when lab is root, in a network namespace with only
/// loopback, with Landlock narrowing what it may read and write, and with limits on
/// processes, memory, CPU time and disk. A program that runs proxylab's own binaries (or an
/// off-the-shelf proxy) is refused. `lab doctor` says which protections this machine
/// allows; every report says which were in force.
///
/// Exit status 0 only on full marks. Ctrl-C, SIGTERM and SIGHUP stop at once, and the
/// programs being graded (every process they started) stop with it.
#[derive(Debug, Parser)]
#[command(name = "lab", version = crate::VERSION, about, long_about)]
#[command(after_help = "\
Examples:
  lab list
  lab run 2
  lab run 2 --cmd 'python3 myproxy.py {port}'
  lab run 4 --addr 127.0.0.1:8080 --only hit
  lab run 5 --cmd './myproxy {port} --blacklist {rules} --log {log}' --json lab5.json
  lab repro 2 keep-alive --cmd 'python3 myproxy.py {port}'
  lab grade --cmd 'python3 myproxy.py {port}' --gradescope results.json
  lab grade-all submissions/ --lab 2 --out grades
  lab doctor")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
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
    /// and started as `--submission` does, by a `lab run` of its own: its own private copy,
    /// network namespace and (as root) user, so one submission can neither read nor change
    /// another's, and one that hangs, crashes or misbehaves costs only its own score.
    /// Writes OUT/grades.csv (a row per student: each check's points, total, maximum,
    /// seconds, a note) and OUT/reports/STUDENT.txt and .json, after every grading ended.
    GradeAll {
        /// The folder of submissions (each subfolder one student's; none is changed).
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
    /// Build a submission in place, as grading would, and say which program it has for
    /// each lab.
    ///
    /// The build is its proxylab.toml's `build`, or `make` when it has a Makefile, `cargo
    /// build --release` when it has a Cargo.toml; it runs in the sandbox (as root: as the
    /// folder's owner). Grading itself builds a private copy; this builds the folder, for
    /// `lab run --no-build` after it.
    Build {
        /// The submission's folder.
        #[arg(long, value_name = "DIR", default_value = ".")]
        submission: PathBuf,
        #[command(flatten)]
        sandbox: SandboxArgs,
    },
    /// Say which of the sandbox's protections this machine allows, and what is missing.
    Doctor,
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
pub enum Export {
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
    ///
    /// The lab binary it ships must not hold the reference proxy (a submission could
    /// relay to it): `make grader` builds one (target/student/release/lab); give it with
    /// --lab-binary, or run this from it. --with-reference ships the reference anyway.
    /// The copy is stripped when `strip` is on PATH.
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
        /// Ship a lab binary that holds the reference proxy (a submission can relay to it;
        /// the grader refuses one that runs it, but the reference is then on the machine).
        #[arg(long)]
        with_reference: bool,
    },
}

#[derive(Debug, clap::Args)]
pub struct SubjectArgs {
    /// The program to grade, run through `sh -c`: `{port}` is replaced by the port it must
    /// listen on (127.0.0.1), `{rules}` by the blacklist file, `{log}` by the access log
    /// file (lab 5). It is ready once it listens on that port. Default: the reference
    /// proxy (in the student kit's lab, which has none: the submission in this folder).
    #[arg(long, value_name = "COMMAND", conflicts_with = "addr")]
    pub cmd: Option<String>,
    /// Grade a proxy already running at this address (it cannot be restarted between
    /// checks, so results may depend on their order).
    #[arg(long, value_name = "IP:PORT")]
    pub addr: Option<SocketAddr>,
    /// Grade the submission in this folder: its proxylab.toml (or the convention: a
    /// Makefile is built with make; ./myproxy, myproxy.py, proxy.py … and chat.py for lab 1
    /// are started from it) says how. It is graded from a private copy (the folder itself
    /// is never changed); its build runs once, first, in the copy.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["cmd", "addr"])]
    pub submission: Option<PathBuf>,
    /// With --submission: skip its build (it was built already, e.g. by `lab build`).
    #[arg(long, requires = "submission")]
    pub no_build: bool,
}

#[derive(Debug, clap::Args)]
pub struct OutputArgs {
    /// Also write the results as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Also write Gradescope's results.json.
    #[arg(long, value_name = "FILE")]
    pub gradescope: Option<PathBuf>,
    /// Print every check's result as it finishes, passed ones included.
    #[arg(long)]
    pub verbose: bool,
    /// Write one pcap per check (labN-CHECK.pcap) of the traffic the grader saw on both
    /// sides: its connections to the subject, and the subject's connections to the origin.
    #[arg(long, value_name = "DIR")]
    pub pcap_dir: Option<PathBuf>,
    /// Also write a self-contained HTML report (lab run): each check's verdict, hint and
    /// reproducer, each lost check's exchange (what was sent, what the origin received, what
    /// came back) and, for lab 3, the sweep as a plot.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Write what the program printed (stdout and stderr) during each check to
    /// DIR/labN-CHECK.log (at most 4 MiB each; the report always shows the last lines).
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct LimitArgs {
    /// Points per check from this file (the form of labs/points.toml; checks it does not
    /// name keep their built-in points).
    #[arg(long, value_name = "FILE")]
    pub points: Option<PathBuf>,
    /// How long one step of a check may take: a response head, the next bytes of a body,
    /// a chat line. A step that runs out fails the check and says which step it was.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration)]
    pub step: Duration,
    /// How long one check may take in all (a backstop behind the step deadline).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
    pub check_limit: Duration,
    /// Change one of what a graded program may use, KEY=VALUE (repeatable): tasks=512,
    /// memory=1GiB, cpu=120s, file-size=256MiB, disk=1GiB, open-files=4096 (the defaults).
    /// A program that goes past one is stopped, and its check says which.
    #[arg(long = "limit", value_name = "KEY=VALUE")]
    pub limit: Vec<String>,
    #[command(flatten)]
    pub sandbox: SandboxArgs,
}

/// Whom the sandbox runs programs as.
#[derive(Debug, clap::Args)]
pub struct SandboxArgs {
    /// When lab runs as root: the account the programs it grades run as [default: a uid of
    /// their own, 2000000000 + lab's pid, which needs no account and no other program
    /// shares]. Never root.
    #[arg(long, value_name = "USER")]
    pub sandbox_user: Option<String>,
}

impl SandboxArgs {
    /// Sets the sandbox up for this process.
    pub fn configure(&self) -> anyhow::Result<()> {
        labs::sandbox::configure(self.sandbox_user.as_deref()).map_err(anyhow::Error::msg)?;
        Ok(())
    }
}

impl LimitArgs {
    /// The options these arguments set; `Err` when a `--limit` is not one.
    pub fn options(&self) -> anyhow::Result<labs::Options> {
        let mut limits = labs::sandbox::Limits::RUN;
        for setting in &self.limit {
            limits = limits.with(setting).map_err(anyhow::Error::msg)?;
        }
        Ok(labs::Options {
            step: self.step,
            check_limit: self.check_limit,
            limits,
            ..labs::Options::default()
        })
    }
}
