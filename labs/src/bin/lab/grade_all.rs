//! `lab grade-all DIR --lab N`: every submission in a folder, each by a `lab run` of its own
//! (see `labs::batch`), into OUT/grades.csv and OUT/reports/.

use crate::cli::LimitArgs;
use crate::shared::lab_with;
use anyhow::Context as _;
use std::path::Path;
use tokio::runtime::Runtime;

pub fn run(
    runtime: &Runtime,
    dir: &Path,
    lab: u8,
    jobs: Option<usize>,
    out: &Path,
    limits: &LimitArgs,
) -> anyhow::Result<()> {
    let points = match &limits.points {
        Some(path) => labs::points::Points::load(path).map_err(anyhow::Error::msg)?,
        None => labs::points::Points::default(),
    };
    let the_lab = lab_with(lab, limits.points.as_deref())?;
    let count = labs::batch::submissions(dir)
        .map_err(anyhow::Error::msg)?
        .len();
    anyhow::ensure!(count > 0, "{} holds no submission folders", dir.display());
    let jobs = jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, std::num::NonZero::get));
    // Each grading is this very binary, with the flags that shape a grade.
    let lab_binary = std::env::current_exe().context("finding this lab binary")?;
    let mut flags = vec![
        "--step".to_string(),
        humantime::format_duration(limits.step).to_string(),
        "--check-limit".to_string(),
        humantime::format_duration(limits.check_limit).to_string(),
    ];
    if let Some(points) = &limits.points {
        let points = points
            .canonicalize()
            .with_context(|| format!("finding {}", points.display()))?;
        flags.extend(["--points".to_string(), points.display().to_string()]);
    }
    for setting in &limits.limit {
        flags.extend(["--limit".to_string(), setting.clone()]);
    }
    if let Some(user) = &limits.sandbox.sandbox_user {
        flags.extend(["--sandbox-user".to_string(), user.clone()]);
    }
    let grader = labs::batch::Grader { lab_binary, flags };
    let bar = indicatif::ProgressBar::new(count as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} graded  {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    let options = limits.options()?;
    let graded = runtime
        .block_on(labs::batch::grade_all(
            dir,
            lab,
            &points,
            jobs,
            &grader,
            &options,
            |g| {
                bar.inc(1);
                bar.set_message(format!(
                    "{}: {}/{}",
                    g.student,
                    g.report.score(),
                    g.report.max()
                ));
            },
        ))
        .map_err(anyhow::Error::msg)?;
    bar.finish_and_clear();
    for g in &graded {
        println!(
            "{:<24} {:>3}/{:<3} ({:.1} s){}",
            g.student,
            g.report.score(),
            g.report.max(),
            g.wall.as_secs_f64(),
            g.report
                .aborted
                .as_deref()
                .and_then(|a| a.lines().next())
                .map(|a| format!("  {a}"))
                .unwrap_or_default()
        );
    }
    if let Some(isolation) = graded.iter().find_map(|g| g.report.isolation.as_ref()) {
        println!("\nGraded under:");
        for line in isolation.lines() {
            println!("  {line}");
        }
    }
    let csv = labs::batch::write(out, &the_lab, &graded)
        .with_context(|| format!("writing into {}", out.display()))?;
    println!(
        "wrote {} and {}",
        csv.display(),
        out.join("reports").display()
    );
    Ok(())
}
