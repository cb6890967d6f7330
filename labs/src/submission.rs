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

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The name of the file that describes a submission.
pub const FILE: &str = "proxylab.toml";

/// How long a build may take.
pub const BUILD_LIMIT: Duration = Duration::from_secs(300);

/// A submission folder and its commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    pub dir: PathBuf,
    pub build: Option<String>,
    pub proxy: Option<String>,
    pub chat: Option<String>,
    /// Where the commands came from: `proxylab.toml`, or the convention.
    pub from_file: bool,
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
            dir,
            build,
            proxy: None,
            chat: None,
            from_file: false,
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
            build: None,
            proxy: None,
            chat: None,
            from_file: true,
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
        let cmd = match given {
            Some(cmd) => cmd.clone(),
            // What the file does not say, the convention fills in.
            None => {
                let mut cmd = self.conventional(lab.chat)?;
                if lab.number == 5 {
                    cmd.push_str(" --blacklist {rules} --log {log}");
                }
                cmd
            }
        };
        Some(format!(
            "cd {} && {cmd}",
            crate::harness::sh(&self.dir.display().to_string())
        ))
    }

    /// Runs the build, if there is one, within [`BUILD_LIMIT`]; the error carries its last
    /// output lines.
    pub async fn build(&self) -> Result<(), String> {
        let Some(build) = &self.build else {
            return Ok(());
        };
        let output = crate::process::Output::new(None, false).map_err(|e| e.to_string())?;
        let mut child = crate::process::Process::spawn(
            &format!(
                "cd {} && {build}",
                crate::harness::sh(&self.dir.display().to_string())
            ),
            output,
        )
        .map_err(|e| format!("cannot run the build {build:?}: {e}"))?;
        let deadline = tokio::time::Instant::now() + BUILD_LIMIT;
        loop {
            if let Some(status) = child.exited() {
                if status.success() {
                    return Ok(());
                }
                return Err(format!(
                    "the build {build:?} failed ({status}):\n{}",
                    child.output().last_lines(15).join("\n")
                ));
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
        assert!(sub
            .command(&lab1)
            .unwrap()
            .ends_with(" && python3 chat.py {port}"));
        let lab5 = crate::lab(5).unwrap();
        let cmd = sub.command(&lab5).unwrap();
        assert!(
            cmd.starts_with("cd ")
                && cmd.ends_with(" && python3 myproxy.py {port} --blacklist {rules} --log {log}"),
            "{cmd}"
        );
        std::fs::write(d.join("Makefile"), "all:\n").unwrap();
        let sub = Submission::find(d).unwrap();
        assert_eq!(sub.build.as_deref(), Some("make"));
        // What a build makes is found once it exists.
        std::fs::write(d.join("myproxy"), "").unwrap();
        assert!(sub
            .command(&lab5)
            .unwrap()
            .contains(" && ./myproxy {port} --blacklist"));
        std::fs::write(
            d.join(FILE),
            "build = \"gcc -o p p.c\"\nproxy = \"./p {port} {rules}\"\n",
        )
        .unwrap();
        let sub = Submission::find(d).unwrap();
        assert_eq!(sub.build.as_deref(), Some("gcc -o p p.c"));
        assert!(sub
            .command(&lab5)
            .unwrap()
            .ends_with("&& ./p {port} {rules}"));
        // What the file does not say, the convention fills in: chat.py for lab 1.
        assert!(sub
            .command(&lab1)
            .unwrap()
            .ends_with("&& python3 chat.py {port}"));
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
