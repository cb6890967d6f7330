//! Reports: the table a student reads, JSON for scripts, and Gradescope's results.json.

use crate::Outcome;
use std::fmt::Write as _;
use std::time::Duration;

/// One lab run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub lab: u8,
    pub title: String,
    pub subject: String,
    pub outcomes: Vec<Outcome>,
    #[serde(skip)]
    pub elapsed: Duration,
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

    /// The table: one line per check, then for each failure what happened, a hint and a
    /// command to reproduce it; then the total.
    pub fn table(&self) -> String {
        let mut out = format!(
            "Lab {}: {} — grading {}\n\n",
            self.lab, self.title, self.subject
        );
        let width = self.outcomes.iter().map(|o| o.id.len()).max().unwrap_or(0);
        for o in &self.outcomes {
            let mark = if o.passed() { "PASS" } else { "FAIL" };
            let _ = writeln!(
                out,
                "  {mark}  {:<width$}  {:>3}/{:<3}  {}",
                o.id, o.points, o.max, o.proves
            );
        }
        let failures: Vec<&Outcome> = self.outcomes.iter().filter(|o| !o.passed()).collect();
        if !failures.is_empty() {
            out.push('\n');
        }
        for o in failures {
            let _ = writeln!(out, "  {} lost {} point(s):", o.id, o.max);
            if let Some(f) = &o.failure {
                let _ = writeln!(out, "    what happened: {f}");
            }
            if let Some(h) = &o.hint {
                let _ = writeln!(out, "    hint:          {h}");
            }
            if let Some(r) = &o.reproduce {
                let _ = writeln!(out, "    reproduce:     {r}");
            }
        }
        let _ = writeln!(
            out,
            "\nTotal: {}/{} ({} of {} checks passed) in {:.1} s",
            self.score(),
            self.max(),
            self.outcomes.iter().filter(|o| o.passed()).count(),
            self.outcomes.len(),
            self.elapsed.as_secs_f64()
        );
        out
    }

    pub fn json(&self) -> String {
        serde_json::to_string_pretty(&serde_json::json!({
            "lab": self.lab,
            "title": self.title,
            "subject": self.subject,
            "score": self.score(),
            "max_score": self.max(),
            "checks": self.outcomes,
        }))
        .unwrap_or_default()
    }
}

/// Gradescope's `results.json` for one or more labs: `score` and one entry per check.
pub fn gradescope(reports: &[Report]) -> String {
    let tests: Vec<serde_json::Value> = reports
        .iter()
        .flat_map(|r| {
            r.outcomes.iter().map(move |o| {
                let mut output = o.proves.clone();
                if let (Some(f), Some(h), Some(rep)) = (&o.failure, &o.hint, &o.reproduce) {
                    output = format!("{output}\nWhat happened: {f}\nHint: {h}\nReproduce: {rep}");
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
    serde_json::to_string_pretty(&serde_json::json!({ "score": score, "tests": tests }))
        .unwrap_or_default()
}
