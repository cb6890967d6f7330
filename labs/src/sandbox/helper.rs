//! The room's own processes. The `lab` binary runs them when started as
//! `lab __sandbox ROLE [SPEC]`, before anything else in `main`:
//!
//! - **keeper**: the process the grader starts and holds. It makes the room (a PID
//!   namespace, or a cgroup), starts `init` in it, and ends the room when its stdin closes
//!   — which is how the grader says "the check is over", and which also happens by itself
//!   when the grader dies. It exits only once everything in the room is gone, so a grader
//!   that has waited for it knows that nothing of the subject is left to write anything.
//! - **init**: the room's first process (PID 1 of its namespace). It puts the limits and
//!   the Landlock rules on itself (both are inherited, and cannot be lifted), starts the
//!   subject with `/bin/sh -c` as the room's user, reaps every orphan, and exits with the
//!   subject's status once no process is left.
//! - **probe**: tries each protection once in a throwaway process and prints what works
//!   (JSON), for [`super::Protections`] and `lab doctor`.

use super::spec::{Containment, Spec, SETUP_FAILED, SETUP_FAILED_PREFIX};
use rustix::process::{Pid, Resource, Rlimit, Signal, WaitOptions};
use std::io::Read as _;
use std::process::{Command, Stdio};

/// The first argument that makes `lab` a helper.
pub const ARG: &str = "__sandbox";

/// When this process was started as a helper, runs its role and returns the exit code.
pub fn run_if_helper() -> Option<i32> {
    let mut args = std::env::args().skip(1);
    if args.next()? != ARG {
        return None;
    }
    let role = args.next().unwrap_or_default();
    let text = args.next().unwrap_or_default();
    let spec = || -> Result<Spec, String> {
        serde_json::from_str(&text).map_err(|e| format!("spec: {e}"))
    };
    let outcome = match role.as_str() {
        "keeper" => spec().and_then(keeper),
        "init" => spec().and_then(init),
        "probe" => Ok(probe()),
        other => Err(format!("unknown role {other:?}")),
    };
    Some(outcome.unwrap_or_else(|why| {
        eprintln!("{SETUP_FAILED_PREFIX}{why}");
        SETUP_FAILED
    }))
}

/// An exit code for a wait status: its code, or 128 + the signal, as a shell says it.
fn code(status: rustix::process::WaitStatus) -> i32 {
    if let Some(code) = status.exit_status() {
        code
    } else if let Some(signal) = status.terminating_signal() {
        128 + signal
    } else {
        1
    }
}

