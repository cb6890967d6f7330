//! The corpus: programs written the way students write them (labs/tests/subjects/), graded
//! as they are. Each is correct but for one defect (or none), and must lose that defect's
//! points and no others; each is graded five times with the same result, `lab` ends in
//! bounded time on it, and nothing it started is left running afterwards. Its per-check
//! results and messages are pinned in a reviewed snapshot.
//!
//! - `csapp_proxy.c`: a CS:APP Proxy Lab style C proxy (threads, rio, GET only, HTTP/1.0
//!   upstream with its own `Connection: close`), which dies of SIGPIPE when a client goes
//!   away early: graded by the grader's old connection probe it "exited before listening".
//! - `student_proxy.py --defect NAME`: a good Python proxy, with one classic mistake
//!   switched on (see its docstring).
//! - `student_chat.py --defect NAME`, `naive_chat.py`: chat servers for lab 1.

use super::grade;
use labs::harness::Subject;
use labs::report::Report;
use labs::Verdict;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::subjects;

/// `python3 subjects/SCRIPT {port} ARGS`.
fn python(script: &str, args: &str) -> String {
    format!(
        "python3 {} {{port}} {args}",
        subjects().join(script).display()
    )
}

/// `--defect NAME`, or nothing for no defect.
fn defect_flag(defect: &str) -> String {
    if defect.is_empty() {
        String::new()
    } else {
        format!("--defect {defect}")
    }
}

/// The student proxy with one defect (or none), given lab 5's files.
fn student_proxy(defect: &str) -> String {
    python(
        "student_proxy.py",
        &format!("--rules {{rules}} --log {{log}} {}", defect_flag(defect)),
    )
}

fn student_chat(defect: &str) -> String {
    python("student_chat.py", &defect_flag(defect))
}

/// Compiles the C proxy once per test process with the system's `cc`.
fn csapp_proxy() -> String {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let binary = BUILT.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("proxylab-corpus-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let binary = dir.join("csapp_proxy");
        let out = std::process::Command::new("cc")
            .args(["-O2", "-pthread", "-o"])
            .arg(&binary)
            .arg(subjects().join("csapp_proxy.c"))
            .output()
            .expect("the corpus needs a C compiler as `cc` (gcc or clang)");
        assert!(
            out.status.success(),
            "cc failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        binary
    });
    format!("{} {{port}}", binary.display())
}

/// What a run says about each check: id, verdict, points.
fn verdicts(report: &Report) -> Vec<(String, Verdict, u32)> {
    report
        .outcomes
        .iter()
        .map(|o| (o.id.clone(), o.verdict, o.points))
        .collect()
}

