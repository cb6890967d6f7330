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

    #[allow(dead_code)]
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