fn keeper(spec: Spec) -> Result<i32, String> {
    use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
    use std::sync::Arc;
    let (uid, gid) = (rustix::process::getuid(), rustix::process::getgid());
    // Without root, a user namespace first: only a process with one thread may enter one.
    if spec.user_namespace {
        super::unshare(rustix::thread::UnshareFlags::NEWUSER)
            .map_err(|e| format!("unshare(user namespace): {e}"))?;
        super::map_user(uid.as_raw(), gid.as_raw())?;
    }
    // The grader closes our stdin when the check is over (or dies, which closes it too).
    // This thread must start before the PID namespace is made: a process whose children
    // go to another PID namespace may not start threads.
    let (init_pid, told) = (
        Arc::new(AtomicI32::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    {
        let (init_pid, told) = (init_pid.clone(), told.clone());
        let (containment, cgroup) = (spec.containment, spec.cgroup.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            let mut stdin = std::io::stdin();
            while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
            told.store(true, Ordering::SeqCst);
            if let Some(init) = Pid::from_raw(init_pid.load(Ordering::SeqCst)) {
                stop(containment, cgroup.as_deref(), init);
            }
        });
    }
    match spec.containment {
        Containment::PidNamespace => {
            let mut flags = rustix::thread::UnshareFlags::NEWPID;
            if spec.private_proc || spec.private_tmp.is_some() {
                flags |= rustix::thread::UnshareFlags::NEWNS;
            }
            super::unshare(flags).map_err(|e| format!("unshare(PID namespace): {e}"))?;
            if let Some((tmp, shm)) = &spec.private_tmp {
                private_tmp(tmp, shm)?;
            }
        }
        Containment::Cgroup => {
            let dir = spec.cgroup.as_ref().ok_or("no cgroup named")?;
            std::fs::create_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            join_cgroup(dir, std::process::id())?;
        }
        Containment::ProcessGroup => {}
    }
    let json = serde_json::to_string(&spec).map_err(|e| e.to_string())?;
    // This very executable, by the link that reaches it whatever the room mounted over the
    // path it was started from (a `lab` in /tmp, under the room's own /tmp).
    let mut command = Command::new("/proc/self/exe");
    command
        .args([ARG, "init", &json])
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit());
    if spec.containment == Containment::ProcessGroup {
        use std::os::unix::process::CommandExt as _;
        command.process_group(0);
    }
    let child = command.spawn().map_err(|e| format!("starting init: {e}"));
    if let (Containment::Cgroup, Some(dir)) = (spec.containment, &spec.cgroup) {
        // The keeper leaves the room's cgroup: cgroup.kill must not end it.
        if let Some(parent) = dir.parent() {
            let _ = join_cgroup(parent, std::process::id());
        }
    }
    let child = child?;
    let init = Pid::from_raw(child.id() as i32).ok_or("init has no pid")?;
    init_pid.store(init.as_raw_nonzero().get(), Ordering::SeqCst);
    if told.load(Ordering::SeqCst) {
        stop(spec.containment, spec.cgroup.as_deref(), init);
    }
    let status = loop {
        match rustix::process::waitpid(Some(init), WaitOptions::empty()) {
            Ok(Some((_, status))) => break code(status),
            Ok(None) => continue,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(format!("waiting for init: {e}")),
        }
    };
    // init is gone. In a PID namespace so is everything else; otherwise end what is left.
    stop(spec.containment, spec.cgroup.as_deref(), init);
    if spec.containment != Containment::PidNamespace {
        sweep(&spec.tag);
    }
    if let Some(dir) = &spec.cgroup {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::fs::remove_dir(dir).is_err() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
    Ok(status)
}

/// In the room's own mount namespace (nothing it mounts reaches the machine's): its folders
/// `tmp` and `shm` become its `/tmp` and `/dev/shm`.
fn private_tmp(tmp: &std::path::Path, shm: &std::path::Path) -> Result<(), String> {
    use rustix::mount::{mount_bind, mount_change, MountPropagationFlags};
    mount_change(
        "/",
        MountPropagationFlags::REC | MountPropagationFlags::PRIVATE,
    )
    .map_err(|e| format!("making mounts private: {e}"))?;
    mount_bind(tmp, "/tmp").map_err(|e| format!("its own /tmp: {e}"))?;
    if std::path::Path::new("/dev/shm").is_dir() {
        mount_bind(shm, "/dev/shm").map_err(|e| format!("its own /dev/shm: {e}"))?;
    }
    Ok(())
}

/// Moves process `pid` into the cgroup `dir`.
fn join_cgroup(dir: &std::path::Path, pid: u32) -> Result<(), String> {
    std::fs::write(dir.join("cgroup.procs"), pid.to_string())
        .map_err(|e| format!("{}: {e}", dir.join("cgroup.procs").display()))
}

/// Ends the room: its init (and with it a PID namespace), its cgroup, or its group.
fn stop(containment: Containment, cgroup: Option<&std::path::Path>, init: Pid) {
    match containment {
        Containment::PidNamespace => {
            let _ = rustix::process::kill_process(init, Signal::KILL);
        }
        Containment::Cgroup => {
            if let Some(dir) = cgroup {
                let _ = std::fs::write(dir.join("cgroup.kill"), "1");
                // Until the kernel says the cgroup is empty.
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
                while std::fs::read_to_string(dir.join("cgroup.events"))
                    .is_ok_and(|t| t.contains("populated 1"))
                    && std::time::Instant::now() < deadline
                {
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
            }
        }
        Containment::ProcessGroup => {
            let _ = rustix::process::kill_process_group(init, Signal::KILL);
            let _ = rustix::process::kill_process(init, Signal::KILL);
        }
    }
}

/// Kills every process whose environment carries the room's tag, until none is left (a
/// process may fork while the sweep runs), for at most two seconds.
fn sweep(tag: &str) {
    let mark = format!("{}={tag}", super::spec::TAG_VAR);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        let tagged = super::watch::tagged(&mark);
        if tagged.is_empty() || std::time::Instant::now() > deadline {
            return;
        }
        for pid in tagged {
            if let Some(pid) = Pid::from_raw(pid as i32) {
                let _ = rustix::process::kill_process(pid, Signal::KILL);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

fn init(spec: Spec) -> Result<i32, String> {
    // When the keeper goes, so does init (and with it the namespace).
    let _ = rustix::process::set_parent_process_death_signal(Some(Signal::KILL));
    if spec.containment != Containment::PidNamespace {
        // PID 1 adopts orphans by itself; elsewhere init asks to.
        rustix::process::set_child_subreaper(Some(rustix::process::getpid()))
            .map_err(|e| format!("becoming the subreaper: {e}"))?;
    }
    if spec.private_proc {
        use rustix::mount::{mount, mount_change, MountFlags, MountPropagationFlags};
        mount_change(
            "/",
            MountPropagationFlags::REC | MountPropagationFlags::PRIVATE,
        )
        .map_err(|e| format!("making mounts private: {e}"))?;
        mount(
            "proc",
            "/proc",
            "proc",
            MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
            None,
        )
        .map_err(|e| format!("mounting the room's /proc: {e}"))?;
        // And a /sys of its network namespace (only lo under /sys/class/net); where that is
        // refused, the machine's stays, read-only to it by Landlock.
        let _ = mount(
            "sysfs",
            "/sys",
            "sysfs",
            MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
            None,
        );
    }
    // The subject, same uid or not, may not trace or read init.
    let _ = rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable);
    limit(Resource::Nofile, spec.limits.open_files)?;
    limit(Resource::Fsize, spec.limits.file_size)?;
    limit(Resource::Cpu, spec.limits.cpu_seconds)?;
    if let Some(n) = spec.nproc {
        limit(Resource::Nproc, n)?;
    }
    if let Some(rules) = &spec.landlock {
        super::files::restrict(rules)?;
    }
    // stdin: open and silent, like an idle terminal. (/dev/null ends at once, and a program
    // with a console loop then spins on end-of-file.) init holds the other end, writes
    // nothing, and closes it only when it exits.
    let (stdin, _silent) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| format!("a pipe for stdin: {e}"))?;
    let mut command = Command::new("/bin/sh");
    command
        .args(["-c", &spec.command])
        .current_dir(&spec.cwd)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::from(stdin))
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit());
    if let Some((uid, gid)) = spec.user {
        use std::os::unix::process::CommandExt as _;
        // std drops the supplementary groups too, when root switches users.
        command.uid(uid).gid(gid);
    }
    let subject = command
        .spawn()
        .map_err(|e| format!("starting /bin/sh: {e}"))?;
    let subject = subject.id() as i32;
    let mut status = 0;
    loop {
        match rustix::process::wait(WaitOptions::empty()) {
            Ok(Some((pid, s))) if pid.as_raw_nonzero().get() == subject => status = code(s),
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => {}
            // No child left: the subject and everything it started are gone.
            Err(_) => return Ok(status),
        }
    }
}

/// Lowers `resource` to `value` (never above the hard limit it already has).
fn limit(resource: Resource, value: u64) -> Result<(), String> {
    let now = rustix::process::getrlimit(resource);
    let cap = |v: Option<u64>| v.map_or(value, |m| m.min(value));
    let soft = cap(now.maximum);
    // CPU: SIGXCPU at the soft limit, SIGKILL a second later.
    let hard = if resource == Resource::Cpu {
        cap(now.maximum.map(|m| m.max(soft + 1))).max(soft + 1)
    } else {
        soft
    };
    rustix::process::setrlimit(
        resource,
        Rlimit {
            current: Some(soft),
            maximum: Some(hard.max(soft)),
        },
    )
    .map_err(|e| format!("setrlimit({resource:?}, {value}): {e}"))
}

/// What the probe found, one field per protection.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ProbeResult {
    pub pid_namespace: Result<(), String>,
    /// A mount namespace of the room's own, for its private /tmp.
    pub mount_namespace: Result<(), String>,
    pub network_namespace: Result<(), String>,
    pub landlock: Result<u8, String>,
}

