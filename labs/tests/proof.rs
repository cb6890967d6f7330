//! The grader's own proof: the references (the proxy, and origin-sim's chat room for lab 1)
//! score full marks; each mutant — the
//! reference with one feature switched off by its real flag — loses exactly that feature's
//! checks and keeps all the others; a tiny Python proxy gets the partial score it deserves;
//! runs repeat exactly; and the report reads as reviewed.

#![allow(clippy::unwrap_used)]

use labs::harness::Subject;
use labs::report::Report;
use std::collections::BTreeSet;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn grade(number: u8, subject: &Subject) -> Report {
    let lab = labs::lab(number).unwrap();
    runtime().block_on(labs::run_lab(&lab, subject, None, |_, _, _| {}))
}

/// The checks a report failed.
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
fn without_a_cache_every_caching_check_but_no_store_is_lost() {
    let report = grade(4, &mutant(4, &["--cache-size"], &["--cache-size", "0"]));
    let all: BTreeSet<&str> = labs::lab(4)
        .unwrap()
        .checks
        .iter()
        .map(|c| c.id)
        .filter(|id| *id != "no-store-private")
        .collect();
    assert_eq!(failed(&report), all, "{}", report.table());
    assert_eq!(report.score(), 10);
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
fn connect_only_to_443_loses_the_tunnel_checks() {
    let report = grade(
        5,
        &mutant(5, &["--connect-ports"], &["--connect-ports", "443"]),
    );
    assert_eq!(
        failed(&report),
        set(&["connect-tls", "chat-tunnel"]),
        "{}",
        report.table()
    );
    assert_eq!(report.score(), 65);
}

#[test]
fn a_naive_chat_server_loses_the_checks_of_its_classic_mistakes() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/subjects/naive_chat.py");
    let report = grade(1, &Subject::Command(format!("python3 {script} {{port}}")));
    // One recv() taken as one line, and a blocking broadcast under a lock.
    assert_eq!(
        failed(&report),
        set(&["vanish-mid-line", "long-lines", "slow-reader"]),
        "{}",
        report.table()
    );
    assert_eq!(report.score(), 65);
}

fn tiny_proxy() -> Subject {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/subjects/tiny_proxy.py");
    Subject::Command(format!("python3 {script} {{port}}"))
}

#[test]
fn a_tiny_get_only_python_proxy_gets_its_partial_score_the_same_five_times() {
    let expected = set(&[
        "head",
        "post-body",
        "put-chunked",
        "hop-by-hop",
        "via",
        "keep-alive",
    ]);
    for run in 1..=5 {
        let report = grade(2, &tiny_proxy());
        assert_eq!(failed(&report), expected, "run {run}:\n{}", report.table());
        assert_eq!(report.score(), 60, "run {run}");
    }
}

#[test]
fn a_program_that_never_listens_is_reported_clearly() {
    let report = grade(2, &Subject::Command("exit 3".into()));
    assert_eq!(report.score(), 0);
    let why = report.outcomes[0].failure.clone().unwrap();
    assert!(
        why.contains("exited (exit status: 3) before listening"),
        "{why}"
    );
}

/// The table and the Gradescope file, with what changes from run to run (ports, time)
/// replaced. The subject is the reference without Via: its one failure reads the same
/// every time (a subject that closes connections early can fail with either a clean close
/// or a reset, whichever TCP delivers first).
#[test]
fn the_report_reads_as_reviewed() {
    let report = grade(2, &mutant(2, &[], &["--no-via"]));
    let ports = regex::Regex::new(r"127\.0\.0\.1:\d+").unwrap();
    let time = regex::Regex::new(r"in \d+\.\d s").unwrap();
    let clean = |text: &str| {
        let text = ports.replace_all(text, "127.0.0.1:PORT");
        time.replace_all(&text, "in T s").into_owned()
    };
    insta::assert_snapshot!("lab2_table", clean(&report.table()));
    let gradescope: serde_json::Value =
        serde_json::from_str(&labs::report::gradescope(std::slice::from_ref(&report))).unwrap();
    assert_eq!(gradescope["score"], 95);
    assert_eq!(gradescope["tests"].as_array().unwrap().len(), 14);
    assert_eq!(gradescope["tests"][10]["name"], "lab2: via");
    assert_eq!(gradescope["tests"][10]["score"], 0);
    assert_eq!(gradescope["tests"][10]["max_score"], 5);
    assert_eq!(gradescope["tests"][10]["visibility"], "visible");
    assert!(gradescope["tests"][10]["output"]
        .as_str()
        .unwrap()
        .contains("Hint: RFC 9110 §7.6.3"));
}

#[test]
fn the_starter_project_compiles_and_earns_only_the_400_check() {
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
    assert_eq!(report.score(), 5, "{}", report.table());
    assert!(failed(&report).len() == 13 && !failed(&report).contains("malformed-400"));
    // A second `lab new` into the same place refuses rather than overwrite.
    assert!(labs::write_starter(&project).is_err());
}

#[test]
fn the_classroom_export_maps_every_check_to_its_points() {
    let json: serde_json::Value = serde_json::from_str(&labs::classroom(
        "python3 proxy.py {port}",
        "python3 chat.py {port}",
    ))
    .unwrap();
    let tests = json["tests"].as_array().unwrap();
    let checks: usize = labs::all_labs().iter().map(|l| l.checks.len()).sum();
    assert_eq!(tests.len(), checks);
    let points: u64 = tests.iter().map(|t| t["points"].as_u64().unwrap()).sum();
    assert_eq!(points, 100 * labs::all_labs().len() as u64);
    assert_eq!(
        tests[0]["run"],
        "PROXYLAB_SUBJECT='python3 chat.py {port}' cargo test -q -p labs --test lab1 -- --exact greeting"
    );
    assert!(tests
        .iter()
        .any(|t| t["run"] == "PROXYLAB_SUBJECT='python3 proxy.py {port}' cargo test -q -p labs --test lab4 -- --exact etag_revalidation"));
}

#[test]
fn lab_run_exits_0_only_on_full_marks_and_says_why() {
    let lab = || assert_cmd::Command::cargo_bin("lab").unwrap();
    lab()
        .args(["run", "2", "--only", "get-small"])
        .assert()
        .success();
    let out = lab()
        .args(["run", "2", "--only", "get-small", "--cmd", "exit 3"])
        .assert()
        .code(1);
    let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(text.contains("FAIL  get-small"), "{text}");
    assert!(
        text.contains("exited (exit status: 3) before listening"),
        "{text}"
    );
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
    let outcome = runtime().block_on(labs::run_check_recorded(
        &lab,
        check,
        &lab.reference(&[]),
        Some(dir.path()),
    ));
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
    let starts = |prefix: &[u8]| payloads.values().filter(|p| p.starts_with(prefix)).count();
    // The grader to the subject (absolute form), and the subject to the origin (origin form).
    assert_eq!(
        starts(b"POST http://127.0.0.1:"),
        1,
        "{:?}",
        payloads.keys()
    );
    assert_eq!(
        starts(b"POST /echo HTTP/1.1\r\n"),
        1,
        "{:?}",
        payloads.keys()
    );
    // Both answers, each carrying the 64 KiB body back.
    assert_eq!(starts(b"HTTP/1.1 200"), 2, "{:?}", payloads.keys());
    assert!(payloads.values().all(|p| p.len() > 64 * 1024));
}
