//! Batch grading: every submission in a folder, several at once, into `grades.csv` and one
//! report per student.
//!
//! Each subfolder is one student's submission (its name is the student's), found, built and
//! started as [`crate::submission`] says. Submissions are graded `jobs` at a time; each
//! check of each one has its own origin, ports, temporary files and process group, so a
//! submission that hangs or crashes costs its own score only (every step has a deadline).

use crate::report::Report;
use crate::submission::Submission;
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

/// Grades one submission folder on `lab`: build, then every check.
pub async fn grade_one(dir: &Path, lab: &Lab, options: &Options) -> Graded {
    let started = Instant::now();
    let student = dir.file_name().map_or_else(
        || dir.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let prepared = match Submission::find(dir) {
        Err(e) => Err(format!("not submitted: {e}")),
        Ok(sub) => match sub.build().await {
            Err(e) => Err(e),
            Ok(()) => sub.command(lab).ok_or_else(|| {
                format!(
                    "not submitted: no program for lab {} in {}",
                    lab.number,
                    dir.display()
                )
            }),
        },
    };
    let report = match prepared {
        Ok(cmd) => {
            let subject = crate::harness::Subject::Command(cmd);
            crate::run_lab(lab, &subject, None, options, |_, _, _| {}).await
        }
        Err(why) => crate::not_submitted(lab, &why),
    };
    Graded {
        student,
        report,
        wall: started.elapsed(),
    }
}

/// Grades every submission in `dir` on lab `number` (points from `points`), `jobs` at a
/// time; `done` hears each student as they finish.
pub async fn grade_all(
    dir: &Path,
    number: u8,
    points: &crate::points::Points,
    jobs: usize,
    options: &Options,
    mut done: impl FnMut(&Graded),
) -> Result<Vec<Graded>, String> {
    let folders = submissions(dir)?;
    let lab_of = move |points: &crate::points::Points| {
        crate::all_labs_with(points)
            .into_iter()
            .find(|l| l.number == number)
    };
    if lab_of(points).is_none() {
        return Err(format!("there is no lab {number}"));
    }
    let slots = Arc::new(tokio::sync::Semaphore::new(jobs.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, folder) in folders.into_iter().enumerate() {
        let (slots, options, points) = (slots.clone(), options.clone(), points.clone());
        tasks.spawn(async move {
            let _slot = slots.acquire_owned().await;
            let lab = lab_of(&points)?;
            Some((i, grade_one(&folder, &lab, &options).await))
        });
    }
    let mut graded = Vec::new();
    while let Some(next) = tasks.join_next().await {
        if let Ok(Some((i, g))) = next {
            done(&g);
            graded.push((i, g));
        }
    }
    graded.sort_by_key(|(i, _)| *i);
    Ok(graded.into_iter().map(|(_, g)| g).collect())
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
        let name: String = g
            .student
            .chars()
            .map(|c| if c == '/' || c == '\0' { '_' } else { c })
            .collect();
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
