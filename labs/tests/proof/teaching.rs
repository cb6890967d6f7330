//! What a course runs, run as the course would: the GitHub Classroom export in a scratch
//! repository laid out as a student's, the Gradescope autograder in a folder laid out as
//! Gradescope's, batch grading of a folder of submissions, and the student kit.

use std::path::{Path, PathBuf};

use super::subjects;

/// The `lab` a course ships: built without the reference proxy, as `make grader` builds it
/// (into the target folder's `student/`; `make test` builds it first, so this is quick).
pub(crate) fn grader_lab() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let target = assert_cmd::cargo::cargo_bin("lab")
                .parent()
                .and_then(Path::parent)
                .unwrap()
                .join("student");
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let out = std::process::Command::new(cargo)
                .args(["build", "--offline", "-q", "-p", "labs", "--bin", "lab"])
                .args(["--no-default-features", "--target-dir"])
                .arg(&target)
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "building lab without the reference: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            target.join("debug/lab")
        })
        .clone()
}

/// A student repository as the kit lays it out: `bin/lab`, and the tiny Python proxy as
/// `proxy.py` (found by the convention).
fn student_repo(root: &Path) {
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy(assert_cmd::cargo::cargo_bin("lab"), root.join("bin/lab")).unwrap();
    std::fs::copy(subjects().join("tiny_proxy.py"), root.join("proxy.py")).unwrap();
}

/// Runs `command` with `sh -c` in `dir`; whether it succeeded.
fn sh(dir: &Path, command: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", command])
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success()
}

use super::TINY_FAILS;

#[test]
fn the_classroom_export_runs_from_the_repository_root_and_passes_and_fails_correctly() {
    let repo = tempfile::tempdir().unwrap();
    student_repo(repo.path());
    let out = std::process::Command::new(assert_cmd::cargo::cargo_bin("lab"))
        .args(["export", "classroom", "--lab", "2", "--out"])
        .arg(repo.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo.path().join(".github/classroom/autograding.json")).unwrap(),
    )
    .unwrap();
    let tests = json["tests"].as_array().unwrap();
    let lab = labs::lab(2).unwrap();
    assert_eq!(tests.len(), lab.checks.len());
    let points: u64 = tests.iter().map(|t| t["points"].as_u64().unwrap()).sum();
    assert_eq!(points, 100);
    // One build, in the first test's setup; every test runs from the repository's root.
    assert_eq!(tests[0]["setup"], "bin/lab build --submission .");
    assert!(tests[1..].iter().all(|t| t["setup"] == ""));
    assert!(tests.iter().all(|t| t["timeout"] == 3));
    assert!(sh(repo.path(), tests[0]["setup"].as_str().unwrap()));
    for (test, check) in tests.iter().zip(&lab.checks) {
        let run = test["run"].as_str().unwrap();
        assert_eq!(
            run,
            format!(
                "bin/lab run 2 --submission . --no-build --only {}",
                check.id
            )
        );
        let passed = sh(repo.path(), run);
        assert_eq!(
            passed,
            !TINY_FAILS.contains(&check.id),
            "{run} {}",
            if passed { "passed" } else { "failed" }
        );
    }
    // The workflow Classroom runs: the same commands, a build first, the reporter last.
    let yaml =
        std::fs::read_to_string(repo.path().join(".github/workflows/classroom.yml")).unwrap();
    assert!(
        yaml.contains("run: bin/lab build --submission .\n"),
        "{yaml}"
    );
    for check in &lab.checks {
        assert!(yaml.contains(&format!(
            "command: bin/lab run 2 --submission . --no-build --only {}\n",
            check.id
        )));
        assert!(yaml.contains(&format!("max-score: {}\n", check.points)));
    }
    assert!(
        yaml.contains("runners: get-small,get-large-binary,"),
        "{yaml}"
    );
}

