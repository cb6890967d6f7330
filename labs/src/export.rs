//! Files for graders elsewhere: GitHub Classroom and Gradescope autograders for one lab, and
//! the student kit. Every exported command grades the student's repository or submission
//! folder with `lab run N --submission DIR` ([`crate::submission`] says how it is found,
//! built and started), so the same convention holds everywhere.

use crate::Lab;
use std::path::{Path, PathBuf};

/// A file to write: where (relative to the export's root), what, and whether to make it
/// executable.
#[derive(Debug, Clone)]
pub struct File {
    pub path: PathBuf,
    pub text: Vec<u8>,
    pub executable: bool,
}

impl File {
    fn text(path: &str, text: impl Into<String>) -> File {
        File {
            path: PathBuf::from(path),
            text: text.into().into_bytes(),
            executable: false,
        }
    }

    fn script(path: &str, text: impl Into<String>) -> File {
        File {
            executable: true,
            ..File::text(path, text)
        }
    }
}

/// Writes `files` below `root` (creating folders); returns the paths written.
pub fn write(root: &Path, files: &[File]) -> std::io::Result<Vec<PathBuf>> {
    use std::os::unix::fs::PermissionsExt as _;
    let mut written = Vec::new();
    for f in files {
        let path = root.join(&f.path);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&path, &f.text)?;
        if f.executable {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        }
        written.push(path);
    }
    Ok(written)
}

/// How long GitHub Classroom lets one check run, in minutes: the check's own limit (60 s)
/// and the program's start, with room for a loaded runner.
pub const CLASSROOM_TIMEOUT_MINUTES: u32 = 3;

/// The command that runs check `id` of `lab` in a student's repository, from its root.
fn classroom_run(lab: &Lab, id: &str, lab_bin: &str) -> String {
    format!(
        "{lab_bin} run {} --submission . --no-build --only {id}",
        lab.number
    )
}

/// GitHub Classroom for one lab, in a student's repository: the legacy
/// `.github/classroom/autograding.json` (one test per check with its points; the first test
/// builds the submission once, the others skip the build) and the Actions workflow that
/// Classroom now generates, `.github/workflows/classroom.yml` (one build step, then one
/// graded step per check and the reporter). `lab_bin` is where `lab` is in the repository
/// (the student kit puts it in `bin/lab`).
pub fn classroom(lab: &Lab, lab_bin: &str) -> Vec<File> {
    let build = format!("{lab_bin} build --submission .");
    let tests: Vec<serde_json::Value> = lab
        .checks
        .iter()
        .enumerate()
        .map(|(i, check)| {
            serde_json::json!({
                "name": format!("lab{}: {}", lab.number, check.id),
                "setup": if i == 0 { build.clone() } else { String::new() },
                "run": classroom_run(lab, check.id, lab_bin),
                "input": "",
                "output": "",
                "comparison": "included",
                "timeout": CLASSROOM_TIMEOUT_MINUTES,
                "points": check.points,
            })
        })
        .collect();
    let json =
        serde_json::to_string_pretty(&serde_json::json!({ "tests": tests })).unwrap_or_default();

    let mut yaml = format!(
        "# GitHub Classroom autograding for lab {n} ({title}), written by `lab export classroom --lab {n}`.\n\
         # Each check is one graded step; the submission is built once, first (see proxylab.toml).\n\
         name: Autograding Tests\n\
         'on':\n- push\n- repository_dispatch\n\
         permissions:\n  checks: write\n  actions: read\n  contents: read\n\
         jobs:\n  run-autograding-tests:\n    runs-on: ubuntu-latest\n    if: github.actor != 'github-classroom[bot]'\n    steps:\n\
         \x20   - name: Checkout code\n      uses: actions/checkout@v4\n\
         \x20   - name: Build the submission\n      run: {build}\n",
        n = lab.number,
        title = lab.title,
    );
    for check in &lab.checks {
        yaml.push_str(&format!(
            "    - name: {id}\n      id: {id}\n      uses: classroom-resources/autograding-command-grader@v1\n      with:\n        test-name: {id}\n        setup-command: ''\n        command: {cmd}\n        timeout: {t}\n        max-score: {p}\n",
            id = check.id,
            cmd = classroom_run(lab, check.id, lab_bin),
            t = CLASSROOM_TIMEOUT_MINUTES,
            p = check.points,
        ));
    }
    yaml.push_str("    - name: Autograding Reporter\n      uses: classroom-resources/autograding-grading-reporter@v1\n      env:\n");
    for check in &lab.checks {
        yaml.push_str(&format!(
            "        {}_RESULTS: \"${{{{steps.{}.outputs.result}}}}\"\n",
            check.id.to_ascii_uppercase(),
            check.id
        ));
    }
    let runners: Vec<&str> = lab.checks.iter().map(|c| c.id).collect();
    yaml.push_str(&format!(
        "      with:\n        runners: {}\n",
        runners.join(",")
    ));
    vec![
        File::text(".github/classroom/autograding.json", json),
        File::text(".github/workflows/classroom.yml", yaml),
    ]
}

