//! Reports: the table a student reads, JSON for scripts, and Gradescope's results.json.

use crate::sandbox::Isolation;
use crate::{Outcome, Verdict};
use std::fmt::Write as _;
use std::time::Duration;

/// One lab run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub lab: u8,
    pub title: String,
    pub subject: String,
    /// Why no check could run (the subject cannot be graded), said once.
    pub aborted: Option<String>,
    pub outcomes: Vec<Outcome>,
    #[serde(skip)]
    pub elapsed: Duration,
    /// What the subject was graded under (`None`: nothing ran).
    pub isolation: Option<Isolation>,
}

/// [`Report::json`], read back (`grade-all` reads each grading's report).
#[derive(serde::Deserialize)]
struct Written {
    lab: u8,
    title: String,
    subject: String,
    aborted: Option<String>,
    checks: Vec<Outcome>,
    #[serde(default)]
    isolation: Option<Isolation>,
    #[serde(default)]
    seconds: f64,
}

/// How the table marks a verdict.
fn mark(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Passed => "PASS",
        Verdict::Failed => "FAIL",
        Verdict::NotJudged => "N/J ",
        Verdict::NotRun => "----",
    }
}

impl Report {
    pub fn score(&self) -> u32 {
        self.outcomes.iter().map(|o| o.points).sum()
    }

    pub fn max(&self) -> u32 {
        self.outcomes.iter().map(|o| o.max).sum()
    }

    /// Full marks (the `lab run` exit status is 0 only then).
    pub fn full_marks(&self) -> bool {
        self.outcomes.iter().all(Outcome::passed)
    }

    /// The table: one line per check, then for each lost check what happened, a hint, how
    /// to reproduce it and the subject's last output lines; then the total.
    pub fn table(&self) -> String {
        let mut out = format!(
            "Lab {}: {} — grading {}\n\n",
            self.lab, self.title, self.subject
        );
        if let Some(why) = &self.aborted {
            let _ = writeln!(out, "  No check could run: {why}\n");
        }

        let width = self.outcomes.iter().map(|o| o.id.len()).max().unwrap_or(0);
        for o in &self.outcomes {
            let _ = writeln!(
                out,
                "  {}  {:<width$}  {:>3}/{:<3}  {}",
                mark(o.verdict),
                o.id,
                o.points,
                o.max,
                o.proves
            );
        }
        let lost: Vec<&Outcome> = self
            .outcomes
            .iter()
            .filter(|o| matches!(o.verdict, Verdict::Failed | Verdict::NotJudged))
            .collect();
        for o in lost {
            out.push('\n');
            let verb = match o.verdict {
                Verdict::NotJudged => "not judged",
                _ => "failed",
            };
            let _ = writeln!(out, "  {} {verb}, {} point(s) lost:", o.id, o.max);
            if let Some(f) = &o.failure {
                let _ = writeln!(out, "    what happened: {f}");
            }
            if let Some(h) = &o.hint {
                let _ = writeln!(out, "    hint:          {h}");
            }
            if let Some(r) = &o.repro {
                let _ = writeln!(out, "    reproduce:     {r}");
            }
            if let Some(r) = &o.reproduce {
                let _ = writeln!(out, "    it ran:        {r}");
            }
            if !o.output.is_empty() {
                let _ = writeln!(out, "    your program's last output:");
                for line in &o.output {
                    let _ = writeln!(out, "      | {line}");
                }
            }
        }
        let count = |v: Verdict| self.outcomes.iter().filter(|o| o.verdict == v).count();
        let not_judged = match count(Verdict::NotJudged) {
            0 => String::new(),
            n => format!(", {n} not judged"),
        };
        let _ = writeln!(
            out,
            "\nTotal: {}/{} ({} of {} checks passed{not_judged}) in {:.1} s\n",
            self.score(),
            self.max(),
            count(Verdict::Passed),
            self.outcomes.len(),
            self.elapsed.as_secs_f64()
        );
        if let Some(isolation) = &self.isolation {
            out.push_str("Graded under:\n");
            for line in isolation.lines() {
                let _ = writeln!(out, "  {line}");
            }
            out.push('\n');
        }
        if count(Verdict::NotJudged) > 0 {
            out.push_str(
                "N/J: not judged. The ability the check builds on is missing; the check it\n\
                 names grades that ability, and is where to start.\n",
            );
        }
        if self.outcomes.iter().any(|o| o.repro.is_some()) {
            out.push_str(
                "`lab repro` runs one check again, keeps origin-sim and your program running,\n\
                 and prints the commands it ran with live ports to try by hand.\n",
            );
        }
        out
    }

    pub fn json(&self) -> String {
        serde_json::to_string_pretty(&serde_json::json!({
            "lab": self.lab,
            "title": self.title,
            "subject": self.subject,
            "aborted": self.aborted,
            "score": self.score(),
            "max_score": self.max(),
            "seconds": self.elapsed.as_secs_f64(),
            "isolation": self.isolation,
            "checks": self.outcomes,
        }))
        .unwrap_or_default()
    }

    /// Reads back what [`Report::json`] wrote.
    pub fn from_json(text: &str) -> Result<Report, String> {
        let w: Written = serde_json::from_str(text).map_err(|e| e.to_string())?;
        Ok(Report {
            lab: w.lab,
            title: w.title,
            subject: w.subject,
            aborted: w.aborted,
            outcomes: w.checks,
            elapsed: Duration::from_secs_f64(w.seconds.max(0.0)),
            isolation: w.isolation,
        })
    }
}

/// Gradescope's `results.json` for one or more labs: `score` and one entry per check.
pub fn gradescope(reports: &[Report]) -> String {
    let tests: Vec<serde_json::Value> = reports
        .iter()
        .flat_map(|r| {
            r.outcomes.iter().map(move |o| {
                let mut output = o.proves.clone();
                match (&r.aborted, o.verdict) {
                    (Some(why), Verdict::NotRun) => {
                        let _ = write!(output, "\nNot run: {why}");
                    }
                    _ => {
                        if let Some(f) = &o.failure {
                            let _ = write!(output, "\nWhat happened: {f}");
                        }
                    }
                }
                if let Some(h) = &o.hint {
                    let _ = write!(output, "\nHint: {h}");
                }
                if let Some(r) = &o.repro {
                    let _ = write!(
                        output,
                        "\nReproduce: {r}   (lab is bin/lab in the student kit, target/release/lab in the proxylab repository)"
                    );
                }
                if let Some(r) = &o.reproduce {
                    let _ = write!(output, "\nIt ran: {r}");
                }
                if !o.output.is_empty() {
                    let _ = write!(
                        output,
                        "\nYour program's last output:\n{}",
                        o.output.join("\n")
                    );
                }
                serde_json::json!({
                    "name": format!("lab{}: {}", r.lab, o.id),
                    "score": o.points,
                    "max_score": o.max,
                    "output": output,
                    "visibility": "visible",
                })
            })
        })
        .collect();
    let score: u32 = reports.iter().map(Report::score).sum();
    let mut said: Vec<String> = reports
        .iter()
        .filter_map(|r| {
            r.aborted
                .as_ref()
                .map(|why| format!("Lab {}: {why}", r.lab))
        })
        .collect();
    if let Some(isolation) = reports.iter().find_map(|r| r.isolation.as_ref()) {
        said.push(format!("Graded under:\n{}", isolation.lines().join("\n")));
    }
    let mut json = serde_json::json!({ "score": score, "tests": tests });
    if !said.is_empty() {
        json["output"] = serde_json::Value::String(said.join("\n\n"));
    }
    serde_json::to_string_pretty(&json).unwrap_or_default()
}