fn probe() -> i32 {
    let root = rustix::process::geteuid().is_root();
    let (uid, gid) = (rustix::process::getuid(), rustix::process::getgid());
    let mut result = ProbeResult {
        pid_namespace: Err("not tried".into()),
        mount_namespace: Err("not tried".into()),
        network_namespace: Err("not tried".into()),
        landlock: Err("not tried".into()),
    };
    // Without root every namespace needs a user namespace first (and only one thread).
    let userns = if root {
        Ok(())
    } else {
        super::unshare(rustix::thread::UnshareFlags::NEWUSER)
            .map_err(|e| format!("user namespace: {e}"))
            .and_then(|()| super::map_user(uid.as_raw(), gid.as_raw()))
    };
    result.network_namespace = userns.clone().and_then(|()| {
        super::unshare(rustix::thread::UnshareFlags::NEWNET)
            .map_err(|e| format!("unshare: {e}"))?;
        super::network::loopback_up().map_err(|e| format!("bringing lo up: {e}"))
    });
    result.mount_namespace = userns.clone().and_then(|()| {
        super::unshare(rustix::thread::UnshareFlags::NEWNS).map_err(|e| format!("unshare: {e}"))?;
        rustix::mount::mount_change(
            "/",
            rustix::mount::MountPropagationFlags::REC
                | rustix::mount::MountPropagationFlags::PRIVATE,
        )
        .map_err(|e| format!("making mounts private: {e}"))
    });
    result.pid_namespace = userns.and_then(|()| {
        super::unshare(rustix::thread::UnshareFlags::NEWPID)
            .map_err(|e| format!("unshare: {e}"))?;
        // The namespace is made by its first process: start one, as the room's user.
        let mut first = Command::new("/bin/sh");
        first.args(["-c", "exit 0"]);
        if root {
            use std::os::unix::process::CommandExt as _;
            first.uid(super::default_uid()).gid(super::default_uid());
        }
        match first.status() {
            Ok(s) if s.success() => Ok(()),
            Ok(s) => Err(format!("its first process failed ({s})")),
            Err(e) => Err(format!("its first process did not start: {e}")),
        }
    });
    result.landlock = super::files::probe();
    println!("{}", serde_json::to_string(&result).unwrap_or_default());
    0
}
