//! A student's submission: a folder, how to build it, and how to start its programs.
//!
//! Gradescope, GitHub Classroom, batch grading and the student kit all find a program the
//! same way. A `proxylab.toml` in the folder says it:
//!
//! ```toml
//! build = "make"                    # run once, in the folder, before grading (optional)
//! proxy = "./myproxy {port}"        # labs 2-5; lab 5 may use {rules} and {log}
//! chat  = "python3 chat.py {port}"  # lab 1
//! ```
//!
//! What it does not say (or all of it, without the file), the convention fills in: `build` is `make` when there is a Makefile, `cargo build
//! --release` when there is a Cargo.toml; the proxy is the first of `./myproxy`,
//! `./proxy`, `./target/release/myproxy`, `myproxy.py`, `proxy.py` that exists after the
//! build (a `.py` runs with `python3`), given `{port}` and, for lab 5, `--blacklist {rules}
//! --log {log}`; the chat server likewise from `./chat`, `chat.py`. Every command runs from
//! the submission's folder.
//!
//! A submission is graded from a private copy ([`Submission::private_copy`]): its build and
//! its programs work in the copy, which belongs to the sandbox's user, so nothing they do
//! reaches the folder handed in — or another student's.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The name of the file that describes a submission.
pub const FILE: &str = "proxylab.toml";

/// How long a build may take.
pub const BUILD_LIMIT: Duration = Duration::from_secs(300);

/// A submission folder and its commands.
#[derive(Debug, Clone)]
pub struct Submission {
    /// Where it is graded: the folder handed in, or its private copy.
    pub dir: PathBuf,
    /// The folder handed in (what reports name).
    pub handed_in: PathBuf,
    pub build: Option<String>,
    pub proxy: Option<String>,
    pub chat: Option<String>,
    /// Where the commands came from: `proxylab.toml`, or the convention.
    pub from_file: bool,
    /// Holds the private copy (removed when the last clone is dropped).
    _copy: Option<std::sync::Arc<tempfile::TempDir>>,
}

/// Whether `dir/name` exists (after a build, for programs the build makes).
fn has(dir: &Path, name: &str) -> bool {
    dir.join(name).exists()
}

impl Submission {
    /// Reads `dir/proxylab.toml`, or applies the convention. Programs a build would make
    /// are looked for by name even before the build.
    pub fn find(dir: &Path) -> Result<Submission, String> {
        let dir = dir
            .canonicalize()
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        let file = dir.join(FILE);
        if file.exists() {
            return Submission::from_file(&dir, &file);
        }
        let build = if has(&dir, "Makefile") || has(&dir, "makefile") {
            Some("make".to_string())
        } else if has(&dir, "Cargo.toml") {
            Some("cargo build --release".to_string())
        } else {
            None
        };
        Ok(Submission {
            handed_in: dir.clone(),
            dir,
            build,
            proxy: None,
            chat: None,
            from_file: false,
            _copy: None,
        })
    }

    /// The same submission in a private copy that belongs to the sandbox's user: a folder
    /// of the grader's (`proxylab-submission-…`, which others may pass through but not
    /// list) holding `work/`, the copy. `to_build`: the build will run in the copy, so a
    /// Cargo build's old `target/` is left out.
    pub fn private_copy(&self, to_build: bool) -> Result<Submission, String> {
        use std::os::unix::fs::PermissionsExt as _;
        let holder = tempfile::Builder::new()
            .prefix("proxylab-submission-")
            .tempdir_in(crate::sandbox::scratch())
            .map_err(|e| format!("a folder for the copy: {e}"))?;
        std::fs::set_permissions(holder.path(), std::fs::Permissions::from_mode(0o711))
            .map_err(|e| e.to_string())?;
        let work = holder.path().join("work");
        crate::sandbox::files::copy_submission(&self.dir, &work, to_build && self.build.is_some())?;
        std::fs::set_permissions(&work, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| e.to_string())?;
        crate::sandbox::sandbox()
            .give(&work)
            .map_err(|e| format!("giving the copy to the sandbox's user: {e}"))?;
        Ok(Submission {
            dir: work,
            _copy: Some(std::sync::Arc::new(holder)),
            ..self.clone()
        })
    }

    /// The conventional program for a proxy (or a chat server), looked for when asked, so
    /// that what a build makes is found after it.
    fn conventional(&self, chat: bool) -> Option<String> {
        let names: &[&str] = if chat {
            &["chat", "chat.py"]
        } else {
            &[
                "myproxy",
                "proxy",
                "target/release/myproxy",
                "myproxy.py",
                "proxy.py",
            ]
        };
        let name = names.iter().find(|n| has(&self.dir, n))?;
        Some(if name.ends_with(".py") {
            format!("python3 {name} {{port}}")
        } else {
            format!("./{name} {{port}}")
        })
    }

