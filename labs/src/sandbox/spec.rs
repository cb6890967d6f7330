//! What one room is: the grader decides it ([`super::Room`]), the helper carries it out
//! ([`super::helper`]). It crosses the `exec` between them as JSON, so it is plain data.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// How the room keeps every process the subject starts, so that all of them end with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Containment {
    /// Its own PID namespace: the room's `init` is its PID 1; when `init` ends, the kernel
    /// ends every other process in it, `setsid` or not.
    PidNamespace,
    /// Its own cgroup v2, ended with `cgroup.kill`.
    Cgroup,
    /// Its process group, `init` as the subreaper of every orphan, and a sweep of every
    /// process carrying the room's tag. Partial: a process that leaves the group, is
    /// adopted elsewhere and clears its environment escapes.
    ProcessGroup,
}

/// What a subject may use. Tasks count threads too (a Java program starts about twenty).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Processes and threads at once.
    pub tasks: u64,
    /// Resident memory of all its processes together, in bytes.
    pub memory: u64,
    /// CPU time of all its processes together, in seconds.
    pub cpu_seconds: u64,
    /// The largest file it may write, in bytes (RLIMIT_FSIZE).
    pub file_size: u64,
    /// Files open at once, per process (RLIMIT_NOFILE).
    pub open_files: u64,
    /// What its folder may hold in all, in bytes.
    pub disk: u64,
}

const MIB: u64 = 1 << 20;

impl Limits {
    /// For the program of a check: a proxy or a chat server under a lab's load uses a
    /// fraction of each (the reference: 12 MiB and under a second of CPU per check).
    pub const RUN: Limits = Limits {
        tasks: 512,
        memory: 1024 * MIB,
        cpu_seconds: 120,
        file_size: 256 * MIB,
        open_files: 4096,
        disk: 1024 * MIB,
    };

    /// For the build: compilers want more (rustc and javac use hundreds of MiB).
    pub const BUILD: Limits = Limits {
        tasks: 1024,
        memory: 4096 * MIB,
        cpu_seconds: 900,
        file_size: 1024 * MIB,
        open_files: 4096,
        disk: 4096 * MIB,
    };

    /// These limits with `setting` (`KEY=VALUE`: `tasks=256`, `memory=512MiB`, `cpu=60s`,
    /// `file-size=64MiB`, `disk=256MiB`, `open-files=1024`) applied.
    pub fn with(mut self, setting: &str) -> Result<Limits, String> {
        let (key, value) = setting
            .split_once('=')
            .ok_or_else(|| format!("{setting:?}: a limit is KEY=VALUE, e.g. memory=512MiB"))?;
        let size = || {
            parse_size(value)
                .ok_or_else(|| format!("{setting:?}: {value:?} is not a size (e.g. 512MiB, 2GiB)"))
        };
        let count = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("{setting:?}: {value:?} is not a number"))
        };
        match key {
            "tasks" => self.tasks = count()?,
            "open-files" => self.open_files = count()?,
            "memory" => self.memory = size()?,
            "file-size" => self.file_size = size()?,
            "disk" => self.disk = size()?,
            "cpu" => {
                self.cpu_seconds = humantime::parse_duration(value)
                    .map(|d| d.as_secs())
                    .or_else(|_| value.parse::<u64>())
                    .map_err(|_| format!("{setting:?}: {value:?} is not a duration (e.g. 60s)"))?
            }
            other => {
                return Err(format!(
                    "{other:?} is not a limit (tasks, memory, cpu, file-size, disk, open-files)"
                ))
            }
        }
        Ok(self)
    }

    /// One line for reports.
    pub fn describe(&self) -> String {
        format!(
            "{} processes and threads, {} of memory, {} s of CPU, {} per file, {} in its folder, {} open files",
            self.tasks,
            bytes(self.memory),
            self.cpu_seconds,
            bytes(self.file_size),
            bytes(self.disk),
            self.open_files
        )
    }
}

