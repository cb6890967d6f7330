//! The grader's own proof: the references (the proxy, and origin-sim's chat room for lab 1)
//! score full marks; each mutant — the
//! reference with one feature switched off by its real flag — loses exactly that feature's
//! checks and keeps all the others; a tiny Python proxy gets the partial score it deserves;
//! runs repeat exactly; and the report reads as reviewed.

#![allow(clippy::unwrap_used)]

/// Programs like the ones students hand in, graded as they are (proof/corpus.rs).
#[path = "proof/corpus.rs"]
mod corpus;
/// Submissions written to cheat or to harm, graded as an instructor would: no grade
/// changes, nothing is left running (proof/hostile.rs).
#[path = "proof/hostile.rs"]
mod hostile;
/// What a course runs: Classroom and Gradescope exports, batch grading, the student kit
/// (proof/teaching.rs).
#[path = "proof/teaching.rs"]
mod teaching;

use labs::harness::Subject;
use labs::report::Report;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The student-like programs (tests/subjects/), copied where any user can read them: when
/// the tests run as root (as CI does), the grader runs each program as an unprivileged user
/// of its own, and a repository cloned under /root is out of that user's reach. Each file
/// is written under a temporary name and renamed, so test processes side by side agree.
pub(crate) fn subjects() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let to = std::env::temp_dir().join("proxylab-test-subjects");
        publish(
            Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/subjects")),
            &to,
        );
        to
    })
    .clone()
}

fn publish(from: &Path, to: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(to).unwrap();
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o755)).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if src.is_dir() {
            publish(&src, &dst);
        } else {
            let tmp = to.join(format!(
                ".{}.{}",
                std::process::id(),
                entry.file_name().to_string_lossy()
            ));
            std::fs::copy(&src, &tmp).unwrap();
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
            std::fs::rename(&tmp, &dst).unwrap();
        }
    }
}

/// A temporary folder every user may read and enter (tempfile makes them private): what a
/// program graded by a root grader needs of the folder it is in.
pub(crate) fn open_tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

pub(crate) fn grade(number: u8, subject: &Subject) -> Report {
    let lab = labs::lab(number).unwrap();
    runtime().block_on(labs::run_lab(
        &lab,
        subject,
        None,
        &labs::Options::default(),
        |_, _, _| {},
    ))
}

/// The checks of a report with `verdict`.
fn verdicts(report: &Report, verdict: labs::Verdict) -> BTreeSet<&str> {
    report
        .outcomes
        .iter()
        .filter(|o| o.verdict == verdict)
        .map(|o| o.id.as_str())
        .collect()
}

/// The checks a report failed (or could not judge): those that lost their points.
fn failed(report: &Report) -> BTreeSet<&str> {
    report
        .outcomes
        .iter()
        .filter(|o| !o.passed())
        .map(|o| o.id.as_str())
        .collect()
}

fn set<'a>(ids: &[&'a str]) -> BTreeSet<&'a str> {
    ids.iter().copied().collect()
}

/// A mutant: the lab's reference flags, without `drop` (flag and value), plus `extra`.
fn mutant(number: u8, drop: &[&str], extra: &[&str]) -> Subject {
    let lab = labs::lab(number).unwrap();
    let mut flags: Vec<String> = Vec::new();
    let mut skip = 0;
    for flag in lab.reference_flags {
        if skip > 0 {
            skip -= 1;
            continue;
        }
        if drop.contains(flag) {
            skip = 1;
            continue;
        }
        flags.push(flag.to_string());
    }
    flags.extend(extra.iter().map(|s| s.to_string()));
    Subject::Reference(flags)
}

#[test]
fn the_reference_scores_full_marks_on_every_lab() {
    for lab in labs::all_labs() {
        let report = grade(lab.number, &lab.reference(&[]));
        assert!(report.full_marks(), "{}", report.table());
        assert_eq!(report.score(), 100, "lab {}", lab.number);
    }
}

#[test]
fn without_via_only_the_via_check_is_lost() {
    let report = grade(2, &mutant(2, &[], &["--no-via"]));
    assert_eq!(failed(&report), set(&["via"]), "{}", report.table());
    assert_eq!(report.score(), 95);
}