/// Exports lab 2's Gradescope autograder into `root/source`, puts `files` in
/// `root/submission`, and runs `run_autograder` as Gradescope would; returns results.json.
fn gradescope_run(root: &Path, submission: &[(&str, &str)]) -> serde_json::Value {
    let source = root.join("source");
    let out = std::process::Command::new(assert_cmd::cargo::cargo_bin("lab"))
        .args(["export", "gradescope", "--lab", "2"])
        .arg(&source)
        .arg("--lab-binary")
        .arg(grader_lab())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sub = root.join("submission");
    std::fs::create_dir_all(&sub).unwrap();
    for (name, text) in submission {
        std::fs::write(sub.join(name), text).unwrap();
    }
    let status = std::process::Command::new(source.join("run_autograder"))
        .env("AUTOGRADER_ROOT", root)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    serde_json::from_str(&std::fs::read_to_string(root.join("results/results.json")).unwrap())
        .unwrap()
}

#[test]
fn the_gradescope_autograder_grades_a_submission_in_a_gradescope_shaped_folder() {
    let root = tempfile::tempdir().unwrap();
    let tiny = std::fs::read_to_string(subjects().join("tiny_proxy.py")).unwrap();
    // The submission says how to start it.
    let results = gradescope_run(
        root.path(),
        &[
            ("student.py", &tiny),
            ("proxylab.toml", "proxy = \"python3 student.py {port}\"\n"),
        ],
    );
    assert_eq!(results["score"], 60, "{results}");
    let tests = results["tests"].as_array().unwrap();
    assert_eq!(tests.len(), 15);
    let head = tests.iter().find(|t| t["name"] == "lab2: head").unwrap();
    assert_eq!(head["score"], 0);
    let output = head["output"].as_str().unwrap();
    assert!(
        output.contains(
            "Reproduce: lab repro 2 head --submission .   (lab is bin/lab in the student kit"
        ),
        "{output}"
    );
    for file in [
        "setup.sh",
        "run_autograder",
        "README.md",
        "points.toml",
        "lab",
    ] {
        assert!(root.path().join("source").join(file).exists(), "{file}");
    }
}

#[test]
fn a_submission_whose_build_fails_gets_zero_with_the_reason_not_an_autograder_error() {
    let root = tempfile::tempdir().unwrap();
    let results = gradescope_run(
        root.path(),
        &[(
            "Makefile",
            "all:\n\t@echo 'proxy.c:3: error: expected ;'; exit 1\n",
        )],
    );
    assert_eq!(results["score"], 0, "{results}");
    let first = results["tests"][0]["output"].as_str().unwrap();
    assert!(first.contains("the build \"make\" failed"), "{first}");
    assert!(first.contains("proxy.c:3: error: expected ;"), "{first}");
}