/// Gradescope's autograder for one lab, as a folder to zip and upload: `setup.sh` (run once
/// when Gradescope builds its image), `run_autograder` (run per submission: grades
/// `/autograder/submission` with `lab run N --submission` into
/// `/autograder/results/results.json`, and writes a zero score with the reason if `lab`
/// itself cannot run), the `lab` binary, the points table in use, and a README for the
/// instructor. `AUTOGRADER_ROOT` replaces `/autograder` (for trying it outside Gradescope).
pub fn gradescope(lab: &Lab, lab_binary: &Path, points_toml: &str) -> std::io::Result<Vec<File>> {
    let n = lab.number;
    let setup = String::from(
        r#"#!/usr/bin/env bash
# Gradescope runs this once, as root, while it builds the autograder's image (Ubuntu).
# It installs what students' programs commonly need to build and run; add your course's
# languages here (e.g. default-jdk-headless, golang).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends python3 make gcc g++ libc6-dev ca-certificates
chmod +x /autograder/source/lab
/autograder/source/lab --version
# Which of the sandbox's protections this image allows (the build log keeps it).
/autograder/source/lab doctor || true
"#,
    );
    let run = format!(
        r#"#!/usr/bin/env bash
# Gradescope runs this for every submission, as root: the student's files are in
# $ROOT/submission, and the grade goes to $ROOT/results/results.json.
# proxylab lab {n} ({title}); written by `lab export gradescope --lab {n}`.
#
# What the student's code cannot do here: it runs (build and program) in lab's sandbox,
# as an unprivileged user of its own, from a private copy of the submission, in a network
# namespace with only loopback, with Landlock keeping it out of $ROOT/source and
# $ROOT/results; everything it starts ends before lab writes results.json, once, last.
# The whole script is one {{ ...; exit; }} block: bash reads all of it before running any
# of it, so rewriting this file while it runs would change nothing.
{{
ROOT="${{AUTOGRADER_ROOT:-/autograder}}"
RESULTS="$ROOT/results/results.json"
mkdir -p "$ROOT/results"
rm -f "$RESULTS"
# Only root reads the grader, its points and the results.
chmod -R go-rwx "$ROOT/source" "$ROOT/results" 2>/dev/null
cd "$ROOT/submission" || exit 1
"$ROOT/source/lab" run {n} --submission . \
    --points "$ROOT/source/points.toml" \
    --gradescope "$RESULTS" 2>&1 | tail -c 200000
if [ ! -s "$RESULTS" ]; then
  # lab itself could not run: say so rather than leave Gradescope without a result.
  cat > "$RESULTS" <<'JSON'
{{"score": 0, "output": "The autograder could not run the grader (lab): see the autograder's log. Your submission was not graded; tell your instructor."}}
JSON
fi
exit 0
}}
"#,
        title = lab.title
    );
    let readme = format!(
        r#"# proxylab lab {n} ({title}): a Gradescope autograder

Zip the files of this folder (not the folder itself) and upload the zip as a
"Programming Assignment" autograder on Gradescope (base image: Ubuntu):

```sh
cd THIS_FOLDER && zip -r ../proxylab-lab{n}-autograder.zip .
```

- `setup.sh` runs once while Gradescope builds the image: it installs python3, make and a C
  compiler. Add what your course's languages need.
- `run_autograder` runs for every submission: `lab run {n} --submission
  /autograder/submission`, writing `/autograder/results/results.json` (one test per check,
  with what happened, a hint, and the `lab repro` command a student can run with the kit).
- `lab` is the grader, built without the reference proxy (a submission cannot hand its
  requests to it) and stripped, on the machine that exported this folder. It needs that
  machine's glibc symbols or older (a build on Debian 12 needs glibc 2.34; Gradescope's
  Ubuntu 22.04 image has 2.35): if `setup.sh` stops at `lab --version`, export again from
  an older machine, or build `lab` there with `cargo build --release -p labs`.
- `points.toml` is the points per check this autograder grades with (edit and re-zip to
  change them; a check it does not name keeps its built-in points).

## What a submission cannot do

Every program of the submission (its build, and its program in every check) runs in
lab's sandbox: its own PID namespace (whatever it starts, `setsid` or not, ends with the
check), as an unprivileged uid of its own (Gradescope runs everything as root), from a
private copy of the submission, in a network namespace with only loopback, with Landlock
letting it read system paths and its copy and write its copy only (not `lab`, not
`points.toml`, not `results/`, not `run_autograder`), and with limits on processes,
memory, CPU time and disk. A submission that runs proxylab's own programs (origin-sim's
chat room, the reference proxy) or an off-the-shelf proxy is refused. `results.json` is
written once, by lab, after every program of the submission is gone; each test's output
ends with what the grading ran under. Which protections an image allows depends on how it
runs containers: `setup.sh` ends with `lab doctor`, so the image's build log says, and
results.json names what was missing ("partial: …") for every submission.