#[test]
fn a_sequential_proxy_loses_exactly_the_concurrency_checks() {
    let report = grade(3, &mutant(3, &[], &["--sequential"]));
    assert_eq!(
        failed(&report),
        set(&["overlap", "fifty-clients", "slow-client"]),
        "{}",
        report.table()
    );
    assert_eq!(report.score(), 25);
}

#[test]
fn without_a_cache_hit_and_revalidation_fail_and_the_rest_is_not_judged() {
    let report = grade(4, &mutant(4, &["--cache-size"], &["--cache-size", "0"]));
    assert_eq!(
        verdicts(&report, labs::Verdict::Failed),
        set(&["hit", "etag-revalidation"]),
        "{}",
        report.table()
    );
    // Everything that builds on a hit is not judged, no-store-private included: a proxy
    // that caches nothing does not earn the points for not caching what it must not.
    assert_eq!(verdicts(&report, labs::Verdict::NotJudged).len(), 7);
    assert_eq!(report.score(), 0);
}

#[test]
fn without_rules_the_filtering_checks_are_lost() {
    let report = grade(5, &mutant(5, &["--rules"], &[]));
    assert_eq!(
        failed(&report),
        set(&[
            "block-http",
            "block-wildcard",
            "block-connect",
            "rule-added-live"
        ]),
        "{}",
        report.table()
    );
    assert_eq!(report.score(), 55);
}

#[test]
fn connect_only_to_443_fails_connect_tls_and_leaves_the_checks_on_tunnels_not_judged() {
    let report = grade(
        5,
        &mutant(5, &["--connect-ports"], &["--connect-ports", "443"]),
    );
    assert_eq!(
        verdicts(&report, labs::Verdict::Failed),
        set(&["connect-tls"]),
        "{}",
        report.table()
    );
    assert_eq!(
        verdicts(&report, labs::Verdict::NotJudged),
        set(&["port-policy", "block-connect", "chat-tunnel"]),
        "{}",
        report.table()
    );
    assert_eq!(report.score(), 45);
}

/// The checks of lab 2 the tiny GET-only proxy fails (its partial score: 60).
pub(crate) const TINY_FAILS: [&str; 6] = [
    "head",
    "post-body",
    "put-chunked",
    "hop-by-hop",
    "via",
    "keep-alive",
];

fn tiny_proxy() -> Subject {
    let script = subjects().join("tiny_proxy.py");
    Subject::Command(format!("python3 {} {{port}}", script.display()))
}

#[test]
fn a_tiny_get_only_python_proxy_gets_its_partial_score_the_same_five_times() {
    let expected = set(&TINY_FAILS);
    for run in 1..=5 {
        let report = grade(2, &tiny_proxy());
        assert_eq!(failed(&report), expected, "run {run}:\n{}", report.table());
        assert_eq!(report.score(), 60, "run {run}");
    }
}

#[test]
fn a_program_that_never_listens_is_reported_once_with_what_it_said() {
    let report = grade(
        2,
        &Subject::Command("echo 'cannot open config.txt' >&2; exit 3 # {port}".into()),
    );
    assert_eq!(report.score(), 0);
    let why = report.aborted.clone().unwrap();
    assert!(
        why.contains("exited (exit status: 3) before listening")
            && why.contains("cannot open config.txt"),
        "{why}"
    );
    // Said once: the other checks did not run (and did not wait for it again).
    assert_eq!(report.outcomes[0].failure.as_deref(), Some(why.as_str()));
    assert!(report.outcomes[1..]
        .iter()
        .all(|o| o.verdict == labs::Verdict::NotRun));
}

#[test]
fn a_command_without_its_port_is_refused_before_any_check() {
    let report = grade(2, &Subject::Command("python3 myproxy.py 8080".into()));
    let why = report.aborted.clone().unwrap();
    assert!(why.contains("has no {port}"), "{why}");
    assert!(report
        .outcomes
        .iter()
        .all(|o| o.verdict == labs::Verdict::NotRun));
    assert!(report.table().contains("No check could run"));
}

