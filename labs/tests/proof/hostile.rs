//! The hostile corpus (tests/subjects/hostile/): submissions written to cheat or to harm,
//! each graded the way an instructor grades — Gradescope's layout and `run_autograder`,
//! `lab grade-all` over a folder of several, `lab run` — as root (as CI runs, and as
//! Gradescope runs everything) and, through `setpriv`, as an ordinary user. Each must
//! change no grade, its own or another's, and leave no process behind; each report says
//! what it was graded under.
//!
//! Every hostile program carries a mark of its run in its arguments, so "nothing left
//! behind" is read from /proc right after the grader exits: the grader exits only once its
//! sandbox says every program of the submission is gone, so nothing is waited for.

use super::teaching::grader_lab;
use super::{open_tempdir, subjects};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// Whom the grader runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum As {
    /// As the tests run: root in CI.
    Grader,
    /// `nobody`, through setpriv (only when the tests run as root).
    Unprivileged,
}

/// Each way the grader can run here: as root and as an ordinary user when the tests run as
/// root; as the tests' own (ordinary) user otherwise, which is then the path proven.
fn everyone() -> Vec<As> {
    if rustix::process::geteuid().is_root() {
        vec![As::Grader, As::Unprivileged]
    } else {
        vec![As::Grader]
    }
}

const NOBODY: u32 = 65534;

/// A mark no other process carries: this test process, and a count.
fn mark() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "hostile-mark-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Processes whose command line carries `mark`.
fn alive(mark: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(mark))
        .collect()
}

/// The lab binary, where an unprivileged user can run it too.
fn lab_binary() -> PathBuf {
    static COPY: std::sync::OnceLock<(tempfile::TempDir, PathBuf)> = std::sync::OnceLock::new();
    COPY.get_or_init(|| {
        let dir = open_tempdir();
        let lab = dir.path().join("lab");
        std::fs::copy(assert_cmd::cargo::cargo_bin("lab"), &lab).unwrap();
        (dir, lab)
    })
    .1
    .clone()
}

/// `program args…` as `who`; HOME is `home` (which `who` may write).
fn command(who: As, program: &Path, home: &Path) -> Command {
    let mut c = match who {
        As::Grader => Command::new(program),
        As::Unprivileged => {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
                .arg(program);
            c
        }
    };
    c.env("HOME", home).current_dir(home);
    c
}

