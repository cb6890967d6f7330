//! `lab export`: files for graders elsewhere — GitHub Classroom, Gradescope, the student
//! kit. None of them ships the reference proxy unless told to.

use crate::cli::Export;
use crate::shared::lab_with;
use anyhow::Context as _;
use std::path::{Path, PathBuf};

pub fn run(export: Export) -> anyhow::Result<()> {
    match export {
        Export::Classroom {
            lab,
            out,
            lab_bin,
            points,
        } => {
            let lab = lab_with(lab, points.as_deref())?;
            let files = labs::export::classroom(&lab, &lab_bin);
            for path in labs::export::write(&out, &files)
                .with_context(|| format!("writing into {}", out.display()))?
            {
                println!("wrote {}", path.display());
            }
            Ok(())
        }
        Export::Gradescope {
            lab,
            dir,
            points,
            lab_binary,
            with_reference,
        } => {
            let lab = lab_with(lab, points.as_deref())?;
            let binary = match lab_binary {
                Some(path) => path,
                None => std::env::current_exe().context("finding this lab binary")?,
            };
            refuse_the_reference(&binary, with_reference)?;
            let files = labs::export::gradescope(&lab, &binary, &labs::export::points_toml(&lab))
                .with_context(|| format!("reading {}", binary.display()))?;
            for path in labs::export::write(&dir, &files)
                .with_context(|| format!("writing into {}", dir.display()))?
            {
                println!("wrote {}", path.display());
            }
            strip(&dir.join("lab"));
            println!(
                "zip it and upload it to Gradescope: cd {} && zip -r ../proxylab-lab{}-autograder.zip .",
                dir.display(),
                lab.number
            );
            Ok(())
        }
        Export::StudentKit {
            dir,
            bin_dir,
            lab_binary,
        } => {
            let me = std::env::current_exe().context("finding this lab binary")?;
            let lab_binary = lab_binary.unwrap_or(me.clone());
            refuse_the_reference(&lab_binary, false)?;
            let bin_dir = match bin_dir {
                Some(d) => d,
                None => me.parent().map(Path::to_path_buf).unwrap_or_default(),
            };
            let files = labs::export::student_kit(
                &lab_binary,
                &bin_dir.join("origin-sim"),
                &bin_dir.join("client"),
            )
            .context("collecting the kit's binaries (build them: cargo build --release -p origin-sim -p client)")?;
            labs::export::write(&dir, &files)
                .with_context(|| format!("writing into {}", dir.display()))?;
            println!(
                "wrote the student kit to {} ({} files)",
                dir.display(),
                files.len()
            );
            Ok(())
        }
    }
}

/// A `lab` that holds the reference proxy is not shipped unless `allowed`: a submission
/// could hand its requests to it.
fn refuse_the_reference(binary: &Path, allowed: bool) -> anyhow::Result<()> {
    let mark = labs::sandbox::identity::mark_of_file(binary);
    match mark.as_deref() {
        Some("lab+reference") if !allowed => anyhow::bail!(
            "{} holds the reference proxy, which a submission could relay its requests to: \
             ship a lab built without it (`make grader` builds target/student/release/lab; \
             pass it with --lab-binary), or --with-reference to ship this one anyway",
            binary.display()
        ),
        Some("lab" | "lab+reference") => Ok(()),
        _ => anyhow::bail!("{} is not a proxylab `lab` binary", binary.display()),
    }
}

/// Strips the shipped binary's symbols (smaller, and less to read), when `strip` is here.
fn strip(binary: &PathBuf) {
    match std::process::Command::new("strip").arg(binary).status() {
        Ok(s) if s.success() => println!("stripped {}", binary.display()),
        _ => println!(
            "note: {} was not stripped (no `strip` here); `strip` it before uploading to make it smaller",
            binary.display()
        ),
    }
}
