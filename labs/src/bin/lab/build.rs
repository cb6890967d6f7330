//! `lab build`: builds a submission in place (for `lab run --no-build` after it, as GitHub
//! Classroom's workflow does), in the sandbox, and says which program it has for each lab.

use crate::cli::SandboxArgs;
use labs::submission::Submission;
use std::path::Path;
use tokio::runtime::Runtime;

pub fn run(runtime: &Runtime, dir: &Path, sandbox: &SandboxArgs) -> anyhow::Result<()> {
    let sub = Submission::find(dir).map_err(anyhow::Error::msg)?;
    // In place, the build writes the folder. As root it runs as the folder's owner, or —
    // for a folder root owns — as the sandbox's user, given the folder first. Never as root.
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::metadata(&sub.dir)?;
    let root = rustix::process::geteuid().is_root();
    if root && sandbox.sandbox_user.is_none() && meta.uid() != 0 {
        labs::sandbox::configure_as(meta.uid(), meta.gid()).map_err(anyhow::Error::msg)?;
    } else {
        sandbox.configure()?;
        labs::sandbox::sandbox().give(&sub.dir).map_err(|e| {
            anyhow::anyhow!("giving {} to the sandbox's user: {e}", sub.dir.display())
        })?;
    }
    match &sub.build {
        Some(build) => println!("building: {build}  (in {})", sub.dir.display()),
        None => println!("nothing to build in {}", sub.dir.display()),
    }
    runtime.block_on(sub.build()).map_err(anyhow::Error::msg)?;
    for lab in labs::all_labs() {
        match sub.command(&lab) {
            Some(cmd) => println!("lab {}: {cmd}", lab.number),
            None => println!("lab {}: no program (not submitted)", lab.number),
        }
    }
    Ok(())
}