    fn from_file(dir: &Path, file: &Path) -> Result<Submission, String> {
        let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let doc = toml_edit::Document::parse(text.as_str()).map_err(|e| {
            let line = e.span().map_or(1, |s| {
                text[..s.start.min(text.len())].matches('\n').count() + 1
            });
            format!("{}:{line}: {}", file.display(), e.message().trim())
        })?;
        let mut sub = Submission {
            dir: dir.to_path_buf(),
            handed_in: dir.to_path_buf(),
            build: None,
            proxy: None,
            chat: None,
            from_file: true,
            _copy: None,
        };
        for (key, item) in doc.as_table().iter() {
            let line = doc
                .as_table()
                .key(key)
                .and_then(|k| k.span())
                .map_or(1, |s| text[..s.start].matches('\n').count() + 1);
            let value = item
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| format!("{}:{line}: {key} must be a string", file.display()))?;
            match key {
                "build" => sub.build = Some(value),
                "proxy" => sub.proxy = Some(value),
                "chat" => sub.chat = Some(value),
                other => {
                    return Err(format!(
                        "{}:{line}: unknown key {other:?} (it may say build, proxy and chat)",
                        file.display()
                    ))
                }
            }
        }
        Ok(sub)
    }

    /// The command that starts this submission's program for `lab`, run from its folder;
    /// `None` when it has none for that lab.
    pub fn command(&self, lab: &crate::Lab) -> Option<String> {
        let given = if lab.chat { &self.chat } else { &self.proxy };
        match given {
            Some(cmd) => Some(cmd.clone()),
            // What the file does not say, the convention fills in.
            None => {
                let mut cmd = self.conventional(lab.chat)?;
                if lab.number == 5 {
                    cmd.push_str(" --blacklist {rules} --log {log}");
                }
                Some(cmd)
            }
        }
    }

    /// This submission's program for `lab` as a subject to grade, run from its folder.
    pub fn subject(&self, lab: &crate::Lab) -> Option<crate::harness::Subject> {
        Some(crate::harness::Subject::Folder {
            dir: self.dir.clone(),
            command: self.command(lab)?,
        })
    }

    /// Runs the build, if there is one, within [`BUILD_LIMIT`], in a room of its own (the
    /// sandbox's, with the build's larger limits); the error carries its last output lines.
    pub async fn build(&self) -> Result<(), String> {
        let Some(build) = &self.build else {
            return Ok(());
        };
        let output = crate::process::Output::new(None, false).map_err(|e| e.to_string())?;
        let sandbox = crate::sandbox::sandbox();
        let room = sandbox
            .room()
            .map_err(|e| format!("the build's room: {e}"))?;
        let launch = crate::sandbox::Launch {
            command: build,
            cwd: &self.dir,
            read: Vec::new(),
            write: vec![self.dir.clone()],
            limits: crate::sandbox::Limits::BUILD,
            private_tmp: true,
        };
        let mut child = sandbox
            .start(&room, launch, output)
            .map_err(|e| format!("cannot run the build {build:?}: {e}"))?;
        let deadline = tokio::time::Instant::now() + BUILD_LIMIT;
        loop {
            if let Some(stop) = child.inspect() {
                return Err(format!(
                    "the build {build:?} was stopped: {}",
                    stop.message()
                        .trim_start_matches("your program was stopped: ")
                ));
            }
            if let Some(status) = child.exited() {
                if status.success() {
                    return Ok(());
                }
                let said = child.output().last_lines(15).join("\n");
                if status.code() == Some(crate::sandbox::spec::SETUP_FAILED)
                    && said.contains(crate::sandbox::spec::SETUP_FAILED_PREFIX)
                {
                    return Err(format!(
                        "the grader could not start the build in its sandbox (this is not your submission's fault; tell your instructor): {said}"
                    ));
                }
                return Err(format!("the build {build:?} failed ({status}):\n{said}"));
            }
            if tokio::time::Instant::now() > deadline {
                return Err(format!(
                    "the build {build:?} did not finish within {}",
                    crate::harness::secs(BUILD_LIMIT)
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_proxylab_toml_says_it_and_the_convention_fills_in_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("myproxy.py"), "").unwrap();
        std::fs::write(d.join("chat.py"), "").unwrap();
        let sub = Submission::find(d).unwrap();
        assert_eq!(sub.build, None);
        let lab1 = crate::lab(1).unwrap();
        assert_eq!(sub.command(&lab1).unwrap(), "python3 chat.py {port}");
        let lab5 = crate::lab(5).unwrap();
        let cmd = sub.command(&lab5).unwrap();
        assert_eq!(
            cmd,
            "python3 myproxy.py {port} --blacklist {rules} --log {log}"
        );
        std::fs::write(d.join("Makefile"), "all:\n").unwrap();
        let sub = Submission::find(d).unwrap();
        assert_eq!(sub.build.as_deref(), Some("make"));
        // What a build makes is found once it exists.
        std::fs::write(d.join("myproxy"), "").unwrap();
        assert!(sub
            .command(&lab5)
            .unwrap()
            .starts_with("./myproxy {port} --blacklist"));
        std::fs::write(
            d.join(FILE),
            "build = \"gcc -o p p.c\"\nproxy = \"./p {port} {rules}\"\n",
        )
        .unwrap();
        let sub = Submission::find(d).unwrap();
        assert_eq!(sub.build.as_deref(), Some("gcc -o p p.c"));
        assert_eq!(sub.command(&lab5).unwrap(), "./p {port} {rules}");
        // What the file does not say, the convention fills in: chat.py for lab 1.
        assert_eq!(sub.command(&lab1).unwrap(), "python3 chat.py {port}");
        std::fs::remove_file(d.join("chat.py")).unwrap();
        assert_eq!(sub.command(&lab1), None);
        std::fs::write(d.join(FILE), "proxy = \"./p {port}\"\nprogram = \"x\"\n").unwrap();
        let err = Submission::find(d).unwrap_err();
        assert!(
            err.ends_with(
                "proxylab.toml:2: unknown key \"program\" (it may say build, proxy and chat)"
            ),
            "{err}"
        );
    }
}
