//! One room, from the grader's side: its folders, what to start in it, and the running
//! subject — which, dropped, ends the room and waits until nothing of it is left.

use super::{helper, lock, watch, Limits, Stop};
use crate::process::Output;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// One room's folders. Dropped when the check ends (the subject is gone by then).
#[derive(Debug)]
pub struct Room {
    pub(super) _dir: tempfile::TempDir,
    /// The subject's own folder: its HOME, its TMPDIR (`tmp/`), lab 5's files.
    pub own: PathBuf,
}

/// What to start in a room.
#[derive(Debug)]
pub struct Launch<'a> {
    /// Run with `/bin/sh -c`.
    pub command: &'a str,
    pub cwd: &'a Path,
    /// What it may read besides the system's paths (a `--cmd` program's files).
    pub read: Vec<PathBuf>,
    /// What it may write besides its room (a submission's private copy).
    pub write: Vec<PathBuf>,
    pub limits: Limits,
    /// A submission: it gets a /tmp and /dev/shm of its own (where the machine allows a
    /// mount namespace) instead of the machine's, which it may then not write.
    pub private_tmp: bool,
}

/// How the grader and the watch end a room.
#[derive(Debug)]
struct Control {
    /// The keeper's stdin: closing it ends the room.
    stdin: Mutex<Option<ChildStdin>>,
    /// Why the grader stopped the subject, if it did.
    stop: Mutex<Option<Stop>>,
    ended: AtomicBool,
}

impl Control {
    fn end(&self) {
        self.ended.store(true, Ordering::SeqCst);
        drop(lock(&self.stdin).take());
    }

    fn stop(&self, why: Stop) {
        lock(&self.stop).get_or_insert(why);
        self.end();
    }
}

/// Every room still open, for [`end_all`].
static LIVE: Mutex<Vec<Weak<Control>>> = Mutex::new(Vec::new());

/// Ends every room still open (for signal handlers: whatever ends the grader, the programs
/// it started end with it). Their keepers finish the job once their stdin is closed.
pub fn end_all() {
    let rooms: Vec<Weak<Control>> = lock(&LIVE).drain(..).collect();
    for room in rooms.iter().filter_map(Weak::upgrade) {
        room.end();
    }
}

/// A subject running in its room. Dropping it ends the room and waits until nothing of the
/// subject is left.
#[derive(Debug)]
pub struct Process {
    keeper: Child,
    control: Arc<Control>,
    output: Output,
    limits: Limits,
}

/// How often the watch looks.
const WATCH_EVERY: Duration = Duration::from_millis(50);
/// How often it measures the disk the room's folders use.
const DISK_EVERY: u32 = 20;

impl Process {
    /// Starts the room's keeper (`helper`, the `lab` binary) with the room's `spec` (JSON),
    /// its output drained into `output`, and its watch over `dirs` (the room's folders).
    pub(super) fn start(
        helper: &Path,
        spec: &str,
        output: Output,
        limits: Limits,
        dirs: Vec<PathBuf>,
    ) -> Result<Process, String> {
        use std::os::unix::process::CommandExt as _;
        use std::process::Stdio;
        let mut child = std::process::Command::new(helper)
            .args([helper::ARG, "keeper", spec])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot start the sandbox ({}): {e}", helper.display()))?;
        if let Some(out) = child.stdout.take() {
            output.drain(out);
        }
        if let Some(err) = child.stderr.take() {
            output.drain(err);
        }
        let control = Arc::new(Control {
            stdin: Mutex::new(child.stdin.take()),
            stop: Mutex::new(None),
            ended: AtomicBool::new(false),
        });
        lock(&LIVE).push(Arc::downgrade(&control));
        let process = Process {
            keeper: child,
            control,
            output,
            limits,
        };
        process.watch(dirs);
        Ok(process)
    }

    /// The keeper's pid: every process of the subject descends from it.
    pub fn pgid(&self) -> u32 {
        self.keeper.id()
    }

    /// Its exit status, once the subject and all it started have exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.keeper.try_wait().ok().flatten()
    }

    pub fn output(&self) -> &Output {
        &self.output
    }

    /// Why it was stopped: a limit the watch saw, a refusal, or a limit the kernel
    /// enforced (as its exit status says).
    pub fn stopped(&mut self) -> Option<Stop> {
        if let Some(stop) = lock(&self.control.stop).clone() {
            return Some(stop);
        }
        let code = self.exited().and_then(|s| s.code());
        watch::exit_reason(code, &self.limits).map(Stop::Limit)
    }

    /// Looks at the subject now (its programs, its use) and stops it if it must be.
    pub fn inspect(&mut self) -> Option<Stop> {
        let (usage, foreign) = watch::measure(self.keeper.id());
        if let Some(why) = foreign.or_else(|| watch::over(&usage, &self.limits)) {
            self.control.stop(why);
        }
        self.stopped()
    }

    /// Watches the room on a thread of its own until it ends.
    fn watch(&self, dirs: Vec<PathBuf>) {
        let control = Arc::downgrade(&self.control);
        let (keeper, limits) = (self.keeper.id(), self.limits);
        let _ = std::thread::Builder::new()
            .name("lab-room-watch".into())
            .spawn(move || {
                let mut tick = 0u32;
                loop {
                    std::thread::sleep(WATCH_EVERY);
                    let Some(control) = control.upgrade() else {
                        return;
                    };
                    if control.ended.load(Ordering::SeqCst) {
                        return;
                    }
                    let (usage, foreign) = watch::measure(keeper);
                    let mut why = foreign.or_else(|| watch::over(&usage, &limits));
                    tick += 1;
                    if why.is_none() && tick.is_multiple_of(DISK_EVERY) {
                        let dirs: Vec<&Path> = dirs.iter().map(PathBuf::as_path).collect();
                        why = watch::disk_over(&dirs, limits.disk);
                    }
                    if let Some(why) = why {
                        control.stop(why);
                        return;
                    }
                }
            });
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.control.end();
        // The keeper exits once the room is empty; it was told by its stdin.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while self.keeper.try_wait().ok().flatten().is_none() {
            if std::time::Instant::now() > deadline {
                // A keeper that does not answer: end it and its group the hard way.
                if let Some(pid) = rustix::process::Pid::from_raw(self.keeper.id() as i32) {
                    let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
                }
                let _ = self.keeper.kill();
                let _ = self.keeper.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let me = Arc::as_ptr(&self.control);
        lock(&LIVE).retain(|w| w.strong_count() > 0 && w.as_ptr() != me);
    }
}
