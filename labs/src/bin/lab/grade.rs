//! `lab run` (one lab) and `lab grade` (several): grade, print the table, then write the
//! requested files — once, at the end, after every program graded is gone.

use crate::cli::{LimitArgs, OutputArgs, SubjectArgs};
use crate::shared::{lab_with, labs_with, options, prepare, subject, write_html, write_outputs};
use labs::harness::Subject;
use std::io::IsTerminal as _;
use std::path::Path;
use tokio::runtime::Runtime;

/// `lab run N`: exits 0 only on full marks.
pub fn run(
    runtime: &Runtime,
    number: u8,
    who: &SubjectArgs,
    output: &OutputArgs,
    limits: &LimitArgs,
    only: Option<&str>,
) -> anyhow::Result<()> {
    limits.sandbox.configure()?;
    let lab = lab_with(number, limits.points.as_deref())?;
    if let Some(id) = only {
        anyhow::ensure!(
            lab.check(id).is_some(),
            "lab {} has no check {id:?} (see `lab list`)",
            lab.number
        );
    }
    let options = options(output, limits)?;
    let submission = runtime.block_on(prepare(who));
    let report = match subject(who, &lab, submission.as_ref()) {
        Ok(subject) => {
            subject.validate().map_err(anyhow::Error::msg)?;
            runtime.block_on(grade(
                &lab,
                &subject,
                only,
                output,
                &options,
                true,
                who.submission.as_deref(),
            ))?
        }
        Err(why) => {
            let report = labs::not_submitted(&lab, &why);
            print!("{}", report.table());
            write_outputs(output, std::slice::from_ref(&report))?;
            write_html(output, &options, &report, None)?;
            report
        }
    };
    // The submission's private copy goes before this process does.
    drop(submission);
    if output.pcap_dir.is_none() {
        // The captures taken only to draw the HTML report's exchanges.
        if let Some(dir) = &options.pcap_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    std::process::exit(if report.full_marks() { 0 } else { 1 });
}

/// `lab grade`: each lab grades the program given for it; exits 0 only on full marks.
pub fn several(
    runtime: &Runtime,
    numbers: &[u8],
    who: &SubjectArgs,
    chat_cmd: Option<&str>,
    reference: bool,
    output: &OutputArgs,
    limits: &LimitArgs,
) -> anyhow::Result<()> {
    limits.sandbox.configure()?;
    let options = options(output, limits)?;
    let all = labs_with(limits.points.as_deref())?;
    for n in numbers {
        anyhow::ensure!(
            all.iter().any(|l| l.number == *n),
            "there is no lab {n} (see `lab list`)"
        );
    }
    if !reference
        && who.cmd.is_none()
        && who.addr.is_none()
        && who.submission.is_none()
        && chat_cmd.is_none()
    {
        anyhow::bail!(
            "no program to grade: give --cmd (labs 2-5) and/or --chat-cmd (lab 1), \
             --submission DIR, or --reference to grade the reference"
        );
    }
    let submission = runtime.block_on(prepare(who));
    let mut reports = Vec::new();
    for lab in all
        .iter()
        .filter(|l| numbers.is_empty() || numbers.contains(&l.number))
    {
        // Lab 1 grades a chat server, the others the proxy; a lab whose program was not
        // given is not submitted.
        let flag = if lab.chat { "--chat-cmd" } else { "--cmd" };
        let missing = format!(
            "not submitted: no program was given for lab {} ({flag})",
            lab.number
        );
        // The subject, and the submission folder it came from (for `lab repro`).
        let chosen = match (chat_cmd, lab.chat) {
            _ if reference => Ok((lab.reference(&[]), None)),
            (Some(cmd), true) => Ok((Subject::Command(cmd.to_string()), None)),
            _ if who.submission.is_some()
                || (!lab.chat && (who.cmd.is_some() || who.addr.is_some())) =>
            {
                subject(who, lab, submission.as_ref()).map(|s| (s, who.submission.as_deref()))
            }
            _ => Err(missing),
        };
        let report = match chosen {
            Ok((subject, folder)) => {
                subject.validate().map_err(anyhow::Error::msg)?;
                runtime.block_on(grade(lab, &subject, None, output, &options, false, folder))?
            }
            Err(why) => {
                let report = labs::not_submitted(lab, &why);
                print!("{}", report.table());
                report
            }
        };
        reports.push(report);
    }
    let (score, max): (u32, u32) = reports
        .iter()
        .fold((0, 0), |(s, m), r| (s + r.score(), m + r.max()));
    println!("All labs graded: {score}/{max}");
    write_outputs(output, &reports)?;
    drop(submission);
    std::process::exit(if reports.iter().all(|r| r.full_marks()) {
        0
    } else {
        1
    });
}

/// Runs one lab with a progress line per check on a terminal and prints the table. Alone
/// (`lab run`), it then writes the requested files, and only then runs what is optional:
/// lab 3's sweep (reported, not graded), which runs once every concurrency check passed.
async fn grade(
    lab: &labs::Lab,
    subject: &Subject,
    only: Option<&str>,
    output: &OutputArgs,
    options: &labs::Options,
    alone: bool,
    submission: Option<&Path>,
) -> anyhow::Result<labs::report::Report> {
    let terminal = std::io::stderr().is_terminal();
    let verbose = output.verbose;
    let report = labs::run_lab(lab, subject, only, options, |i, n, outcome| {
        if terminal || verbose {
            let mark = match outcome.verdict {
                labs::Verdict::Passed => "pass",
                labs::Verdict::Failed => "FAIL",
                labs::Verdict::NotJudged => "not judged",
                labs::Verdict::NotRun => "not run",
            };
            eprintln!(
                "[{i}/{n}] lab {} {:<20} {mark} ({:.1} s)",
                lab.number,
                outcome.id,
                outcome.elapsed.as_secs_f64()
            );
        }
    })
    .await;
    // A submission's checks are reproduced from its folder, as the student has it.
    let mut report = report;
    if let Some(dir) = submission {
        for o in report.outcomes.iter_mut().filter(|o| o.repro.is_some()) {
            o.repro = Some(format!(
                "lab repro {} {} --submission {}",
                lab.number,
                o.id,
                labs::harness::sh(&dir.display().to_string())
            ));
        }
    }
    print!("{}", report.table());
    if !alone {
        return Ok(report);
    }
    write_outputs(output, std::slice::from_ref(&report))?;
    write_html(output, options, &report, None)?;
    if lab.number == 3 && only.is_none() {
        if report.full_marks() {
            use std::io::Write as _;
            println!(
                "\n(the grade above is final; now the concurrency sweep, which Ctrl-C may stop)"
            );
            let _ = std::io::stdout().flush();
            match labs::labs::lab3::sweep(subject, options).await {
                Ok((text, points)) => {
                    print!("{text}");
                    if output.html.is_some() {
                        let mut sweep = labs::html::Sweep {
                            student: points,
                            reference: Vec::new(),
                        };
                        // The reference beside it, where this lab binary has one.
                        if cfg!(feature = "reference") && !matches!(subject, Subject::Reference(_))
                        {
                            if let Ok((_, reference)) =
                                labs::labs::lab3::sweep(&lab.reference(&[]), options).await
                            {
                                sweep.reference = reference;
                            }
                        }
                        write_html(output, options, &report, Some(&sweep))?;
                    }
                }
                Err(e) => println!("\n(no concurrency sweep: {e})"),
            }
        } else {
            println!("\n(no concurrency sweep: it runs once every concurrency check passes)");
        }
    }
    Ok(report)
}
