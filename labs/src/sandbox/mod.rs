//! The subject's room: where a program we did not write runs — its start, its limits, its
//! isolation, its end.
//!
//! A student's program is hostile until proven otherwise: it may fork daemons that outlive
//! it, write over files it can reach, read what it should not, or hand in proxylab's own
//! binaries as its answer. Only the grader may write a grade. So every program the grader
//! starts — a submission's build, and the program of every check — runs in a room:
//!
//! | protection | how | where the machine does not allow it |
//! |---|---|---|
//! | everything it starts ends with it | a PID namespace of its own, whose PID 1 is the room's `init`: when init goes, the kernel ends every other process in it, `setsid` or not | a cgroup v2 with `cgroup.kill`; else its process group plus a sweep of every process carrying the room's tag (partial) |
//! | not the grader's user | when `lab` is root: a uid of its own (no account needed), or `--sandbox-user` | `lab` is not root: its own user, kept apart by the rest |
//! | only loopback | `lab` itself moves into a fresh network namespace whose one interface is `lo`, before it starts anything ([`network`]) | shared with the machine |
//! | a narrow filesystem | Landlock ([`files`]): read system paths, the toolchains on PATH and its folder; write its folder only | Unix permissions only |
//! | limits | the kernel's for file size, open files and tasks; the [`watch`] counts memory, CPU time, tasks and disk, and stops it with the reason | — |
//! | its own program | the watch refuses proxylab's executables and off-the-shelf proxies ([`identity`]) | — |
//!
//! How the pieces fit: [`Sandbox::start`] runs `lab __sandbox keeper SPEC` — this very
//! binary, see [`helper`] — and holds its stdin. The keeper makes the room, starts init in
//! it, and init starts the subject. Closing the keeper's stdin (the check is over, or the
//! grader died) ends the room; the keeper exits only when nothing of it is left, and
//! [`Process`]'s drop waits for that, so a grade is written only once the subject is gone.
//! Everything the room used and what it lacked is said in every report ([`Isolation`]).
//!
//! - [`spec`]: what one room is, as data (the JSON the helper gets), and the limits.
//! - `protections`: what this machine allows, probed once ([`Protections`]).
//! - `room`: a room from the grader's side: its folders, the running subject ([`Process`]), its end.
//! - [`helper`]: the keeper, init and the probe, run from the `lab` binary.
//! - [`network`], [`files`], [`watch`], [`identity`]: loopback only, Landlock and the private
//!   copy, the limits counted, whose program it is.

pub mod files;
pub mod helper;
pub mod identity;
pub mod network;
mod protections;
mod room;
pub mod spec;
pub mod watch;

pub use protections::Protections;
pub use room::{end_all, Launch, Process, Room};
pub use spec::{Containment, Limits};
pub use watch::Stop;

use crate::process::Output;
use spec::Spec;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// `PROXYLAB_SANDBOX_WITHOUT=pidns,cgroup,netns,landlock,user`: behave as if this machine
/// lacked those protections. For the tests that prove each fallback and what the report
/// says of it; never needed otherwise.
pub(crate) fn without(what: &str) -> bool {
    std::env::var("PROXYLAB_SANDBOX_WITHOUT").is_ok_and(|v| v.split(',').any(|w| w.trim() == what))
}

/// `unshare(2)` with namespace flags only.
///
/// rustix marks its safe `unshare` deprecated because `CLONE_FILES` would let one thread's
/// file descriptors vanish under another's feet; namespace flags do nothing of the kind,
/// and this crate forbids `unsafe`, so the deprecated, safe call it is — never with FILES.
#[allow(deprecated)]
pub(crate) fn unshare(flags: rustix::thread::UnshareFlags) -> std::io::Result<()> {
    debug_assert!(!flags.contains(rustix::thread::UnshareFlags::FILES));
    rustix::thread::unshare(flags).map_err(std::io::Error::from)
}