/// `512MiB`, `2GiB`, `64KiB`, `1000` (bytes).
fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (n, unit) = text.split_at(split);
    let n: u64 = n.parse().ok()?;
    let shift = match unit.trim() {
        "" | "B" => 0,
        "K" | "KiB" | "k" => 10,
        "M" | "MiB" => 20,
        "G" | "GiB" => 30,
        _ => return None,
    };
    n.checked_mul(1 << shift)
}

/// `1 GiB`, `256 MiB`.
pub fn bytes(n: u64) -> String {
    if n >= 1 << 30 && n.is_multiple_of(1 << 30) {
        format!("{} GiB", n >> 30)
    } else if n >= 1 << 30 {
        format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64)
    } else {
        format!("{} MiB", n.div_ceil(MIB))
    }
}

/// What Landlock lets the subject touch (everything else it cannot open, list or run).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsRules {
    /// Read, list and run below these.
    pub read: Vec<PathBuf>,
    /// Everything below these: its folder, its scratch.
    pub write: Vec<PathBuf>,
    /// Single files it may write without owning their folder (`/dev/null`).
    pub write_files: Vec<PathBuf>,
}

/// One room, as the helper receives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spec {
    /// Run with `/bin/sh -c`.
    pub command: String,
    pub cwd: PathBuf,
    /// The subject's whole environment (the grader's is not passed on: it may hold tokens).
    pub env: Vec<(String, String)>,
    /// The uid and gid to run as (when the grader is root).
    pub user: Option<(u32, u32)>,
    pub containment: Containment,
    /// The PID namespace needs a user namespace of its own (the grader is not root).
    pub user_namespace: bool,
    /// Mount a /proc of the room's own, so it sees its processes only (root only).
    pub private_proc: bool,
    /// Folders of the room's that become its `/tmp` and `/dev/shm` (bind mounts in its own
    /// mount namespace), so a program that writes `/tmp/cache` works and meets nobody's.
    pub private_tmp: Option<(PathBuf, PathBuf)>,
    /// For [`Containment::Cgroup`]: the cgroup to create, and remove at the end.
    pub cgroup: Option<PathBuf>,
    /// `None`: Landlock is not available here.
    pub landlock: Option<FsRules>,
    pub limits: Limits,
    /// Set RLIMIT_NPROC to this (the subject's tasks, plus what its uid already runs).
    pub nproc: Option<u64>,
    /// Every process of the room carries `PROXYLAB_ROOM=<tag>` in its environment.
    pub tag: String,
}

/// The variable that tags a room's processes.
pub const TAG_VAR: &str = "PROXYLAB_ROOM";

/// The exit status the helper uses when it could not set the room up (the subject never
/// ran): a grading error, not the student's.
pub const SETUP_FAILED: i32 = 197;

/// What the helper prints first when it could not set the room up.
pub const SETUP_FAILED_PREFIX: &str = "proxylab sandbox: ";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_a_person_writes_them() {
        assert_eq!(bytes(1 << 30), "1 GiB");
        assert_eq!(bytes(256 << 20), "256 MiB");
        assert_eq!(bytes(3 << 29), "1.5 GiB");
        assert_eq!(bytes(1), "1 MiB");
        assert!(Limits::RUN
            .describe()
            .starts_with("512 processes and threads, 1 GiB"));
    }

    #[test]
    fn limits_are_set_as_an_instructor_writes_them() {
        let l = Limits::RUN
            .with("memory=256MiB")
            .and_then(|l| l.with("cpu=30s"))
            .and_then(|l| l.with("tasks=64"))
            .unwrap();
        assert_eq!((l.memory, l.cpu_seconds, l.tasks), (256 << 20, 30, 64));
        assert_eq!(Limits::RUN.with("disk=2GiB").unwrap().disk, 2 << 30);
        assert!(Limits::RUN
            .with("memory=lots")
            .unwrap_err()
            .contains("not a size"));
        assert!(Limits::RUN
            .with("ram=1GiB")
            .unwrap_err()
            .contains("is not a limit"));
    }
}