/// The table and the Gradescope file, with what changes from run to run (ports, time,
/// where the repository is) replaced. The subject is the corpus's Python proxy that
/// forwards no client headers: a failed check and a not-judged one, each with the program's
/// last output line and its `lab repro` command.
#[test]
fn the_report_reads_as_reviewed() {
    let script = subjects().join("student_proxy.py");
    let report = grade(
        2,
        &Subject::Command(format!(
            "python3 {} {{port}} --defect no-headers",
            script.display()
        )),
    );
    let ports = regex::Regex::new(r"(127\.0\.0\.1:|port )\d+").unwrap();
    let time = regex::Regex::new(r"in \d+\.\d s").unwrap();
    let graded_under = regex::Regex::new(r"(?m)^Graded under:\n(  .*\n)+\n").unwrap();
    let clean = |text: &str| {
        let text = text.replace(&subjects().display().to_string(), "labs/tests/subjects");
        // What this machine's sandbox allows is not the report's wording: `lab doctor`.
        let text = graded_under.replace(&text, "Graded under: (this machine's protections)\n\n");
        let text = ports.replace_all(&text, "${1}PORT");
        time.replace_all(&text, "in T s").into_owned()
    };
    insta::assert_snapshot!("lab2_table", clean(&report.table()));
    let gradescope: serde_json::Value =
        serde_json::from_str(&labs::report::gradescope(std::slice::from_ref(&report))).unwrap();
    assert_eq!(gradescope["score"], 90);
    let tests = gradescope["tests"].as_array().unwrap();
    assert_eq!(tests.len(), 15);
    let hop = &tests[10];
    assert_eq!(hop["name"], "lab2: hop-by-hop");
    assert_eq!(hop["score"], 0);
    assert_eq!(hop["max_score"], 5);
    assert_eq!(hop["visibility"], "visible");
    let output = hop["output"].as_str().unwrap();
    assert!(
        output.contains("What happened: not judged: client headers are not forwarded at all — see lab 2 headers-kept"),
        "{output}"
    );
    assert!(
        output.contains("Reproduce: lab repro 2 hop-by-hop --cmd"),
        "{output}"
    );
    assert!(
        output.contains("Your program's last output:\nstudent proxy on port"),
        "{output}"
    );
}

#[test]
fn the_starter_project_compiles_and_is_graded_as_a_proxy_without_get() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("myproxy");
    labs::write_starter(&project).unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let built = std::process::Command::new(cargo)
        .args([
            "build",
            "--release",
            "--offline",
            "--quiet",
            "--manifest-path",
        ])
        .arg(project.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", project.join("target"))
        .status()
        .unwrap();
    assert!(built.success());
    let binary = project.join("target/release/myproxy");
    let report = grade(
        2,
        &Subject::Command(format!("{} {{port}}", binary.display())),
    );
    // It answers 501 to everything but a malformed request: get-small fails, and every
    // other check is not judged (malformed-400 too: answering 400 alone proves nothing).
    assert_eq!(report.score(), 0, "{}", report.table());
    assert_eq!(
        verdicts(&report, labs::Verdict::Failed),
        set(&["get-small"])
    );
    assert_eq!(verdicts(&report, labs::Verdict::NotJudged).len(), 14);
    // A second `lab new` into the same place refuses rather than overwrite.
    assert!(labs::write_starter(&project).is_err());
}