/// After `unshare(CLONE_NEWUSER)`: keep being `uid`/`gid` inside the new user namespace.
pub(crate) fn map_user(uid: u32, gid: u32) -> Result<(), String> {
    let write = |file: &str, text: String| {
        std::fs::write(format!("/proc/self/{file}"), text).map_err(|e| format!("{file}: {e}"))
    };
    write("setgroups", "deny".into())?;
    write("uid_map", format!("{uid} {uid} 1"))?;
    write("gid_map", format!("{gid} {gid} 1"))
}

/// Rooms' uids when `lab` runs as root and no `--sandbox-user` is named start here: far
/// above any account, below `nobody`'s 4294967294 and the invalid 4294967295.
const UID_BASE: u32 = 2_000_000_000;

/// The uid (and gid) of this grader's rooms: one per `lab` process, so that gradings side
/// by side (`grade-all --jobs N`) never share one, and no account is needed.
pub fn default_uid() -> u32 {
    UID_BASE + std::process::id()
}

/// Where rooms and submissions' private copies go: `/var/tmp` where it can be written
/// (outside `/tmp`, which a submission's room replaces with its own), else the system's
/// temporary folder.
pub fn scratch() -> PathBuf {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    BASE.get_or_init(|| {
        let var = Path::new("/var/tmp");
        let writable = tempfile::Builder::new()
            .prefix("proxylab-probe-")
            .tempdir_in(var)
            .is_ok();
        if writable {
            var.to_path_buf()
        } else {
            std::env::temp_dir()
        }
    })
    .clone()
}

/// The isolation a subject was graded under, as every report names it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Isolation {
    pub processes: String,
    pub user: String,
    pub network: String,
    pub files: String,
    pub limits: String,
    /// What was missing, and why (empty: everything in force).
    pub partial: Vec<String>,
}

impl Isolation {
    /// For a subject the grader did not start (`--addr`) or the reference inside it.
    pub fn not_confined(why: &str) -> Isolation {
        Isolation {
            processes: why.to_string(),
            ..Isolation::default()
        }
    }

    /// Lines for the text report.
    pub fn lines(&self) -> Vec<String> {
        let confined = [&self.user, &self.network, &self.files, &self.limits]
            .iter()
            .any(|t| !t.is_empty());
        if !confined {
            return vec![self.processes.clone()];
        }
        let mut out = Vec::new();
        for (what, text) in [
            ("processes", &self.processes),
            ("user", &self.user),
            ("network", &self.network),
            ("files", &self.files),
            ("limits", &self.limits),
        ] {
            if !text.is_empty() {
                out.push(format!("{what}: {text}"));
            }
        }
        if !self.partial.is_empty() {
            out.push(format!(
                "partial: {} (`lab doctor` says what this machine allows)",
                self.partial.join("; ")
            ));
        }
        out
    }
}

/// The grader's sandbox for this process: what the machine allows and whom subjects run as.
#[derive(Debug)]
pub struct Sandbox {
    pub protections: Protections,
    /// The uid, gid and name subjects run as, when `lab` is root.
    pub user: Option<(u32, u32, String)>,
}

static SANDBOX: OnceLock<Sandbox> = OnceLock::new();

/// Chooses whom subjects run as (`--sandbox-user NAME`; default: a uid of its own per
/// grader process). Call before the first subject starts; later calls change nothing.
pub fn configure(user: Option<&str>) -> Result<&'static Sandbox, String> {
    if let Some(s) = SANDBOX.get() {
        return Ok(s);
    }
    let protections = Protections::detect();
    let user = match (protections.root, user) {
        (false, _) => None,
        (true, Some(name)) => Some(account(name)?),
        (true, None) => Some((
            default_uid(),
            default_uid(),
            format!("uid {}", default_uid()),
        )),
    };
    Ok(SANDBOX.get_or_init(|| Sandbox { protections, user }))
}