/// A report as the snapshot keeps it: one line per check, and for each lost one its
/// message, with what changes from run to run (ports, counts, paths) replaced.
fn summary(report: &Report) -> String {
    let ports = regex::Regex::new(r"(127\.0\.0\.1|localhost):\d+").unwrap();
    let paths = regex::Regex::new(r"/tmp/\S+").unwrap();
    // Counts that depend on where TCP split the bytes.
    let counts = regex::Regex::new(r"(heard|of) \d+ (of|bytes)").unwrap();
    let line_numbers = regex::Regex::new(r"\bL\d+\.").unwrap();
    let heard =
        regex::Regex::new(r#" \(it heard \d+ line\(s\) before, the last: (?:"[^"]*"(?:, )?)+\)"#)
            .unwrap();
    let clean = |text: &str| {
        let text = ports.replace_all(text, "ADDR");
        let text = paths.replace_all(&text, "PATH");
        let text = heard.replace_all(&text, "");
        let text = line_numbers.replace_all(&text, "LN.");
        counts.replace_all(&text, "$1 N $2").into_owned()
    };
    let mut out = format!("lab {}: {}/{}\n", report.lab, report.score(), report.max());
    for o in &report.outcomes {
        let mark = match o.verdict {
            Verdict::Passed => "PASS",
            Verdict::Failed => "FAIL",
            Verdict::NotJudged => "N/J ",
            Verdict::NotRun => "----",
        };
        out.push_str(&format!(
            "  {mark} {:<18} {:>2}/{}\n",
            o.id, o.points, o.max
        ));
        if let Some(f) = &o.failure {
            out.push_str(&format!("       {}\n", clean(f)));
        }
    }
    out
}

/// Live processes whose environment holds `tag`.
fn processes_tagged(tag: &str) -> Vec<u32> {
    let needle = format!("PROXYLAB_CORPUS_TAG={tag}");
    std::fs::read_dir("/proc")
        .map(|dir| {
            dir.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                .filter(|pid| {
                    std::fs::read(format!("/proc/{pid}/environ"))
                        .map(|env| env.split(|&b| b == 0).any(|v| v == needle.as_bytes()))
                        .unwrap_or(false)
                })
                .collect()
        })
        .unwrap_or_default()
}

static TAGS: AtomicU32 = AtomicU32::new(0);

/// Grades `command` on lab `number` five times and proves: the same verdicts every time,
/// exactly `lost` (failed or not judged) lose points, the run ends within the bound, and no
/// process of the subject is left. Returns the first run's summary.
fn graded_five_times(number: u8, command: &str, lost: &[&str]) -> String {
    let mut first: Option<Report> = None;
    for run in 1..=5 {
        let tag = format!(
            "{}-{}",
            std::process::id(),
            TAGS.fetch_add(1, Ordering::Relaxed)
        );
        let subject = Subject::Command(format!("PROXYLAB_CORPUS_TAG={tag} {command}"));
        let started = Instant::now();
        let report = grade(number, &subject);
        // Bounded: each check's steps that succeed, plus at most one that runs out (5 s).
        let bound = Duration::from_secs(15) * report.outcomes.len() as u32;
        assert!(
            started.elapsed() < bound,
            "lab {number} run {run} took {:?} (bound {bound:?}):\n{}",
            started.elapsed(),
            report.table()
        );
        // Nothing left behind (a killed process can take a moment to disappear).
        let deadline = Instant::now() + Duration::from_secs(5);
        while !processes_tagged(&tag).is_empty() {
            assert!(
                Instant::now() < deadline,
                "lab {number} run {run} left {:?} running",
                processes_tagged(&tag)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let lost_now: Vec<&str> = report
            .outcomes
            .iter()
            .filter(|o| o.points < o.max)
            .map(|o| o.id.as_str())
            .collect();
        assert_eq!(
            lost_now,
            lost,
            "lab {number} run {run}:\n{}",
            report.table()
        );
        match &first {
            None => first = Some(report),
            Some(f) => assert_eq!(
                verdicts(&report),
                verdicts(f),
                "lab {number} run {run} differs from run 1:\n{}",
                report.table()
            ),
        }
    }
    first.map(|r| summary(&r)).unwrap_or_default()
}

#[test]
fn a_csapp_style_c_proxy_that_dies_on_sigpipe_gets_the_points_of_what_it_does() {
    let cmd = csapp_proxy();
    // GET only, HTTP/1.0 upstream, one request per connection, no Via; its own
    // `Connection: close` / `Proxy-Connection: close` cost it nothing.
    let lab2 = graded_five_times(
        2,
        &cmd,
        &["head", "post-body", "put-chunked", "via", "keep-alive"],
    );
    let lab3 = graded_five_times(3, &cmd, &[]);
    insta::assert_snapshot!("csapp_proxy", format!("{lab2}\n{lab3}"));
}

#[test]
fn a_good_python_proxy_scores_full_marks_on_labs_2_to_5() {
    let cmd = student_proxy("");
    let all: Vec<String> = (2..=5).map(|n| graded_five_times(n, &cmd, &[])).collect();
    insta::assert_snapshot!("student_proxy", all.join("\n"));
}

/// One defect, one lab, one set of lost checks.
fn defect(lab: u8, name: &str, lost: &[&str]) -> String {
    graded_five_times(lab, &student_proxy(name), lost)
}

/// Issue 23, item 8: a proxy that drops the query string is told so by origin-form, the
/// check it costs, and lab 4 does not judge caching on top of it (its checks tell their
/// requests apart by their queries).
#[test]
fn dropping_the_query_string_costs_origin_form_and_says_so() {
    let lab2 = defect(2, "drop-query", &["origin-form", "keep-alive"]);
    assert!(
        lab2.contains("the request without its query `?lab=origin-form`"),
        "{lab2}"
    );
    // Lab 4: what does not build on told-apart URLs passes (its cache works), the rest is
    // not judged and points at origin-form; nothing blames the cache.
    let lab4 = super::grade(4, &Subject::Command(student_proxy("drop-query")));
    let pointed = |o: &labs::Outcome| {
        o.failure
            .as_deref()
            .is_some_and(|f| f.contains("see lab 2 origin-form"))
    };
    assert!(
        lab4.outcomes.iter().all(
            |o| o.verdict == Verdict::Passed || (o.verdict == Verdict::NotJudged && pointed(o))
        ),
        "{}",
        lab4.table()
    );
    assert!(lab4.outcomes.iter().any(pointed), "{}", lab4.table());
    insta::assert_snapshot!("defect_drop_query", lab2);
}

/// Issue 23, item 14: an error page without a status line is said to be one, with what it
/// began with; a 400 without a length is a 400 whose end never comes, not "no 400".
#[test]
fn an_error_page_without_a_status_line_and_a_400_without_a_length_are_named() {
    let html = defect(2, "bare-html", &["unreachable-502", "malformed-400"]);
    assert!(
        html.contains("but no response head: they began \"<html><body><h1>502 Bad Gateway</h1>"),
        "{html}"
    );
    let unframed = defect(2, "unframed-400", &["malformed-400"]);
    assert!(
        unframed.contains("a 400 came back, but the client cannot tell where it ends"),
        "{unframed}"
    );
    insta::assert_snapshot!("defect_error_pages", format!("{html}\n{unframed}"));
}

/// Issue 23, item 2: a proxy that reads each response to the end of the connection, from an
/// origin that keeps it open (as HTTP/1.1 allows), is told that — not "0 bytes came". (With
/// one-second steps: every check waits one out.)
#[test]
fn waiting_for_the_origin_to_close_is_named_as_the_cause() {
    let lab = labs::lab(2).unwrap();
    let options = labs::Options {
        step: Duration::from_secs(1),
        ..labs::Options::default()
    };
    let subject = Subject::Command(student_proxy("waits-for-close"));
    let mut runs = Vec::new();
    for _ in 0..2 {
        let report =
            super::runtime().block_on(labs::run_lab(&lab, &subject, None, &options, |_, _, _| {}));
        runs.push(summary(&report));
    }
    assert_eq!(runs[0], runs[1]);
    let get_small = &runs[0];
    assert!(
        get_small.contains("origin-sim sent its whole response to `GET /bytes/100 HTTP/1.1` and kept the connection open"),
        "{get_small}"
    );
    insta::assert_snapshot!("defect_waits_for_close", runs[0]);
}

/// Issue 23, item 1: a relay that mangles binary bodies (Java's readLine(), C's strlen())
/// but is concurrent and caches right loses lab 2's binary checks, and nothing in labs 3
/// and 4: what they build on is a plain text GET.
#[test]
fn passing_bodies_as_text_costs_only_the_binary_checks() {
    let lab2 = defect(2, "text-only", &["get-small", "get-large-binary"]);
    let lab3 = defect(3, "text-only", &[]);
    let lab4 = defect(4, "text-only", &[]);
    insta::assert_snapshot!("defect_text_only", format!("{lab2}\n{lab3}\n{lab4}"));
}

#[test]
fn forwarding_the_absolute_url_costs_only_origin_form() {
    insta::assert_snapshot!("defect_absolute", defect(2, "absolute", &["origin-form"]));
}

#[test]
fn sending_every_request_twice_costs_only_keep_alive() {
    // Lab 4 judges the cache by the stamp on each response, not by the origin's count,
    // which the duplicates inflate: the cache itself is fine, so all 100.
    let lab2 = defect(2, "twice", &["keep-alive"]);
    let lab4 = defect(4, "twice", &[]);
    insta::assert_snapshot!("defect_twice", format!("{lab2}\n{lab4}"));
}

#[test]
fn logging_100_kib_per_request_to_stderr_costs_nothing() {
    let lab2 = defect(2, "noisy", &[]);
    let lab3 = defect(3, "noisy", &[]);
    insta::assert_snapshot!("defect_noisy", format!("{lab2}\n{lab3}"));
}

#[test]
fn speaking_only_http_1_0_costs_only_keep_alive() {
    let lab2 = defect(2, "http10", &["keep-alive"]);
    let lab3 = defect(3, "http10", &[]);
    insta::assert_snapshot!("defect_http10", format!("{lab2}\n{lab3}"));
}

#[test]
fn forwarding_no_client_headers_costs_headers_kept_and_leaves_hop_by_hop_not_judged() {
    let lab2 = defect(2, "no-headers", &["headers-kept", "hop-by-hop"]);
    // Vary cannot tell requests apart by a header that never reaches the origin: not
    // judged, pointing to headers-kept, rather than blamed on the cache.
    let lab4 = defect(4, "no-headers", &["vary"]);
    insta::assert_snapshot!("defect_no_headers", format!("{lab2}\n{lab4}"));
}

#[test]
fn answering_400_to_everything_earns_nothing_not_even_malformed_400() {
    let all: Vec<&str> = labs::lab(2).unwrap().checks.iter().map(|c| c.id).collect();
    insta::assert_snapshot!("defect_always_400", defect(2, "always-400", &all));
}

#[test]
fn reading_the_request_head_with_one_recv_costs_only_slow_client() {
    insta::assert_snapshot!("defect_one_recv", defect(3, "one-recv", &["slow-client"]));
}

#[test]
fn refusing_every_connect_earns_nothing_for_refusing_some() {
    insta::assert_snapshot!(
        "defect_refuse_connect",
        defect(
            5,
            "refuse-connect",
            &["connect-tls", "port-policy", "block-connect", "chat-tunnel"]
        )
    );
}

#[test]
fn blocking_by_substring_costs_only_block_wildcard() {
    insta::assert_snapshot!(
        "defect_substring",
        defect(5, "substring", &["block-wildcard"])
    );
}

#[test]
fn caching_nothing_loses_every_caching_check() {
    let all: Vec<&str> = labs::lab(4).unwrap().checks.iter().map(|c| c.id).collect();
    insta::assert_snapshot!("defect_no_cache", defect(4, "no-cache", &all));
}

#[test]
fn evicting_first_in_first_out_costs_only_eviction() {
    insta::assert_snapshot!("defect_fifo", defect(4, "fifo", &["eviction"]));
}

#[test]
fn a_good_chat_server_scores_full_marks() {
    insta::assert_snapshot!("student_chat", graded_five_times(1, &student_chat(""), &[]));
}

#[test]
fn a_chat_server_without_a_greeting_loses_only_greeting() {
    insta::assert_snapshot!(
        "chat_no_greeting",
        graded_five_times(1, &student_chat("no-greeting"), &["greeting"])
    );
}

#[test]
fn a_chat_server_without_join_notices_loses_only_join_announced() {
    insta::assert_snapshot!(
        "chat_no_join",
        graded_five_times(1, &student_chat("no-join"), &["join-announced"])
    );
}

/// Issue 23, item 13: a program with a console loop on stdin waits on it, as at an idle
/// terminal, instead of spinning on end-of-file: it gets the tiny proxy's score, and what it
/// shows of its output is its own, not "EOF" a million times.
#[test]
fn a_console_loop_on_stdin_waits_instead_of_spinning() {
    let report = super::grade(2, &Subject::Command(python("console_proxy.py", "")));
    assert_eq!(report.score(), 60, "{}", report.table());
    // (Given /dev/null, each lost check showed five lines of "EOF".)
    let shown: Vec<&String> = report.outcomes.iter().flat_map(|o| &o.output).collect();
    assert!(shown.iter().all(|l| l.as_str() != "EOF"), "{shown:?}");
}

/// Issue 23, item 3: a server that prefixes relayed lines with the sender's address (as C
/// `select` and Go servers do) splits two lines in one write correctly; only `broadcast`
/// grades the "[NAME] text" format, so only `broadcast` is lost.
#[test]
fn a_chat_server_naming_senders_by_address_loses_only_broadcast() {
    insta::assert_snapshot!(
        "chat_address_prefix",
        graded_five_times(1, &student_chat("address-prefix"), &["broadcast"])
    );
}

/// Issue 23, item 4: a half line relayed at EOF, glued to the next message, is what
/// `vanish-mid-line` must not let through, even when that next message is the one it waits
/// for.
#[test]
fn a_chat_server_relaying_a_vanished_half_line_loses_vanish_mid_line() {
    insta::assert_snapshot!(
        "chat_relay_half_line",
        graded_five_times(1, &student_chat("relay-half-line"), &["vanish-mid-line"])
    );
}

#[test]
fn a_chat_server_relaying_disconnect_loses_only_disconnect() {
    insta::assert_snapshot!(
        "chat_relay_disconnect",
        graded_five_times(1, &student_chat("relay-disconnect"), &["disconnect"])
    );
}

#[test]
fn a_naive_chat_server_loses_the_checks_of_its_classic_mistakes() {
    // One recv() taken as one line, and a blocking broadcast under a lock.
    insta::assert_snapshot!(
        "naive_chat",
        graded_five_times(
            1,
            &python("naive_chat.py", ""),
            &["vanish-mid-line", "long-lines", "slow-reader"]
        )
    );
}

/// The C subject is what it claims to be: an empty connection (the old readiness probe)
/// kills it with SIGPIPE, so the grader must never open one.
#[test]
fn the_c_proxy_really_dies_of_an_empty_connection() {
    use std::os::unix::process::ExitStatusExt as _;
    let cmd = csapp_proxy();
    let port = labs::process::pick_port().unwrap();
    let mut child = std::process::Command::new("sh")
        .args([
            "-c",
            &format!("exec {}", cmd.replace("{port}", &port.to_string())),
        ])
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while labs::process::listening(port, None)
        != Some(labs::process::Listening::Yes { owned: None })
    {
        assert!(Instant::now() < deadline, "the C proxy never listened");
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(std::net::TcpStream::connect(("127.0.0.1", port)).unwrap());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the C proxy survived an empty connection");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(status.signal(), Some(13), "{status:?}"); // SIGPIPE
}