#[test]
fn lab_run_exits_0_only_on_full_marks_and_says_why() {
    let lab = || assert_cmd::Command::cargo_bin("lab").unwrap();
    lab()
        .args(["run", "2", "--only", "get-small"])
        .assert()
        .success();
    let out = lab()
        .args([
            "run",
            "2",
            "--only",
            "get-small",
            "--cmd",
            "exit 3 # {port}",
        ])
        .assert()
        .code(1);
    let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(text.contains("FAIL  get-small"), "{text}");
    assert!(
        text.contains("exited (exit status: 3) before listening"),
        "{text}"
    );
    let out = lab()
        .args(["run", "2", "--cmd", "./myproxy"])
        .assert()
        .failure();
    let err = String::from_utf8(out.get_output().stderr.clone()).unwrap();
    assert!(err.contains("has no {port}"), "{err}");
    let out = lab().arg("grade").assert().failure();
    let err = String::from_utf8(out.get_output().stderr.clone()).unwrap();
    assert!(err.contains("no program to grade"), "{err}");
    let points = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(points.path(), "[lab2]\nget-small = 40\n").unwrap();
    let out = lab()
        .args(["list", "--points"])
        .arg(points.path())
        .assert()
        .success();
    let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(text.contains("Lab 2: Forwarding (130 points)"), "{text}");
    std::fs::write(points.path(), "[lab2]\nget-smal = 40\n").unwrap();
    let out = lab()
        .args(["run", "2", "--points"])
        .arg(points.path())
        .assert()
        .failure();
    let err = String::from_utf8(out.get_output().stderr.clone()).unwrap();
    assert!(err.contains(":2: lab 2 has no check \"get-smal\""), "{err}");
    let out = lab().args(["run", "9"]).assert().failure();
    let err = String::from_utf8(out.get_output().stderr.clone()).unwrap();
    assert!(err.contains("there is no lab 9"), "{err}");
    let out = lab().arg("list").assert().success();
    let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(text.contains("Lab 4: Caching (100 points)") && text.contains("etag-revalidation"));
}

/// `--pcap-dir`: a check's capture holds both sides — the grader's connection to the
/// subject, and the subject's connection to the origin — with the bytes each carried.
#[test]
fn a_check_recorded_with_pcap_dir_shows_both_sides() {
    use etherparse::{SlicedPacket, TransportSlice};
    let dir = tempfile::tempdir().unwrap();
    let lab = labs::lab(2).unwrap();
    let check = lab.check("post-body").unwrap();
    let options = labs::Options {
        pcap_dir: Some(dir.path().to_path_buf()),
        ..labs::Options::default()
    };
    let outcome = runtime().block_on(labs::run_check(&lab, check, &lab.reference(&[]), &options));
    assert!(outcome.passed());
    let file = std::fs::File::open(dir.path().join("lab2-post-body.pcap")).unwrap();
    let mut reader = pcap_file::pcap::PcapReader::new(file).unwrap();
    let mut payloads: std::collections::BTreeMap<(u16, u16), Vec<u8>> = Default::default();
    while let Some(packet) = reader.next_packet() {
        let packet = packet.unwrap();
        let sliced = SlicedPacket::from_ethernet(&packet.data).unwrap();
        let Some(TransportSlice::Tcp(tcp)) = sliced.transport else {
            panic!("not TCP");
        };
        payloads
            .entry((tcp.source_port(), tcp.destination_port()))
            .or_default()
            .extend_from_slice(tcp.payload());
    }
    // Each direction's bytes that hold `needle`, if more than 64 KiB (the body) went with it.
    let carrying = |needle: &[u8]| {
        payloads
            .values()
            .filter(|p| p.windows(needle.len()).any(|w| w == needle) && p.len() > 64 * 1024)
            .count()
    };
    // The grader to the subject (absolute form), and the subject to the origin (origin
    // form), each with the 64 KiB body.
    assert_eq!(
        carrying(b"POST http://127.0.0.1:"),
        1,
        "{:?}",
        payloads.keys()
    );
    assert_eq!(
        carrying(b"POST /echo HTTP/1.1\r\n"),
        1,
        "{:?}",
        payloads.keys()
    );
    // Both answers, each carrying the 64 KiB body back.
    assert_eq!(carrying(b"HTTP/1.1 200"), 2, "{:?}", payloads.keys());
}

/// A program that listens and never answers, tagged so its processes can be found.
fn silent_subject(tag: &str) -> String {
    format!(
        "PROXYLAB_SIGNAL_TAG={tag} python3 -c 'import socket,sys,time; s=socket.socket(); \
         s.bind((\"127.0.0.1\", int(sys.argv[1]))); s.listen(); time.sleep(600)' {{port}}"
    )
}

/// Processes whose environment holds `PROXYLAB_SIGNAL_TAG=tag`.
fn tagged(tag: &str) -> usize {
    let needle = format!("PROXYLAB_SIGNAL_TAG={tag}");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read(e.path().join("environ"))
                .map(|env| env.split(|&b| b == 0).any(|v| v == needle.as_bytes()))
                .unwrap_or(false)
        })
        .count()
}