/// Runs subjects as `uid`/`gid` (when `lab` is root): `lab build` builds a folder as its
/// owner. Never uid 0.
pub fn configure_as(uid: u32, gid: u32) -> Result<&'static Sandbox, String> {
    if uid == 0 {
        return Err("the sandbox never runs a program as root".into());
    }
    let protections = Protections::detect();
    let user = protections
        .root
        .then(|| (uid, gid, format!("uid {uid} (the folder's owner)")));
    Ok(SANDBOX.get_or_init(|| Sandbox { protections, user }))
}

/// This process's sandbox (configured with the defaults when nobody did).
pub fn sandbox() -> &'static Sandbox {
    SANDBOX.get_or_init(|| {
        let protections = Protections::detect();
        let user = protections.root.then(|| {
            (
                default_uid(),
                default_uid(),
                format!("uid {}", default_uid()),
            )
        });
        Sandbox { protections, user }
    })
}

/// The uid and gid of account `name` (from /etc/passwd), never root's.
fn account(name: &str) -> Result<(u32, u32, String), String> {
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(|e| format!("/etc/passwd: {e}"))?;
    let found = passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.first() == Some(&name))
            .then(|| {
                Some((
                    f.get(2)?.parse::<u32>().ok()?,
                    f.get(3)?.parse::<u32>().ok()?,
                ))
            })
            .flatten()
    });
    match found {
        Some((0, _)) => Err(format!(
            "--sandbox-user {name}: that is root; name an unprivileged user"
        )),
        Some((uid, gid)) => Ok((uid, gid, format!("the account {name} (uid {uid})"))),
        None => Err(format!(
            "--sandbox-user {name}: no such user in /etc/passwd"
        )),
    }
}

impl Sandbox {
    /// The isolation every subject this sandbox starts with `limits` is graded under; a
    /// `submission` works in its private copy, with a /tmp of its own where it can have one.
    pub fn isolation(&self, limits: &Limits, submission: bool) -> Isolation {
        let p = &self.protections;
        let mut partial = Vec::new();
        if let Err(e) = &p.helper {
            return Isolation {
                processes: format!("none: {e}"),
                partial: vec![format!("no sandbox: {e}")],
                ..Isolation::default()
            };
        }
        let processes = match p.containment() {
            Containment::PidNamespace => {
                "its own PID namespace: every process it starts ends with it".to_string()
            }
            Containment::Cgroup => {
                "its own cgroup, ended with cgroup.kill: every process it starts ends with it"
                    .to_string()
            }
            Containment::ProcessGroup => {
                partial.push(format!(
                    "processes: no PID namespace ({}) and no cgroup ({}): a process that leaves its group and clears its environment could outlive the check",
                    err(&p.pid_namespace),
                    err(&p.cgroup)
                ));
                "its process group, and a sweep of every process with its tag".to_string()
            }
        };
        let user = match &self.user {
            Some((_, _, name)) => format!("{name}, not the grader's root"),
            None => "the grader's own user (lab is not root); the other protections keep it apart"
                .to_string(),
        };
        let network = match network::state() {
            Ok(()) => {
                "a network namespace of its own: only lo, shared with origin-sim and the grader"
                    .to_string()
            }
            Err(e) => {
                partial.push(format!("network: shared with this machine ({e})"));
                "shared with this machine".to_string()
            }
        };
        let writes = match (submission, &p.mount_namespace) {
            (true, Ok(())) if p.containment() == Containment::PidNamespace => {
                "its folder and a /tmp of its own"
            }
            (true, _) => "its folder (not /tmp)",
            (false, _) => "its folder and /tmp",
        };
        let files = match &p.landlock {
            Ok(abi) => format!(
                "Landlock ABI {abi}: it reads system paths, the toolchains on PATH and its folder, and writes only {writes}"
            ),
            Err(e) => {
                partial.push(format!("files: no Landlock ({e})"));
                "Unix permissions only".to_string()
            }
        };
        Isolation {
            processes,
            user,
            network,
            files,
            limits: limits.describe(),
            partial,
        }
    }