/// Gives `dir` and everything in it to `who` (readable by every user in any case).
fn hand_to(dir: &Path, who: As) {
    let mut todo = vec![dir.to_path_buf()];
    while let Some(p) = todo.pop() {
        let meta = std::fs::symlink_metadata(&p).unwrap();
        if meta.is_dir() {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
            todo.extend(std::fs::read_dir(&p).unwrap().flatten().map(|e| e.path()));
        } else if meta.is_file() {
            let mode = if meta.permissions().mode() & 0o100 != 0 {
                0o755
            } else {
                0o644
            };
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        if who == As::Unprivileged {
            std::os::unix::fs::lchown(&p, Some(NOBODY), Some(NOBODY)).unwrap();
        }
    }
}

/// A submission folder: the hostile corpus's `common.py`, the tiny proxy as `tiny.py`, the
/// named hostile programs, and a proxylab.toml.
fn submission(dir: &Path, programs: &[&str], toml: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let hostile = subjects().join("hostile");
    for name in ["common.py"].iter().chain(programs) {
        std::fs::copy(hostile.join(name), dir.join(name)).unwrap();
    }
    std::fs::copy(subjects().join("tiny_proxy.py"), dir.join("tiny.py")).unwrap();
    std::fs::write(dir.join("proxylab.toml"), toml).unwrap();
}

/// Runs `command` to its end; its stdout and stderr.
fn run(mut command: Command) -> (bool, String) {
    let out = command.output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `lab ARGS…` as `who`, from `dir`: whether it succeeded and what it printed.
fn lab<S: AsRef<std::ffi::OsStr>>(
    who: As,
    dir: &Path,
    args: impl IntoIterator<Item = S>,
) -> (bool, String) {
    let mut c = command(who, &lab_binary(), dir);
    c.args(args);
    run(c)
}

/// `lab run 2 --only get-small --submission SUB` with `extra` flags, as `who` from `dir`.
fn get_small(who: As, dir: &Path, sub: &Path, extra: &[&std::ffi::OsStr]) -> String {
    let mut args: Vec<&std::ffi::OsStr> = ["run", "2", "--only", "get-small", "--submission"]
        .iter()
        .map(std::ffi::OsStr::new)
        .collect();
    args.push(sub.as_os_str());
    args.extend(extra);
    lab(who, dir, args).1
}

/// Gradescope's layout in `root` (source/ from `lab export gradescope` with the course's
/// lab, submission/ from `make`), `run_autograder` run as `who`; returns results.json.
fn gradescope(who: As, root: &Path, make: impl FnOnce(&Path)) -> serde_json::Value {
    let source = root.join("source");
    let (ok, out) = run({
        let mut c = Command::new(assert_cmd::cargo::cargo_bin("lab"));
        c.args(["export", "gradescope", "--lab", "2"])
            .arg(&source)
            .arg("--lab-binary")
            .arg(grader_lab());
        c
    });
    assert!(ok, "{out}");
    make(&root.join("submission"));
    hand_to(root, who);
    let (ok, out) = run({
        let mut c = command(who, &source.join("run_autograder"), root);
        c.env("AUTOGRADER_ROOT", root);
        c
    });
    assert!(ok, "{out}");
    let text = std::fs::read_to_string(root.join("results/results.json")).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// What a Gradescope results.json says it was graded under.
fn graded_under(results: &serde_json::Value) -> String {
    results["output"].as_str().unwrap_or_default().to_string()
}

#[test]
fn a_daemon_that_writes_over_the_results_after_lab_wrote_them_changes_nothing() {
    for who in everyone() {
        let root = open_tempdir();
        let mark = mark();
        let results_file = root.path().join("results/results.json");
        let results = gradescope(who, root.path(), |sub| {
            submission(
                sub,
                &["daemon.py"],
                &format!(
                    "proxy = \"python3 daemon.py {} {{port}} {mark}\"\n",
                    results_file.display()
                ),
            )
        });
        // It answers nothing: every check fails, and nothing forged the grade.
        assert_eq!(results["score"], 0, "{who:?}: {results}");
        assert_eq!(results["tests"].as_array().unwrap().len(), 15, "{results}");
        // Every test's output names what it was graded under (here, in CI: a PID namespace).
        assert!(
            graded_under(&results).contains("Graded under:\nprocesses: "),
            "{who:?}: {results}"
        );
        // The daemon left its process group, and is gone all the same: it can write
        // nothing later.
        assert_eq!(alive(&mark), Vec::<String>::new(), "{who:?}");
    }
}

#[test]
fn a_submission_that_writes_over_the_autograder_and_the_grader_changes_nothing() {
    for who in everyone() {
        let root = open_tempdir();
        let mark = mark();
        let source = root.path().join("source");
        let targets = [
            source.join("run_autograder"),
            source.join("points.toml"),
            source.join("lab"),
            source.join("setup.sh"),
            root.path().join("results/results.json"),
        ];
        let mut before = Vec::new();
        let results = gradescope(who, root.path(), |sub| {
            before = targets[..4]
                .iter()
                .map(|t| std::fs::read(t).unwrap())
                .collect();
            let paths: Vec<String> = targets.iter().map(|t| t.display().to_string()).collect();
            submission(
                sub,
                &["overwriter.py"],
                &format!(
                    "proxy = \"python3 overwriter.py {{port}} {} {mark}\"\n",
                    paths.join(" ")
                ),
            )
        });
        // What the tiny proxy earns, no more: the grader's files are as exported.
        assert_eq!(results["score"], 60, "{who:?}: {results}");
        for (target, bytes) in targets.iter().zip(&before) {
            assert!(
                std::fs::read(target).unwrap() == *bytes,
                "{who:?}: {} was changed",
                target.display()
            );
        }
        assert_eq!(alive(&mark), Vec::<String>::new(), "{who:?}");
    }
}

#[test]
fn a_submission_reads_neither_the_shadow_file_nor_the_points_nor_a_classmates_folder() {
    for who in everyone() {
        let dir = open_tempdir();
        let mark = mark();
        // Readable by every user: only the sandbox stands between them and the program.
        let points = dir.path().join("points.toml");
        std::fs::write(&points, "[lab2]\nget-small = 10\n").unwrap();
        let classmate = dir.path().join("classmate");
        std::fs::create_dir_all(&classmate).unwrap();
        std::fs::write(classmate.join("myproxy.py"), "# a classmate's work\n").unwrap();
        let targets = [
            PathBuf::from("/etc/shadow"),
            points.clone(),
            classmate.clone(),
            classmate.join("myproxy.py"),
        ];
        let paths: Vec<String> = targets.iter().map(|t| t.display().to_string()).collect();
        let sub = dir.path().join("mallory");
        submission(
            &sub,
            &["reader.py"],
            &format!(
                "proxy = \"python3 reader.py {{port}} {} {mark}\"\n",
                paths.join(" ")
            ),
        );
        let out = dir.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        hand_to(dir.path(), who);
        let said = get_small(
            who,
            dir.path(),
            &sub,
            &[
                "--points".as_ref(),
                points.as_os_str(),
                "--output-dir".as_ref(),
                out.as_os_str(),
            ],
        );
        assert!(said.contains("Total: 10/10"), "{who:?}: {said}");
        let log = std::fs::read_to_string(out.join("lab2-get-small.log")).unwrap();
        for path in &paths {
            assert!(
                log.contains(&format!("could not read {path} ")),
                "{who:?}: {path}:\n{log}"
            );
        }
        assert!(!log.contains("READ") && !log.contains("LISTED"), "{log}");
        assert_eq!(alive(&mark), Vec::<String>::new(), "{who:?}");
    }
}

/// origin-sim's binary (lab 1's reference chat room), as the student kit ships it.
fn origin_sim_binary() -> PathBuf {
    let beside = assert_cmd::cargo::cargo_bin("lab").with_file_name("origin-sim");
    if !beside.is_file() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let ok = Command::new(cargo)
            .args([
                "build",
                "--offline",
                "-q",
                "-p",
                "origin-sim",
                "--bin",
                "origin-sim",
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .unwrap()
            .success();
        assert!(ok, "building origin-sim");
    }
    beside
}

#[test]
fn proxylabs_own_binaries_are_refused_as_answers_whatever_they_are_called() {
    for who in everyone() {
        let dir = open_tempdir();
        // Lab 2: a relay to the reference inside a `lab` the submission carries.
        let relay_mark = mark();
        let relay = dir.path().join("relay");
        submission(
            &relay,
            &["relay.py"],
            &format!("proxy = \"python3 relay.py {{port}} bin/lab {relay_mark}\"\n"),
        );
        std::fs::create_dir_all(relay.join("bin")).unwrap();
        std::fs::copy(assert_cmd::cargo::cargo_bin("lab"), relay.join("bin/lab")).unwrap();
        // Lab 1: the kit's origin-sim as the chat server, renamed.
        let chat_mark = mark();
        let chat = dir.path().join("chat");
        submission(
            &chat,
            &[],
            &format!(
                "chat = \"bin/chatserver --http 127.0.0.1:0 --chat 127.0.0.1:{{port}} --tls 127.0.0.1:0 --ca-out {chat_mark}.pem\"\n"
            ),
        );
        std::fs::create_dir_all(chat.join("bin")).unwrap();
        std::fs::copy(origin_sim_binary(), chat.join("bin/chatserver")).unwrap();
        hand_to(dir.path(), who);
        for (n, sub, mark, what) in [
            (
                "2",
                &relay,
                &relay_mark,
                "proxylab's grader, with the reference proxy inside",
            ),
            ("1", &chat, &chat_mark, "proxylab's origin-sim"),
        ] {
            let (ok, said) = lab(
                who,
                dir.path(),
                [
                    "run".as_ref(),
                    n.as_ref(),
                    "--submission".as_ref(),
                    sub.as_os_str(),
                ],
            );
            assert!(!ok, "{said}");
            assert!(
                said.contains(&format!("refused: your program ran {what}")),
                "{who:?}: {said}"
            );
            assert!(said.contains("Total: 0/100"), "{who:?}: {said}");
            assert_eq!(alive(mark), Vec::<String>::new(), "{who:?}");
        }
    }
}

/// An off-the-shelf proxy passed off as the student's is refused by what its executable is
/// (here a stand-in: Python, installed under Tinyproxy's name).
#[test]
fn an_off_the_shelf_proxy_is_refused() {
    let dir = open_tempdir();
    let mark = mark();
    let sub = dir.path().join("sub");
    submission(
        &sub,
        &[],
        &format!("proxy = \"bin/tinyproxy tiny.py {{port}} {mark}\"\n"),
    );
    std::fs::create_dir_all(sub.join("bin")).unwrap();
    std::fs::copy("/usr/bin/python3", sub.join("bin/tinyproxy")).unwrap();
    hand_to(dir.path(), As::Grader);
    let (ok, said) = lab(
        As::Grader,
        dir.path(),
        [
            "run".as_ref(),
            "2".as_ref(),
            "--submission".as_ref(),
            sub.as_os_str(),
        ],
    );
    assert!(!ok, "{said}");
    assert!(
        said.contains("refused: your program ran Tinyproxy")
            && said.contains("an off-the-shelf proxy"),
        "{said}"
    );
    assert!(said.contains("Total: 0/100"), "{said}");
    assert_eq!(alive(&mark), Vec::<String>::new());
}

/// `lab grade-all` over `subs` (as `who`, with `flags`); each student's score (from their
/// JSON report, in the CSV's order) and the reports folder.
fn grade_all(who: As, dir: &Path, subs: &Path, flags: &[&str]) -> (Vec<(String, u32)>, PathBuf) {
    let out = dir.join("grades");
    hand_to(dir, who);
    let mut args: Vec<&std::ffi::OsStr> = vec!["grade-all".as_ref(), subs.as_os_str()];
    args.extend(["--lab", "2", "--out"].map(std::ffi::OsStr::new));
    args.push(out.as_os_str());
    args.extend(flags.iter().map(std::ffi::OsStr::new));
    let (ok, said) = lab(who, dir, args);
    assert!(ok, "{who:?}: {said}");
    let csv = std::fs::read_to_string(out.join("grades.csv")).unwrap();
    let totals = csv
        .lines()
        .skip(1)
        .map(|row| {
            let student = row.split(',').next().unwrap().to_string();
            let json = std::fs::read_to_string(out.join(format!("reports/{student}.json")));
            let report: serde_json::Value = serde_json::from_str(&json.unwrap()).unwrap();
            (student, report["score"].as_u64().unwrap() as u32)
        })
        .collect();
    (totals, out.join("reports"))
}

#[test]
fn limits_stop_a_fork_bomb_a_memory_hog_and_a_disk_filler_and_spare_the_others() {
    for who in everyone() {
        let dir = open_tempdir();
        let subs = dir.path().join("submissions");
        let mark = mark();
        std::fs::create_dir_all(subs.join("alice")).unwrap();
        std::fs::copy(
            subjects().join("tiny_proxy.py"),
            subs.join("alice/proxy.py"),
        )
        .unwrap();
        for what in ["fork", "memory", "disk"] {
            submission(
                &subs.join(format!("{what}-abuser")),
                &["abuser.py"],
                &format!("proxy = \"python3 abuser.py {{port}} {what} {mark}\"\n"),
            );
        }
        let (totals, reports) = grade_all(
            who,
            dir.path(),
            &subs,
            &[
                "--jobs",
                "4",
                "--limit",
                "tasks=64",
                "--limit",
                "memory=256MiB",
                "--limit",
                "disk=64MiB",
            ],
        );
        assert_eq!(
            totals,
            [
                ("alice".to_string(), 60),
                ("disk-abuser".to_string(), 0),
                ("fork-abuser".to_string(), 0),
                ("memory-abuser".to_string(), 0),
            ],
            "{who:?}"
        );
        for (student, reason) in [
            (
                "fork-abuser",
                "it ran more than 64 processes and threads at once",
            ),
            ("memory-abuser", "it used more than 256 MiB of memory"),
            ("disk-abuser", "the files it wrote grew past 64 MiB"),
        ] {
            let report = std::fs::read_to_string(reports.join(format!("{student}.txt"))).unwrap();
            assert!(
                report.contains(&format!("your program was stopped: {reason}")),
                "{who:?} {student}:\n{report}"
            );
        }
        assert_eq!(alive(&mark), Vec::<String>::new(), "{who:?}");
    }
}

#[test]
fn a_saboteur_in_grade_all_changes_no_classmates_grade_nor_their_folders() {
    for who in everyone() {
        let dir = open_tempdir();
        let subs = dir.path().join("submissions");
        let mark = mark();
        std::fs::create_dir_all(subs.join("alice")).unwrap();
        std::fs::copy(
            subjects().join("tiny_proxy.py"),
            subs.join("alice/proxy.py"),
        )
        .unwrap();
        std::fs::create_dir_all(subs.join("bob")).unwrap();
        std::fs::copy(
            subjects().join("student_proxy.py"),
            subs.join("bob/myproxy.py"),
        )
        .unwrap();
        submission(
            &subs.join("mallory"),
            &["saboteur.py"],
            &format!(
                "proxy = \"python3 saboteur.py {{port}} {} {mark}\"\n",
                subs.display()
            ),
        );
        let before: Vec<Vec<u8>> = ["alice/proxy.py", "bob/myproxy.py"]
            .iter()
            .map(|f| std::fs::read(subs.join(f)).unwrap())
            .collect();
        let (totals, _) = grade_all(who, dir.path(), &subs, &["--jobs", "3"]);
        assert_eq!(
            totals,
            [
                ("alice".to_string(), 60),
                ("bob".to_string(), 100),
                ("mallory".to_string(), 60),
            ],
            "{who:?}"
        );
        for (f, bytes) in ["alice/proxy.py", "bob/myproxy.py"].iter().zip(&before) {
            assert!(
                std::fs::read(subs.join(f)).unwrap() == *bytes,
                "{who:?}: {f}"
            );
        }
        for student in ["alice", "bob", "mallory"] {
            assert!(
                !subs.join(student).join("sabotaged.txt").exists(),
                "{who:?}"
            );
        }
        assert_eq!(alive(&mark), Vec::<String>::new(), "{who:?}");
    }
}

#[test]
fn a_submission_sees_only_loopback() {
    for who in everyone() {
        let dir = open_tempdir();
        let mark = mark();
        let sub = dir.path().join("sub");
        submission(
            &sub,
            &["ifaces.py"],
            &format!("proxy = \"python3 ifaces.py {{port}} {mark}\"\n"),
        );
        let out = dir.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        hand_to(dir.path(), who);
        let said = get_small(
            who,
            dir.path(),
            &sub,
            &["--output-dir".as_ref(), out.as_os_str()],
        );
        assert!(
            said.contains("network: a network namespace of its own: only lo"),
            "{who:?}: {said}"
        );
        let log = std::fs::read_to_string(out.join("lab2-get-small.log")).unwrap();
        assert!(log.starts_with("interfaces: lo\n"), "{who:?}: {log}");
        assert_eq!(alive(&mark), Vec::<String>::new(), "{who:?}");
    }
}

/// Where the machine allows less, the fallbacks still end a daemon that left its process
/// group, and the report says what was missing.
#[test]
fn without_a_pid_namespace_a_cgroup_or_the_tagged_sweep_ends_a_setsid_daemon() {
    let root = rustix::process::geteuid().is_root();
    let mut cases = vec![("pidns,cgroup", "its process group, and a sweep", true)];
    if root {
        // Making a cgroup takes root here.
        cases.insert(
            0,
            ("pidns", "its own cgroup, ended with cgroup.kill", false),
        );
    }
    for (without, processes, partial) in cases {
        let dir = open_tempdir();
        let mark = mark();
        let sub = dir.path().join("sub");
        let never = dir.path().join("never-written");
        submission(
            &sub,
            &["daemon.py"],
            &format!(
                "proxy = \"python3 daemon.py {} {{port}} {mark}\"\n",
                never.display()
            ),
        );
        hand_to(dir.path(), As::Grader);
        let (_, said) = run({
            let mut c = command(As::Grader, &lab_binary(), dir.path());
            c.args(["run", "2", "--only", "get-small", "--submission"])
                .arg(&sub)
                .env("PROXYLAB_SANDBOX_WITHOUT", without);
            c
        });
        assert!(said.contains(&format!("processes: {processes}")), "{said}");
        assert_eq!(said.contains("partial: processes:"), partial, "{said}");
        assert_eq!(alive(&mark), Vec::<String>::new(), "without {without}");
    }
}

#[test]
fn exports_never_ship_the_reference_unless_told() {
    let dir = open_tempdir();
    let lab = |args: &[&str], out: &Path| {
        run({
            let mut c = Command::new(assert_cmd::cargo::cargo_bin("lab"));
            c.args(["export", "gradescope", "--lab", "2"])
                .arg(out)
                .args(args);
            c
        })
    };
    let (ok, said) = lab(&[], &dir.path().join("a"));
    assert!(!ok && said.contains("holds the reference proxy"), "{said}");
    assert!(said.contains("make grader"), "{said}");
    assert!(!dir.path().join("a/lab").exists());
    let (ok, said) = lab(&["--with-reference"], &dir.path().join("b"));
    assert!(ok, "{said}");
    let grader = grader_lab();
    let (ok, said) = lab(
        &["--lab-binary", grader.to_str().unwrap()],
        &dir.path().join("c"),
    );
    assert!(ok, "{said}");
    let shipped = labs::sandbox::identity::mark_of_file(&dir.path().join("c/lab"));
    assert_eq!(shipped.as_deref(), Some("lab"));
    // run_autograder is read whole before it runs: one { …; exit; } block.
    let script = std::fs::read_to_string(dir.path().join("c/run_autograder")).unwrap();
    let body = script
        .lines()
        .skip_while(|l| l.starts_with('#'))
        .collect::<Vec<_>>();
    assert_eq!(body.first(), Some(&"{"), "{script}");
    assert_eq!(body.last(), Some(&"}"), "{script}");
    assert!(body.iter().any(|l| l.trim() == "exit 0"), "{script}");
}
