//! `lab repro`: runs one check, prints its outcome and what it ran (with live ports), and
//! keeps origin-sim and the program up until Ctrl-C, to try it by hand. It does not move
//! into a network namespace of its own: the point is to reach everything from outside.

use crate::cli::{LimitArgs, SubjectArgs};
use crate::shared::{lab_with, prepare, subject};
use tokio::runtime::Runtime;

pub fn run(
    runtime: &Runtime,
    number: u8,
    check: &str,
    who: &SubjectArgs,
    limits: &LimitArgs,
) -> anyhow::Result<()> {
    limits.sandbox.configure()?;
    let lab = lab_with(number, limits.points.as_deref())?;
    let Some(check) = lab.check(check) else {
        anyhow::bail!("lab {} has no check {check:?} (see `lab list`)", lab.number);
    };
    let submission = runtime.block_on(prepare(who));
    let subject = subject(who, &lab, submission.as_ref()).map_err(anyhow::Error::msg)?;
    subject.validate().map_err(anyhow::Error::msg)?;
    let options = labs::Options {
        echo_output: true,
        ..limits.options()?
    };
    runtime.block_on(repro(&lab, check, &subject, &options))
}

async fn repro(
    lab: &labs::Lab,
    check: &labs::Check,
    subject: &labs::harness::Subject,
    options: &labs::Options,
) -> anyhow::Result<()> {
    let (outcome, env) = labs::repro(lab, check, subject, options).await?;
    println!();
    let origin = &env.origin;
    println!("origin-sim http listening on {}", origin.url());
    if let Some(a) = origin.tls_addr() {
        println!("origin-sim https listening on https://{a} (its CA: lab repro writes it to origin-sim-ca.pem)");
        if let Some(pem) = origin.ca_pem() {
            let _ = std::fs::write("origin-sim-ca.pem", pem);
        }
    }
    if let Some(a) = origin.echo_addr() {
        println!("origin-sim echo listening on tcp://{a}");
    }
    if let Some(a) = origin.chat_addr() {
        println!("origin-sim chat listening on tcp://{a}");
    }
    println!("the subject listens on {}", env.subject);
    if !env.files.rules.as_os_str().is_empty() && lab.number == 5 {
        println!("its blacklist ({{rules}}): {}", env.files.rules.display());
        println!("its access log ({{log}}):  {}", env.files.log.display());
    }
    println!();
    match &outcome.failure {
        None => println!("lab {} {}: PASS — {}", lab.number, check.id, check.proves),
        Some(f) => {
            println!(
                "lab {} {}: {} — {}",
                lab.number,
                check.id,
                if outcome.verdict == labs::Verdict::NotJudged {
                    "NOT JUDGED"
                } else {
                    "FAIL"
                },
                check.proves
            );
            println!("  what happened: {f}");
            if let Some(h) = &outcome.hint {
                println!("  hint:          {h}");
            }
            if let Some(r) = &outcome.reproduce {
                println!("  try it:        {r}");
            }
        }
    }
    println!("\nEverything stays up for you to try by hand; Ctrl-C stops it.");
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    let _ = tokio::signal::ctrl_c().await;
    env.stop().await;
    Ok(())
}
