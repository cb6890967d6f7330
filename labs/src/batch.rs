//! Batch grading: every submission in a folder, several at once, into `grades.csv` and one
//! report per student.
//!
//! Each subfolder is one student's submission (its name is the student's). Each is graded
//! by a `lab run N --submission DIR` of its own — a separate process, so a separate network
//! namespace (gradings side by side never meet on a port), a separate uid for its programs
//! when `lab` is root, and a private copy of the folder: a submission reads or changes
//! nothing of another's, and a misbehaving one changes only its own grade. That process
//! writes the student's report where no subject can reach (this grader's own folder) and
//! exits only once every program of the submission is gone; this one reads the report
//! after, and writes `grades.csv` last.

use crate::report::Report;
use crate::{Lab, Options, Verdict};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One student's result.
#[derive(Debug, Clone)]
pub struct Graded {
    pub student: String,
    pub report: Report,
    /// From the start of the build to the end of the last check.
    pub wall: Duration,
}

/// The submission folders in `dir`, by name.
pub fn submissions(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| !n.starts_with('.'))
        })
        .collect();
    found.sort();
    Ok(found)
}

/// How one grading is run: the `lab` binary, and the flags every grading shares.
#[derive(Debug, Clone)]
pub struct Grader {
    pub lab_binary: PathBuf,
    /// `--points FILE`, `--step …`, `--check-limit …`, `--sandbox-user …`.
    pub flags: Vec<String>,
}

/// Grading processes still running, for [`stop_all`].
static RUNNING: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());

/// Asks every grading still running to stop (SIGTERM: each ends its submission's programs
/// and exits), for the signal handler.
pub fn stop_all() {
    let running: Vec<u32> = RUNNING
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .drain(..)
        .collect();
    for pid in running {
        if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
    }
}

/// Grades one submission folder on `lab` with a `lab run` of its own; its report goes to
/// `work` (a folder of this grader's) and is read once that process has exited.
pub async fn grade_one(
    dir: &Path,
    lab: &Lab,
    grader: &Grader,
    options: &Options,
    work: &Path,
) -> Graded {
    let started = Instant::now();
    let student = dir.file_name().map_or_else(
        || dir.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let json = work.join(format!("{}.json", safe_name(&student)));
    let log = work.join(format!("{}.log", safe_name(&student)));
    let report = match run_one(dir, lab, grader, options, &json, &log).await {
        Ok(report) => report,
        Err(why) => crate::not_submitted(
            lab,
            &format!("the grader could not grade this submission: {why}"),
        ),
    };
    Graded {
        student,
        report,
        wall: started.elapsed(),
    }
}

async fn run_one(
    dir: &Path,
    lab: &Lab,
    grader: &Grader,
    options: &Options,
    json: &Path,
    log: &Path,
) -> Result<Report, String> {
    let _ = std::fs::remove_file(json);
    let output = crate::process::Output::new(Some(log), false).map_err(|e| e.to_string())?;
    use std::os::unix::process::CommandExt as _;
    let mut child = std::process::Command::new(&grader.lab_binary)
        .arg("run")
        .arg(lab.number.to_string())
        .arg("--submission")
        .arg(dir)
        .arg("--json")
        .arg(json)
        .args(&grader.flags)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("running {}: {e}", grader.lab_binary.display()))?;
    RUNNING
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(child.id());
    if let Some(out) = child.stdout.take() {
        output.drain(out);
    }
    if let Some(err) = child.stderr.take() {
        output.drain(err);
    }
    // A backstop behind the grading's own deadlines: its build and every check.
    let limit = crate::submission::BUILD_LIMIT
        + options.check_limit * (lab.checks.len() as u32 + 1)
        + Duration::from_secs(60);
    let deadline = tokio::time::Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if tokio::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "it did not finish within {}",
                crate::harness::secs(limit)
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let pid = child.id();
    RUNNING
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|&p| p != pid);
    let text = std::fs::read_to_string(json).map_err(|_| {
        format!(
            "`lab run` ended ({status}) without a report; its last output:\n{}",
            output.last_lines(10).join("\n")
        )
    })?;
    Report::from_json(&text)
}

