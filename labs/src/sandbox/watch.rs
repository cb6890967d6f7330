//! The watch: what a room's processes use, read from `/proc` while it runs, and the reason
//! to stop it when one use goes past its limit or a process is not the student's own.
//!
//! Counting beats a hard limit where a hard limit would mislead: memory (a JVM reserves
//! gigabytes of address space it never touches, so RLIMIT_AS would kill honest Java) and
//! CPU time (summed over every process, not per process). The kernel still enforces what
//! it can on its own: file size, open files and — where the room has a uid of its own —
//! the number of tasks.

use super::identity;
use super::spec::{bytes, Limits};
use std::collections::HashSet;
use std::path::Path;

/// One process, as `/proc/PID/stat` and `statm` tell it.
#[derive(Debug, Clone, Copy, Default)]
struct Stat {
    ppid: u32,
    threads: u64,
    /// CPU time, in clock ticks: its own, and that of the children it has reaped.
    ticks: u64,
    children_ticks: u64,
    /// Resident memory it does not share with files (anonymous pages), in pages.
    anon_pages: u64,
}

fn stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(0) ppid(1) … utime(11) stime(12) cutime(13) cstime(14) … num_threads(17)
    let n = |i: usize| f.get(i).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).unwrap_or_default();
    let m: Vec<u64> = statm
        .split_whitespace()
        .map(|s| s.parse().unwrap_or(0))
        .collect();
    let anon = m
        .get(1)
        .zip(m.get(2))
        .map_or(0, |(res, shared)| res.saturating_sub(*shared));
    Some(Stat {
        ppid: n(1) as u32,
        threads: n(17),
        ticks: n(11) + n(12),
        children_ticks: n(13) + n(14),
        anon_pages: anon,
    })
}

/// The children of `pid`, from `/proc/PID/task/*/children` (each thread's own); `None`
/// where the kernel does not keep those files.
fn children(pid: u32) -> Option<Vec<u32>> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut out = Vec::new();
    let mut any = false;
    for task in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
            any = true;
            out.extend(
                text.split_whitespace()
                    .filter_map(|s| s.parse::<u32>().ok()),
            );
        }
    }
    any.then_some(out)
}

/// Every process below `root` (not `root` itself), found by walking down from it; where the
/// kernel keeps no `children` files, by scanning `/proc` for parents.
pub fn descendants(root: u32) -> Vec<u32> {
    let mut found = Vec::new();
    let mut seen = HashSet::new();
    let mut todo = vec![root];
    while let Some(pid) = todo.pop() {
        match children(pid) {
            Some(kids) => {
                for kid in kids {
                    if seen.insert(kid) {
                        found.push(kid);
                        todo.push(kid);
                    }
                }
            }
            None if pid == root => return descendants_by_scan(root),
            None => {}
        }
    }
    found
}

fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
                .collect()
        })
        .unwrap_or_default()
}

fn descendants_by_scan(root: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = all_pids()
        .into_iter()
        .filter_map(|p| stat(p).map(|s| (p, s.ppid)))
        .collect();
    let mut inside: HashSet<u32> = HashSet::from([root]);
    loop {
        let before = inside.len();
        for (pid, ppid) in &parents {
            if inside.contains(ppid) {
                inside.insert(*pid);
            }
        }
        if inside.len() == before {
            break;
        }
    }
    inside.remove(&root);
    inside.into_iter().collect()
}

/// Processes (other than this one) whose environment holds `mark` (`NAME=value`).
pub fn tagged(mark: &str) -> Vec<u32> {
    let me = std::process::id();
    let mark = mark.as_bytes();
    all_pids()
        .into_iter()
        .filter(|&p| p != me)
        .filter(|p| {
            std::fs::read(format!("/proc/{p}/environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|v| v == mark))
        })
        .collect()
}

/// What a room's processes use right now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Usage {
    pub processes: usize,
    pub tasks: u64,
    pub memory: u64,
    pub cpu_seconds: f64,
}

/// Why the grader stopped a subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// It went past a limit: what the report says.
    Limit(String),
    /// It is not the student's own program: the whole lab is refused.
    Refused(String),
}

impl Stop {
    pub fn message(&self) -> &str {
        match self {
            Stop::Limit(m) | Stop::Refused(m) => m,
        }
    }
}

