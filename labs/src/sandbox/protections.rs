//! What this machine allows: each protection tried once, in a throwaway process
//! (`lab __sandbox probe`), and where the helper — the `lab` binary — is.

use super::{helper, without, Containment};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// What this machine allows, found once per process by trying each protection in a
/// throwaway process (`lab __sandbox probe`).
#[derive(Debug, Clone)]
pub struct Protections {
    /// `lab` runs as root (so it can give the subject another user).
    pub root: bool,
    /// The `lab` binary that runs the room's keeper and init.
    pub helper: Result<PathBuf, String>,
    pub pid_namespace: Result<(), String>,
    /// A mount namespace of the room's own, for a submission's private /tmp.
    pub mount_namespace: Result<(), String>,
    /// A cgroup v2 folder under which a room's cgroup can be made.
    pub cgroup: Result<PathBuf, String>,
    /// Whether a network namespace can be made (`lab` enters one when it grades).
    pub network: Result<(), String>,
    /// The Landlock ABI enforced.
    pub landlock: Result<u8, String>,
}

impl Protections {
    pub fn detect() -> Protections {
        let root = rustix::process::geteuid().is_root();
        let helper = locate_helper();
        let probe = match &helper {
            Ok(path) => run_probe(path),
            Err(e) => Err(e.clone()),
        };
        let (pid_namespace, mount_namespace, network, landlock) = match probe {
            Ok(p) => (
                p.pid_namespace,
                p.mount_namespace,
                p.network_namespace,
                p.landlock,
            ),
            Err(e) => (Err(e.clone()), Err(e.clone()), Err(e.clone()), Err(e)),
        };
        let pid_namespace = if without("pidns") {
            Err("switched off by PROXYLAB_SANDBOX_WITHOUT".into())
        } else {
            pid_namespace
        };
        Protections {
            root: root && !without("user"),
            helper,
            pid_namespace,
            mount_namespace,
            cgroup: cgroup_base(),
            network,
            landlock,
        }
    }

    /// How this machine's rooms keep every process of the subject.
    pub fn containment(&self) -> Containment {
        if self.pid_namespace.is_ok() {
            Containment::PidNamespace
        } else if self.cgroup.is_ok() {
            Containment::Cgroup
        } else {
            Containment::ProcessGroup
        }
    }
}

/// The `lab` binary: `PROXYLAB_LAB_BIN`; this program when it is `lab`; else `lab` beside
/// it or one folder up (a test binary in `target/debug/deps/`).
fn locate_helper() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("PROXYLAB_LAB_BIN") {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "PROXYLAB_LAB_BIN={} does not exist",
                path.display()
            ))
        };
    }
    let me = std::env::current_exe().map_err(|e| format!("finding this program: {e}"))?;
    if me.file_name().is_some_and(|n| n == "lab") {
        return Ok(me);
    }
    let dir = me.parent().map(Path::to_path_buf).unwrap_or_default();
    [dir.join("lab"), dir.join("../lab")]
        .into_iter()
        .find(|p| p.is_file())
        .ok_or_else(|| {
            format!(
                "no `lab` binary to run the sandbox (beside {}; PROXYLAB_LAB_BIN names one)",
                me.display()
            )
        })
}

fn run_probe(helper: &Path) -> Result<helper::ProbeResult, String> {
    let mut child = std::process::Command::new(helper)
        .args([helper::ARG, "probe"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("running {}: {e}", helper.display()))?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while child.try_wait().ok().flatten().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err("the sandbox probe did not finish within 10 s".into());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let mut text = String::new();
    if let Some(mut out) = child.stdout.take() {
        use std::io::Read as _;
        let _ = out.read_to_string(&mut text);
    }
    serde_json::from_str(text.trim()).map_err(|e| format!("the sandbox probe said {text:?}: {e}"))
}

/// Where rooms' cgroups go: this process's own cgroup v2, when a folder can be made in it.
fn cgroup_base() -> Result<PathBuf, String> {
    if without("cgroup") {
        return Err("switched off by PROXYLAB_SANDBOX_WITHOUT".into());
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string())?;
    let mount = mounts
        .lines()
        .find(|l| {
            l.split(" - ")
                .nth(1)
                .is_some_and(|t| t.starts_with("cgroup2 "))
        })
        .and_then(|l| l.split_whitespace().nth(4))
        .ok_or("no cgroup v2 is mounted")?;
    let own = std::fs::read_to_string("/proc/self/cgroup").map_err(|e| e.to_string())?;
    let path = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or("this process is in no cgroup v2")?;
    let base = Path::new(mount).join(path.trim_start_matches('/'));
    if !base.join("cgroup.kill").exists() && !base.join("cgroup.procs").exists() {
        return Err(format!("{} is not a cgroup", base.display()));
    }
    let test = base.join(format!("proxylab-probe-{}", std::process::id()));
    std::fs::create_dir(&test).map_err(|e| format!("{}: {e}", base.display()))?;
    let killable = test.join("cgroup.kill").exists();
    let _ = std::fs::remove_dir(&test);
    if killable {
        Ok(base)
    } else {
        Err("cgroup.kill is missing (Linux 5.14 or newer has it)".into())
    }
}