/// Three submissions, graded at once: a tiny proxy, a good one, and one that listens and
/// never answers. Each gets its own score, the hanging one costs only its own.
#[test]
fn grade_all_grades_a_folder_of_submissions_into_a_csv() {
    let dir = tempfile::tempdir().unwrap();
    let subs = dir.path().join("submissions");
    for (student, files) in [
        ("alice", vec![("proxy.py", "tiny_proxy.py")]),
        ("bob", vec![("myproxy.py", "student_proxy.py")]),
    ] {
        std::fs::create_dir_all(subs.join(student)).unwrap();
        for (name, from) in files {
            std::fs::copy(subjects().join(from), subs.join(student).join(name)).unwrap();
        }
    }
    std::fs::create_dir_all(subs.join("carol, jr")).unwrap();
    std::fs::write(
        subs.join("carol, jr/proxylab.toml"),
        "proxy = \"python3 -c 'import socket,sys,time; s=socket.socket(); s.bind((\\\"127.0.0.1\\\", int(sys.argv[1]))); s.listen(); time.sleep(600)' {port}\"\n",
    )
    .unwrap();
    let out = dir.path().join("grades");
    let run = std::process::Command::new(assert_cmd::cargo::cargo_bin("lab"))
        .args(["grade-all"])
        .arg(&subs)
        .args(["--lab", "2", "--jobs", "3", "--step", "1s", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let csv = std::fs::read_to_string(out.join("grades.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    assert!(
        rows[0].starts_with("student,get-small,get-large-binary,head,"),
        "{csv}"
    );
    assert!(rows[0].ends_with(",total,max,seconds,note"), "{csv}");
    assert_eq!(rows.len(), 4, "{csv}");
    let total = |row: &str| -> (String, u32) {
        let fields: Vec<&str> = row.split(',').collect();
        let student = match row.strip_prefix('"') {
            Some(rest) => rest[..rest.find('"').unwrap()].to_string(),
            None => fields[0].to_string(),
        };
        // total is the fourth field from the end (total, max, seconds, note)
        (student, fields[fields.len() - 4].parse().unwrap())
    };
    assert_eq!(total(rows[1]), ("alice".into(), 60));
    assert_eq!(total(rows[2]), ("bob".into(), 100));
    assert_eq!(total(rows[3]), ("carol, jr".into(), 0));
    for student in ["alice", "bob", "carol, jr"] {
        assert!(out.join(format!("reports/{student}.txt")).exists());
        assert!(out.join(format!("reports/{student}.json")).exists());
    }
    let carol = std::fs::read_to_string(out.join("reports/carol, jr.txt")).unwrap();
    assert!(carol.contains("no response head within 1 s"), "{carol}");
}

/// The kit holds what a student needs and none of the reference; its Makefile grades the
/// folder it is in.
#[test]
fn the_student_kit_grades_its_own_folder_and_holds_no_reference() {
    let dir = tempfile::tempdir().unwrap();
    // Stand-ins for origin-sim and client (only their place in the kit is checked here).
    let bins = dir.path().join("bins");
    std::fs::create_dir_all(&bins).unwrap();
    for name in ["origin-sim", "client"] {
        std::fs::write(bins.join(name), "#!/bin/sh\n").unwrap();
    }
    let kit = dir.path().join("kit");
    let out = std::process::Command::new(assert_cmd::cargo::cargo_bin("lab"))
        .args(["export", "student-kit"])
        .arg(&kit)
        .arg("--bin-dir")
        .arg(&bins)
        .arg("--lab-binary")
        .arg(grader_lab())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for file in [
        "bin/lab",
        "bin/origin-sim",
        "bin/client",
        "Makefile",
        "README.md",
        "proxylab.toml",
        "starter/Cargo.toml",
        "starter/src/main.rs",
        "handouts/grading.md",
        "handouts/lab1.md",
        "handouts/lab5.md",
    ] {
        assert!(kit.join(file).exists(), "{file}");
    }
    // No reference: no proxy sources or binary, and nothing points into them.
    let mut stack = vec![kit.clone()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            assert!(
                name != "proxy" && name != "src" || path.ends_with("starter/src"),
                "{}",
                path.display()
            );
            if path.is_dir() {
                stack.push(path);
            } else if name.ends_with(".md") {
                let text = std::fs::read_to_string(&path).unwrap();
                assert!(
                    !text.contains("proxy/src"),
                    "{} points into the reference",
                    path.display()
                );
            }
        }
    }
    // Its lab is the one without the reference, by what the binary is, not its name.
    assert_eq!(
        labs::sandbox::identity::mark_of_file(&kit.join("bin/lab")).as_deref(),
        Some("lab")
    );
    // A student's program in the kit's folder, graded by the kit's Makefile.
    std::fs::copy(subjects().join("tiny_proxy.py"), kit.join("proxy.py")).unwrap();
    let out = std::process::Command::new("make")
        .arg("-s")
        .arg("-C")
        .arg(&kit)
        .arg("lab2")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("Total: 60/100"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("python3 proxy.py {port}"), "{stdout}");
}

/// Runs `lab` with `args` and returns its stdout (success or not).
fn lab(args: &[&str]) -> String {
    let out = std::process::Command::new(assert_cmd::cargo::cargo_bin("lab"))
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Opens `page` in headless Chromium: takes a screenshot (returned as PNG bytes) and
/// returns what the page wrote to the console. Chromium is a test dependency: .ci/run
/// installs it (Debian's `chromium`).
fn chromium(page: &Path, shot: &Path) -> (Vec<u8>, String) {
    let profile = tempfile::tempdir().unwrap();
    let out = std::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1200,2000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("the HTML report's test needs chromium (apt-get install chromium; .ci/run does)");
    let console: String = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.contains("CONSOLE") || l.contains("Uncaught"))
        .map(|l| format!("{l}\n"))
        .collect();
    (std::fs::read(shot).unwrap_or_default(), console)
}

#[test]
fn the_html_report_shows_each_lost_checks_exchange_and_renders_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("lab2.html");
    let tiny = format!(
        "python3 {} {{port}}",
        subjects().join("tiny_proxy.py").display()
    );
    lab(&["run", "2", "--cmd", &tiny, "--html", page.to_str().unwrap()]);
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("<span class=score>60/100</span>"));
    // It names what the program was graded under, as every report does.
    assert!(
        html.contains("<h2>Graded under</h2><ul class=sub><li>processes: "),
        "{html}"
    );
    // Self-contained: no scripts, nothing loaded from anywhere.
    for banned in ["<script", " src=", "<link", "@import", "url("] {
        assert!(!html.contains(banned), "{banned}");
    }
    // The head check's exchange: what the grader sent, what the origin received (the
    // prerequisite GET, as the tiny proxy rewrote it), what came back.
    let head = &html[html.find("<div class=lost id=\"head\">").unwrap()..];
    let head = &head[..head[1..]
        .find("<div class=lost")
        .map_or(head.len(), |i| i + 1)];
    assert!(head.contains("→ #3 HEAD http://127.0.0.1:"), "{head}");
    assert!(
        head.contains("→ #2 GET /text/100?lab=single-get HTTP/1.0"),
        "{head}"
    );
    assert!(head.contains("← #3 HTTP/1.1 501 Not Implemented"), "{head}");
    assert!(head.contains("lab repro 2 head --cmd"), "{head}");

    // A relay that changes one byte: the first differing byte is marked.
    let flip = format!(
        "python3 {} {{port}} --defect flip-byte",
        subjects().join("student_proxy.py").display()
    );
    let page2 = dir.path().join("flip.html");
    lab(&[
        "run",
        "2",
        "--only",
        "get-large-binary",
        "--cmd",
        &flip,
        "--html",
        page2.to_str().unwrap(),
    ]);
    let html2 = std::fs::read_to_string(&page2).unwrap();
    assert!(html2.contains("first difference at byte 4242"), "{html2}");
    assert!(html2.contains("The body, from byte 4210:"), "{html2}");
    assert_eq!(html2.matches("<pre class=diff>").count(), 2);
    // Byte 4242 of the seeded body is 0x60 ("`"); the relay sent 0x60 ^ 0xff.
    assert!(html2.contains("<b>`</b>"), "{html2}");
    assert!(html2.contains("<b>\\x9f</b>"), "{html2}");

    // Lab 3's sweep as a plot, the student beside the reference.
    let good = format!(
        "python3 {} {{port}}",
        subjects().join("student_proxy.py").display()
    );
    let page3 = dir.path().join("lab3.html");
    lab(&[
        "run",
        "3",
        "--cmd",
        &good,
        "--html",
        page3.to_str().unwrap(),
    ]);
    let html3 = std::fs::read_to_string(&page3).unwrap();
    assert!(html3.contains("Concurrency sweep"), "{html3}");
    assert_eq!(html3.matches("<polyline").count(), 2, "{html3}");

    // In a real browser: it renders, and says nothing on the console.
    for p in [&page, &page3] {
        let (png, console) = chromium(p, &dir.path().join("shot.png"));
        assert!(
            png.starts_with(b"\x89PNG") && png.len() > 20_000,
            "{} bytes",
            png.len()
        );
        assert!(console.is_empty(), "{console}");
    }
}