/// Measures the room whose keeper is `keeper` (the keeper and its init are the grader's and
/// not counted against the subject, nor judged as foreign).
pub fn measure(keeper: u32) -> (Usage, Option<Stop>) {
    let stats: Vec<(u32, Stat)> = descendants(keeper)
        .into_iter()
        .filter_map(|p| Some((p, stat(p)?)))
        .collect();
    // init is the keeper's one child; for a moment after it forks the subject's shell, the
    // child is still a copy of init (the `lab` binary, init's command line): ours too.
    let init = stats
        .iter()
        .find(|(_, s)| s.ppid == keeper)
        .map(|(p, _)| *p);
    let cmdline = |p: u32| std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
    let init_cmdline = init.map(cmdline);
    let page = rustix::param::page_size() as u64;
    let hz = rustix::param::clock_ticks_per_second().max(1) as f64;
    let mut usage = Usage::default();
    let mut foreign = None;
    for (pid, s) in stats {
        usage.processes += 1;
        usage.tasks += s.threads.max(1);
        usage.memory += s.anon_pages * page;
        usage.cpu_seconds += s.ticks as f64 / hz;
        if s.ppid == keeper {
            // init: what it reaped is the subject's; init itself is ours.
            usage.cpu_seconds += s.children_ticks as f64 / hz;
            continue;
        }
        if Some(s.ppid) == init && init_cmdline.as_deref() == Some(cmdline(pid).as_slice()) {
            continue;
        }
        if foreign.is_none() {
            if let Some((who, exe)) = identity::of_process(pid) {
                foreign = Some(Stop::Refused(who.refusal(&exe)));
            }
        }
    }
    (usage, foreign)
}

/// The first limit `usage` goes past, as the report says it.
pub fn over(usage: &Usage, limits: &Limits) -> Option<Stop> {
    if usage.tasks > limits.tasks {
        return Some(Stop::Limit(format!(
            "your program was stopped: it ran more than {} processes and threads at once ({} in {} processes) — a process or thread per connection that never ends, or a fork loop",
            limits.tasks, usage.tasks, usage.processes
        )));
    }
    if usage.memory > limits.memory {
        return Some(Stop::Limit(format!(
            "your program was stopped: it used more than {} of memory ({} at once)",
            bytes(limits.memory),
            bytes(usage.memory)
        )));
    }
    if usage.cpu_seconds > limits.cpu_seconds as f64 {
        return Some(Stop::Limit(format!(
            "your program was stopped: it used more than {} s of CPU time (a busy loop?)",
            limits.cpu_seconds
        )));
    }
    None
}

/// The room's folder went past its disk limit: the message, or `None`.
pub fn disk_over(dirs: &[&Path], limit: u64) -> Option<Stop> {
    let used: u64 = dirs.iter().map(|d| du(d, limit)).sum();
    (used > limit).then(|| {
        Stop::Limit(format!(
            "your program was stopped: the files it wrote grew past {} (its folder held {})",
            bytes(limit),
            bytes(used)
        ))
    })
}

/// Bytes used below `dir` (blocks, so sparse files count what they hold), counting stops
/// once past `stop_after`.
fn du(dir: &Path, stop_after: u64) -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    let mut total = 0u64;
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            total += meta.blocks() * 512;
            if meta.is_dir() {
                todo.push(entry.path());
            }
            if total > stop_after {
                return total;
            }
        }
    }
    total
}

/// What the subject's exit status says about a limit the kernel enforced, if anything:
/// 152 and 153 are what a shell reports for SIGXCPU and SIGXFSZ.
pub fn exit_reason(code: Option<i32>, limits: &Limits) -> Option<String> {
    match code {
        Some(152) => Some(format!(
            "your program was stopped: one of its processes used more than {} s of CPU time",
            limits.cpu_seconds
        )),
        Some(153) => Some(format!(
            "your program was stopped: it wrote a file larger than {}",
            bytes(limits.file_size)
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_measured_from_its_parent() {
        let me = std::process::id();
        let parent = stat(me).unwrap().ppid;
        assert!(descendants(parent).contains(&me));
        assert!(descendants_by_scan(parent).contains(&me));
        let s = stat(me).unwrap();
        assert!(s.threads >= 1 && s.anon_pages > 0);
    }

    #[test]
    fn each_limit_says_what_was_used() {
        let limits = Limits::RUN;
        let fine = Usage {
            processes: 3,
            tasks: 40,
            memory: 50 << 20,
            cpu_seconds: 1.0,
        };
        assert_eq!(over(&fine, &limits), None);
        let hog = Usage {
            memory: 3 << 30,
            ..fine.clone()
        };
        assert_eq!(
            over(&hog, &limits).unwrap().message(),
            "your program was stopped: it used more than 1 GiB of memory (3 GiB at once)"
        );
        let bomb = Usage {
            tasks: 600,
            processes: 600,
            ..fine
        };
        assert!(over(&bomb, &limits)
            .unwrap()
            .message()
            .contains("more than 512 processes and threads at once (600 in 600 processes)"));
        assert!(exit_reason(Some(153), &limits)
            .unwrap()
            .ends_with("a file larger than 256 MiB"));
        assert_eq!(exit_reason(Some(1), &limits), None);
    }
}