/// Grades every submission in `dir` on lab `number` (points from `points`), `jobs` at a
/// time; `done` hears each student as they finish.
pub async fn grade_all(
    dir: &Path,
    number: u8,
    points: &crate::points::Points,
    jobs: usize,
    grader: &Grader,
    options: &Options,
    mut done: impl FnMut(&Graded),
) -> Result<Vec<Graded>, String> {
    let folders = submissions(dir)?;
    let lab = crate::all_labs_with(points)
        .into_iter()
        .find(|l| l.number == number)
        .ok_or_else(|| format!("there is no lab {number}"))?;
    let lab = Arc::new(lab);
    // Where the gradings write their reports: this grader's, 0700.
    let work = tempfile::Builder::new()
        .prefix("proxylab-grade-all-")
        .tempdir()
        .map_err(|e| e.to_string())?;
    let work_path = Arc::new(work.path().to_path_buf());
    let slots = Arc::new(tokio::sync::Semaphore::new(jobs.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, folder) in folders.into_iter().enumerate() {
        let (slots, options, grader, lab, work) = (
            slots.clone(),
            options.clone(),
            grader.clone(),
            lab.clone(),
            work_path.clone(),
        );
        tasks.spawn(async move {
            let _slot = slots.acquire_owned().await;
            (i, grade_one(&folder, &lab, &grader, &options, &work).await)
        });
    }
    let mut graded = Vec::new();
    while let Some(next) = tasks.join_next().await {
        if let Ok((i, g)) = next {
            done(&g);
            graded.push((i, g));
        }
    }
    graded.sort_by_key(|(i, _)| *i);
    Ok(graded.into_iter().map(|(_, g)| g).collect())
}

/// A student's name as a file name.
fn safe_name(student: &str) -> String {
    student
        .chars()
        .map(|c| if c == '/' || c == '\0' { '_' } else { c })
        .collect()
}

/// A CSV field, quoted when it must be (RFC 4180).
fn csv(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

/// `grades.csv`: a row per student with each check's points, the total, the maximum, the
/// wall time, and a note when the submission could not be graded.
pub fn grades_csv(lab: &Lab, graded: &[Graded]) -> String {
    let mut out = String::from("student");
    for check in &lab.checks {
        out.push(',');
        out.push_str(check.id);
    }
    out.push_str(",total,max,seconds,note\n");
    for g in graded {
        out.push_str(&csv(&g.student));
        for o in &g.report.outcomes {
            out.push_str(&format!(",{}", o.points));
        }
        let note = g.report.aborted.as_deref().unwrap_or_else(|| {
            if g.report
                .outcomes
                .iter()
                .any(|o| o.verdict == Verdict::NotJudged)
            {
                "some checks not judged"
            } else {
                ""
            }
        });
        let note = note.lines().next().unwrap_or("");
        out.push_str(&format!(
            ",{},{},{:.1},{}\n",
            g.report.score(),
            g.report.max(),
            g.wall.as_secs_f64(),
            csv(note)
        ));
    }
    out
}

/// Writes `grades.csv` and `reports/STUDENT.txt` and `.json` into `out`.
pub fn write(out: &Path, lab: &Lab, graded: &[Graded]) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(out.join("reports"))?;
    for g in graded {
        let name = safe_name(&g.student);
        std::fs::write(out.join(format!("reports/{name}.txt")), g.report.table())?;
        std::fs::write(out.join(format!("reports/{name}.json")), g.report.json())?;
    }
    let csv = out.join("grades.csv");
    std::fs::write(&csv, grades_csv(lab, graded))?;
    Ok(csv)
}

#[cfg(test)]
mod tests {
    use super::csv;

    #[test]
    fn csv_fields_are_quoted_only_when_they_must_be() {
        assert_eq!(csv("alice"), "alice");
        assert_eq!(csv("smith, j"), "\"smith, j\"");
        assert_eq!(csv("say \"hi\""), "\"say \"\"hi\"\"\"");
    }
}