## What students hand in

Their files at the top of the submission, and either a `proxylab.toml`:

```toml
build = "make"                  # optional: run once before grading
proxy = "./myproxy {{port}}"     # labs 2-5 ({{rules}} and {{log}} for lab 5)
chat = "python3 chat.py {{port}}" # lab 1
```

or programs named by the convention: a Makefile is built with `make` (a Cargo.toml with
`cargo build --release`), and the program is the first of `./myproxy`, `./proxy`,
`./target/release/myproxy`, `myproxy.py`, `proxy.py` (lab 1: `./chat`, `chat.py`). Lab 5
passes `--blacklist {{rules}} --log {{log}}` after the port unless `proxylab.toml` says
otherwise. Everything runs from the submission's folder, offline, on 127.0.0.1.

Try it before uploading, with a folder laid out as Gradescope's:

```sh
mkdir -p /tmp/gs/submission && cp -r . /tmp/gs/source && cp -r MY_SAMPLE/. /tmp/gs/submission
AUTOGRADER_ROOT=/tmp/gs /tmp/gs/source/run_autograder && cat /tmp/gs/results/results.json
```
"#,
        title = lab.title
    );
    Ok(vec![
        File::script("setup.sh", setup),
        File::script("run_autograder", run),
        File::text("README.md", readme),
        File::text("points.toml", points_toml),
        File {
            path: PathBuf::from("lab"),
            text: std::fs::read(lab_binary)?,
            executable: true,
        },
    ])
}

/// The points table of `lab` as `labs/points.toml` writes it (what an export grades with).
pub fn points_toml(lab: &Lab) -> String {
    let mut out = format!(
        "# Points per check of lab {} (the form of proxylab's labs/points.toml).\n[lab{}]\n",
        lab.number, lab.number
    );
    for check in &lab.checks {
        out.push_str(&format!("{} = {}\n", check.id, check.points));
    }
    out
}

/// The handouts, as the student kit ships them.
pub const HANDOUTS: [(&str, &str); 6] = [
    (
        "handouts/grading.md",
        include_str!("../handouts/grading.md"),
    ),
    ("handouts/lab1.md", include_str!("../handouts/lab1.md")),
    ("handouts/lab2.md", include_str!("../handouts/lab2.md")),
    ("handouts/lab3.md", include_str!("../handouts/lab3.md")),
    ("handouts/lab4.md", include_str!("../handouts/lab4.md")),
    ("handouts/lab5.md", include_str!("../handouts/lab5.md")),
];

const KIT_MAKEFILE: &str = r#"# proxylab student kit: build your programs here and grade them offline.
# Your proxy and chat server live in this folder (see README.md: proxylab.toml, or the
# names the convention looks for). `make lab2` grades lab 2, and so on.
SHELL := /bin/bash
LAB := bin/lab
.PHONY: help lab1 lab2 lab3 lab4 lab5 grade repro origin build

help: ## List the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s "$$(printf '\t')"

build: ## Build your programs as the grader will (proxylab.toml's build, or make/cargo)
	$(LAB) build --submission .

lab1: ## Lab 1, a chat server
	$(LAB) run 1 --submission .
lab2: ## Lab 2, forwarding
	$(LAB) run 2 --submission .
lab3: ## Lab 3, concurrency
	$(LAB) run 3 --submission .
lab4: ## Lab 4, caching
	$(LAB) run 4 --submission .
lab5: ## Lab 5, HTTPS tunnels and filtering
	$(LAB) run 5 --submission .

LABS ?= 1,2,3,4,5
grade: ## Every lab (LABS=2,3 for some); writes results.json
	$(LAB) grade --labs $(LABS) --submission . --gradescope results.json

