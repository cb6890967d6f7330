//! What several commands share: the labs with their points, the subject the arguments name,
//! a submission prepared for grading, and the files a grading writes.

use crate::cli::{LimitArgs, OutputArgs, SubjectArgs};
use anyhow::Context as _;
use labs::harness::Subject;
use labs::submission::Submission;
use std::path::{Path, PathBuf};

/// Every lab, with the points of `file` over the built-in ones.
pub fn labs_with(file: Option<&Path>) -> anyhow::Result<Vec<labs::Lab>> {
    let points = match file {
        Some(path) => labs::points::Points::load(path).map_err(anyhow::Error::msg)?,
        None => labs::points::Points::default(),
    };
    Ok(labs::all_labs_with(&points))
}

/// Lab `number`, with the points of `file` over the built-in ones.
pub fn lab_with(number: u8, file: Option<&Path>) -> anyhow::Result<labs::Lab> {
    labs_with(file)?
        .into_iter()
        .find(|l| l.number == number)
        .ok_or_else(|| anyhow::anyhow!("there is no lab {number} (see `lab list`)"))
}

/// The options of a grading: deadlines, and what to keep.
pub fn options(output: &OutputArgs, limits: &LimitArgs) -> anyhow::Result<labs::Options> {
    // The HTML report draws each lost check's exchange from its capture.
    let pcap_dir = output.pcap_dir.clone().or_else(|| {
        output
            .html
            .as_ref()
            .map(|_| std::env::temp_dir().join(format!("proxylab-html-{}", std::process::id())))
    });
    Ok(labs::Options {
        pcap_dir,
        output_dir: output.output_dir.clone(),
        ..limits.options()?
    })
}

/// What `args` ask to grade on `lab`, given the submission (found and built) if they name
/// one; `Err` says why there is nothing to grade (a not-submitted report).
pub fn subject(
    args: &SubjectArgs,
    lab: &labs::Lab,
    submission: Option<&Result<Submission, String>>,
) -> Result<Subject, String> {
    match (&args.cmd, args.addr, submission) {
        (Some(cmd), _, _) => Ok(Subject::Command(cmd.clone())),
        (None, Some(addr), _) => Ok(Subject::Addr(addr)),
        (None, None, Some(Ok(sub))) => sub.subject(lab).ok_or_else(|| {
            let which = if lab.chat { "chat" } else { "proxy" };
            format!(
                "not submitted: {} has no program for lab {} ({which} = \"…\" in {}, or a program named as the convention says)",
                sub.handed_in.display(),
                lab.number,
                labs::submission::FILE
            )
        }),
        (None, None, Some(Err(why))) => Err(why.clone()),
        (None, None, None) => Ok(lab.reference(&[])),
    }
}

/// The submission `args` name, in a private copy and (unless --no-build) built there;
/// `Err` says why it cannot be graded (a missing folder, a bad proxylab.toml, a failed
/// build). The student kit's `lab` (built without the reference) grades the current folder
/// when no program is named.
pub async fn prepare(args: &SubjectArgs) -> Option<Result<Submission, String>> {
    let here = PathBuf::from(".");
    let unnamed = args.cmd.is_none() && args.addr.is_none() && args.submission.is_none();
    let dir = match &args.submission {
        Some(dir) => dir,
        None if unnamed && !cfg!(feature = "reference") => &here,
        None => return None,
    };
    let sub = match Submission::find(dir) {
        Ok(sub) => sub,
        Err(e) => return Some(Err(format!("not submitted: {e}"))),
    };
    let sub = match sub.private_copy(!args.no_build) {
        Ok(copy) => copy,
        Err(e) => return Some(Err(format!("not graded: {e}"))),
    };
    if !args.no_build {
        if let Some(build) = &sub.build {
            eprintln!(
                "building: {build}  (in a private copy of {})",
                sub.handed_in.display()
            );
        }
        if let Err(e) = sub.build().await {
            return Some(Err(e));
        }
    }
    Some(Ok(sub))
}

/// `--html`: the page for `report`, each lost check's exchange read from its capture.
pub fn write_html(
    output: &OutputArgs,
    options: &labs::Options,
    report: &labs::report::Report,
    sweep: Option<&labs::html::Sweep>,
) -> anyhow::Result<()> {
    let Some(path) = &output.html else {
        return Ok(());
    };
    let mut exchanges = std::collections::BTreeMap::new();
    if let Some(dir) = &options.pcap_dir {
        for o in report.outcomes.iter().filter(|o| !o.passed()) {
            let pcap = dir.join(format!("lab{}-{}.pcap", report.lab, o.id));
            if let (Some((subject, origin)), true) = (o.addrs, pcap.exists()) {
                if let Ok(messages) = labs::html::exchange(&pcap, subject, origin) {
                    exchanges.insert(o.id.clone(), messages);
                }
            }
        }
    }
    std::fs::write(path, labs::html::page(report, &exchanges, sweep))
        .with_context(|| format!("writing {}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}

/// `--json` and `--gradescope`, written once, after every program graded is gone.
pub fn write_outputs(output: &OutputArgs, reports: &[labs::report::Report]) -> anyhow::Result<()> {
    if let Some(path) = &output.json {
        let text = if reports.len() == 1 {
            reports[0].json()
        } else {
            format!(
                "[{}]",
                reports
                    .iter()
                    .map(|r| r.json())
                    .collect::<Vec<_>>()
                    .join(",")
            )
        };
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &output.gradescope {
        std::fs::write(path, labs::report::gradescope(reports))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