    /// A new room: a folder of the grader's, holding the subject's own (HOME, TMPDIR, lab
    /// 5's files), which the subject's user owns.
    pub fn room(&self) -> std::io::Result<Room> {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::Builder::new()
            .prefix("proxylab-room-")
            .tempdir_in(scratch())?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711))?;
        let own = dir.path().join("own");
        std::fs::create_dir_all(own.join("tmp"))?;
        std::fs::create_dir_all(own.join("shm"))?;
        std::fs::set_permissions(&own, std::fs::Permissions::from_mode(0o700))?;
        if let Some((uid, gid, _)) = &self.user {
            files::chown_tree(&own, *uid, *gid)?;
        }
        Ok(Room { _dir: dir, own })
    }

    /// Gives a folder to the subject's user (a submission's private copy).
    pub fn give(&self, dir: &Path) -> std::io::Result<()> {
        match &self.user {
            Some((uid, gid, _)) => files::chown_tree(dir, *uid, *gid),
            None => Ok(()),
        }
    }

    /// Whether the subject's user can read `path` (always, when it is the grader's own).
    pub fn can_read(&self, path: &Path) -> bool {
        self.user.is_none() || files::reachable_by_others(path)
    }

    /// Starts `launch` in `room`; its stdout and stderr go to `output`.
    pub fn start(
        &self,
        room: &Room,
        launch: Launch<'_>,
        output: Output,
    ) -> Result<Process, String> {
        let helper = self.protections.helper.as_ref().map_err(Clone::clone)?;
        let spec = self.spec(room, &launch);
        let json = serde_json::to_string(&spec).map_err(|e| e.to_string())?;
        let dirs = std::iter::once(room.own.clone())
            .chain(launch.write)
            .collect();
        Process::start(helper, &json, output, launch.limits, dirs)
    }

    fn spec(&self, room: &Room, launch: &Launch<'_>) -> Spec {
        static ROOMS: AtomicU64 = AtomicU64::new(0);
        let p = &self.protections;
        let n = ROOMS.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{}-{n}", std::process::id());
        let containment = p.containment();
        let user = self.user.as_ref().map(|(u, g, _)| (*u, *g));
        let path_var = self.subject_path();
        // A submission's room has a /tmp and a /dev/shm of its own, where rooms are outside
        // /tmp and it gets a mount namespace; a `--cmd` program shares the machine's.
        let under_tmp = std::iter::once(&room.own)
            .chain(launch.write.iter())
            .chain(std::iter::once(&launch.cwd.to_path_buf()))
            .any(|p| p.starts_with("/tmp") || p.starts_with("/dev/shm"));
        let private_tmp = (launch.private_tmp
            && containment == Containment::PidNamespace
            && p.mount_namespace.is_ok()
            && !under_tmp)
            .then(|| (room.own.join("tmp"), room.own.join("shm")));
        let mut own = vec![room.own.clone()];
        own.extend(launch.write.iter().cloned());
        // /tmp: its own, or (a `--cmd` program's) the machine's; never the machine's for a
        // submission. /dev/shm, which Python's multiprocessing needs: its own, or shared.
        if private_tmp.is_some() || !launch.private_tmp {
            own.push(PathBuf::from("/tmp"));
        }
        own.push(PathBuf::from("/dev/shm"));
        let landlock = p
            .landlock
            .is_ok()
            .then(|| files::rules(&own, &launch.read, &path_var));
        let nproc = match &self.user {
            // A uid of its own runs nothing else.
            Some((uid, _, _)) if *uid >= UID_BASE => Some(launch.limits.tasks),
            Some((uid, _, _)) => Some(launch.limits.tasks + tasks_of(*uid)),
            None => Some(launch.limits.tasks + tasks_of(rustix::process::getuid().as_raw())),
        };
        Spec {
            command: launch.command.to_string(),
            cwd: launch.cwd.to_path_buf(),
            env: self.subject_env(room, &path_var, &tag, private_tmp.is_some()),
            user,
            containment,
            user_namespace: containment == Containment::PidNamespace && !p.root,
            private_proc: containment == Containment::PidNamespace && p.root,
            private_tmp,
            cgroup: (containment == Containment::Cgroup).then(|| {
                p.cgroup
                    .as_ref()
                    .map(|b| b.join(format!("proxylab-{tag}")))
                    .unwrap_or_default()
            }),
            landlock,
            limits: launch.limits,
            nproc,
            tag,
        }
    }

    /// PATH for the subject: the grader's, less what its user cannot search.
    fn subject_path(&self) -> String {
        let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into());
        if self.user.is_none() {
            return path;
        }
        let kept: Vec<PathBuf> = std::env::split_paths(&path)
            .filter(|d| d.is_absolute() && files::reachable_by_others(d))
            .collect();
        std::env::join_paths(kept)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or(path)
    }

    /// The subject's environment: nothing of the grader's but what programs need to run
    /// (a CI's tokens stay out), its own HOME and TMPDIR, and the room's tag.
    fn subject_env(
        &self,
        room: &Room,
        path_var: &str,
        tag: &str,
        private_tmp: bool,
    ) -> Vec<(String, String)> {
        const KEPT: &[&str] = &[
            "LANG",
            "LC_ALL",
            "LC_CTYPE",
            "TZ",
            "TERM",
            "JAVA_HOME",
            "GOROOT",
            "RUSTUP_TOOLCHAIN",
        ];
        let mut env: Vec<(String, String)> = KEPT
            .iter()
            .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
            .collect();
        if !env.iter().any(|(k, _)| k == "LANG") {
            env.push(("LANG".into(), "C.UTF-8".into()));
        }
        // rustup's proxies look for their toolchains in ~/.rustup, and HOME is the room's.
        let rustup = std::env::var_os("RUSTUP_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".rustup")))
            .filter(|p| p.is_dir() && self.can_read(p));
        if let Some(r) = rustup {
            env.push(("RUSTUP_HOME".into(), r.display().to_string()));
        }
        let name = match &self.user {
            Some((_, _, name)) if name.starts_with("the account ") => name
                .trim_start_matches("the account ")
                .split(' ')
                .next()
                .unwrap_or("proxylab")
                .to_string(),
            Some(_) => "proxylab".into(),
            None => std::env::var("USER").unwrap_or_else(|_| "proxylab".into()),
        };
        let own = room.own.display().to_string();
        let tmp = if private_tmp {
            "/tmp".to_string()
        } else {
            format!("{own}/tmp")
        };
        // Java reads neither TMPDIR nor HOME, and without an account for the uid its
        // user.home is "?": tell it.
        env.push((
            "JAVA_TOOL_OPTIONS".into(),
            format!("-Djava.io.tmpdir={tmp} -Duser.home={own}"),
        ));
        env.extend([
            ("PATH".into(), path_var.to_string()),
            ("HOME".into(), own.clone()),
            ("TMPDIR".into(), tmp),
            ("USER".into(), name.clone()),
            ("LOGNAME".into(), name),
            (spec::TAG_VAR.into(), tag.to_string()),
        ]);
        env
    }
}

fn err<T>(r: &Result<T, String>) -> &str {
    r.as_ref().err().map_or("", String::as_str)
}

/// Tasks (processes and threads) uid `uid` runs now.
fn tasks_of(uid: u32) -> u64 {
    let mut n = 0;
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return 0;
    };
    for entry in procs.flatten() {
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        };
        if field("Uid:") == Some(u64::from(uid)) {
            n += field("Threads:").unwrap_or(1);
        }
    }
    n
}