# make repro LAB_N=2 CHECK=keep-alive
repro: ## Run one check again and keep everything up: make repro LAB_N=2 CHECK=keep-alive
	$(LAB) repro $(LAB_N) $(CHECK) --submission .

origin: ## origin-sim on fixed ports, to try your programs by hand (Ctrl-C stops it)
	bin/origin-sim --http 127.0.0.1:9000 --tls 127.0.0.1:9443 --ca-out origin-sim-ca.pem --echo 127.0.0.1:9007 --chat 127.0.0.1:9009
"#;

const KIT_TOML: &str = r#"# How the grader builds and starts your programs. Every line is optional: without this
# file, the grader looks for ./myproxy, ./proxy, ./target/release/myproxy, myproxy.py or
# proxy.py (and ./chat or chat.py for lab 1), and builds with `make` when there is a
# Makefile. {port} is the port to listen on (127.0.0.1); lab 5 adds {rules} (the blacklist
# file) and {log} (the access log). Commands run from a private copy of this folder, in the
# grader's sandbox (handouts/grading.md says what that allows).
#
# build = "make"
# proxy = "python3 myproxy.py {port} --blacklist {rules} --log {log}"
# chat = "python3 chat.py {port}"
"#;

fn kit_readme() -> String {
    let mut labs = String::new();
    for lab in crate::all_labs() {
        labs.push_str(&format!(
            "| {} | {} | `make lab{}` | [handouts/lab{}.md](handouts/lab{}.md) |\n",
            lab.number, lab.title, lab.number, lab.number, lab.number
        ));
    }
    format!(
        r#"# proxylab: the student kit

Five labs on sockets and HTTP proxies, graded offline on your own machine by the same grader
your course uses. You write the programs; everything else is here:

| lab | topic | grade it | handout |
|---|---|---|---|
{labs}
- `bin/lab` — the grader. `make labN` runs `bin/lab run N --submission .`: it builds your
  program, starts it on a free port, runs the lab's checks against it and explains every
  lost point. `bin/lab --help` says more; [handouts/grading.md](handouts/grading.md) says
  how it treats your program (readiness, output, deadlines, "not judged", `lab repro`, and
  the sandbox it runs in: its own processes, loopback only, its own folder, limits).
- `bin/origin-sim` — the web server (and echo server, and chat room) the labs use. `make
  origin` starts it on fixed ports so you can try your program by hand with curl.
- `bin/client` — fetch, chat, echo and load through a proxy (`bin/client --help`).
- `starter/` — a Rust starter that compiles with the standard library alone (write in any
  language you like: Python, C, Java, Go… all work).
- `proxylab.toml` — how the grader builds and starts your programs (commented; without it,
  a convention: `myproxy.py`, `proxy.py`, `./myproxy` … and `chat.py` for lab 1).

## Start

```sh
cp my_first_proxy.py myproxy.py      # or write it here
make lab2                            # grade it: what passed, what failed, and why
make repro LAB_N=2 CHECK=keep-alive  # run one check again and keep everything up
```

Put your files in this folder (or set the commands in `proxylab.toml`), and hand in the
folder as your course says.
"#
    )
}

/// The student kit: the handouts, the starter, `lab`, `origin-sim` and `client` binaries,
/// a Makefile that grades the folder it is in, a commented `proxylab.toml` and a README —
/// and no reference proxy, source or binary (`lab_binary` should be a `lab` built without
/// the `reference` feature, as `make student-kit` does).
pub fn student_kit(
    lab_binary: &Path,
    origin_sim: &Path,
    client: &Path,
) -> std::io::Result<Vec<File>> {
    let binary = |path: &str, from: &Path| -> std::io::Result<File> {
        Ok(File {
            path: PathBuf::from(path),
            text: std::fs::read(from)
                .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", from.display())))?,
            executable: true,
        })
    };
    let mut files = vec![
        binary("bin/lab", lab_binary)?,
        binary("bin/origin-sim", origin_sim)?,
        binary("bin/client", client)?,
        File::text("Makefile", KIT_MAKEFILE),
        File::text("proxylab.toml", KIT_TOML),
        File::text("README.md", kit_readme()),
        File::text(
            "starter/Cargo.toml",
            include_str!("../starter/Cargo.toml.txt"),
        ),
        File::text(
            "starter/src/main.rs",
            include_str!("../starter/main.rs.txt"),
        ),
    ];
    files.extend(HANDOUTS.iter().map(|(path, text)| File::text(path, *text)));
    Ok(files)
}