/// Waits (with a deadline) until `done` holds.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "{what}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Whatever ends `lab` — Ctrl-C, SIGTERM, SIGHUP — it ends at once and takes the program
/// it is grading with it.
#[test]
fn a_signal_stops_lab_at_once_and_the_subject_with_it() {
    let lab = assert_cmd::cargo::cargo_bin("lab");
    for (signal, code) in [("INT", 130), ("TERM", 143), ("HUP", 129)] {
        let tag = format!("{}-{signal}", std::process::id());
        let mut child = std::process::Command::new(&lab)
            .args(["run", "2", "--cmd", &silent_subject(&tag)])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // The subject runs (and the grader waits on its first step) when the signal comes.
        wait_until("the subject never started", || tagged(&tag) > 0);
        let sent = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let mut status = None;
        wait_until("lab did not stop on the signal", || {
            status = child.try_wait().unwrap();
            status.is_some()
        });
        assert_eq!(status.unwrap().code(), Some(code), "SIG{signal}");
        wait_until("the subject outlived lab", || tagged(&tag) == 0);
    }
}

/// `lab repro` runs the check, says what happened and where everything listens, and keeps
/// it all up until Ctrl-C.
#[test]
fn lab_repro_keeps_origin_and_subject_up_with_live_commands() {
    use std::io::BufRead as _;
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("lab"))
        .args(["repro", "2", "get-small"])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut text = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        text.push_str(&line);
        text.push('\n');
        if line.contains("Ctrl-C stops it") {
            break;
        }
    }
    if !text.contains("lab 2 get-small: PASS") {
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        panic!("{text}\n{}", String::from_utf8_lossy(&out.stderr));
    }
    let origin = regex::Regex::new(r"origin-sim http listening on http://(127\.0\.0\.1:\d+)")
        .unwrap()
        .captures(&text)
        .unwrap_or_else(|| panic!("{text}"))[1]
        .to_string();
    let subject = regex::Regex::new(r"the subject listens on (127\.0\.0\.1:\d+)")
        .unwrap()
        .captures(&text)
        .unwrap_or_else(|| panic!("{text}"))[1]
        .to_string();
    // Still up: a request through the subject to the origin works after the check.
    let mut stream = std::net::TcpStream::connect(&subject).unwrap();
    std::io::Write::write_all(
        &mut stream,
        format!(
            "GET http://{origin}/bytes/3 HTTP/1.1\r\nHost: {origin}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    let mut answer = Vec::new();
    let _ = std::io::Read::read_to_end(&mut stream, &mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(dir.path().join("origin-sim-ca.pem").exists());
    std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let mut status = None;
    wait_until("lab repro did not stop on Ctrl-C", || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
}

/// `make grade` as a course runs it: the command reaches `lab` with its own quotes intact
/// (a path with a space), the lab given no program is "not submitted" — never graded as the
/// reference — and results.json holds both.
#[test]
fn make_grade_passes_commands_with_quotes_and_never_grades_the_reference_by_accident() {
    let dir = open_tempdir();
    let script = dir.path().join("my proxy.py");
    std::fs::copy(subjects().join("tiny_proxy.py"), &script).unwrap();
    let results = dir.path().join("results.json");
    let out = std::process::Command::new("make")
        .arg("-s")
        .arg("-C")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .arg("grade")
        .arg(format!(
            "LAB={}",
            assert_cmd::cargo::cargo_bin("lab").display()
        ))
        .arg("LABS=1,2")
        .arg(format!("PROXY_CMD=python3 '{}' {{port}}", script.display()))
        .arg(format!("RESULTS={}", results.display()))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    // lab exits 1 (not full marks), so make fails.
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stdout.contains("not submitted: no program was given for lab 1 (--chat-cmd)"),
        "{stdout}"
    );
    assert!(stdout.contains("All labs graded: 60/200"), "{stdout}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&results).unwrap()).unwrap();
    assert_eq!(json["score"], 60);
    let tests = json["tests"].as_array().unwrap();
    assert_eq!(tests.len(), 8 + 15);
    assert!(tests[..8].iter().all(|t| t["score"] == 0));
}
