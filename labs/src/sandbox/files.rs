//! A narrow filesystem: what the subject may read, run and write (Landlock), and the private
//! copy of a submission it works in.
//!
//! Landlock (Linux ≥ 5.13) lets an unprivileged process give up access to every file but the
//! ones it names, for itself and everything it starts, for good. The room's init does so
//! before it starts the subject: it may read and run the system's paths and the toolchains
//! on PATH, and read and write its own folder — never the `lab` binary, the points file, the
//! results, the autograder's scripts, or another submission.

use super::spec::FsRules;
use landlock::{
    Access, AccessFs, CompatLevel, Compatible, LandlockStatus, PathBeneath, PathFd, Ruleset,
    RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope, ABI,
};
use std::path::{Path, PathBuf};

/// The newest Landlock ABI this code asks for; older kernels get what they support.
const ABI_WANTED: ABI = ABI::V6;

/// Where programs, libraries and their configuration live on a Linux system.
pub const SYSTEM_PATHS: &[&str] = &[
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/etc",
    "/opt",
    "/nix/store",
    "/snap",
    "/proc",
    "/sys",
    "/dev",
    "/run",
];

/// Device files every program may write to.
const DEVICES: &[&str] = &["/dev/null", "/dev/zero", "/dev/full", "/dev/tty"];

/// The rules for a subject whose own folders are `own` (read and written), that may also
/// read `read` (a `--cmd` program's files).
pub fn rules(own: &[PathBuf], read: &[PathBuf], path_var: &str) -> FsRules {
    let mut readable: Vec<PathBuf> = SYSTEM_PATHS.iter().map(PathBuf::from).collect();
    readable.extend(toolchains(path_var));
    readable.extend(read.iter().cloned());
    let write: Vec<PathBuf> = own.to_vec();
    FsRules {
        read: existing(readable),
        write: existing(write),
        write_files: existing(DEVICES.iter().map(PathBuf::from).collect()),
    }
}

fn existing(mut paths: Vec<PathBuf>) -> Vec<PathBuf> {
    paths.retain(|p| p.exists());
    paths.sort();
    paths.dedup();
    paths
}

/// The toolchains on PATH outside the system's paths: each directory, and its parent when
/// that is an installation's prefix (`~/.pyenv/shims` → `~/.pyenv`, `~/.nvm/versions/node/v20/bin`
/// → its version's folder), but never a home folder itself or `~/.cargo` (which holds
/// credentials); rustup's toolchains (`$RUSTUP_HOME`, `~/.rustup`) when cargo is on PATH.
fn toolchains(path_var: &str) -> Vec<PathBuf> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let mut out = Vec::new();
    for dir in std::env::split_paths(path_var) {
        if !dir.is_absolute() || SYSTEM_PATHS.iter().any(|s| dir.starts_with(s)) {
            continue;
        }
        out.push(dir.clone());
        let Some(parent) = dir.parent() else {
            continue;
        };
        let is_home = home.as_deref() == Some(parent)
            || parent.parent() == Some(Path::new("/home"))
            || parent == Path::new("/root");
        let credentials = parent.file_name().is_some_and(|n| n == ".cargo");
        if parent != Path::new("/") && !is_home && !credentials {
            out.push(parent.to_path_buf());
        }
        if credentials {
            let rustup = std::env::var_os("RUSTUP_HOME")
                .map(PathBuf::from)
                .or_else(|| parent.parent().map(|h| h.join(".rustup")));
            out.extend(rustup);
        }
    }
    out
}

/// Puts `rules` on this process, for good (and on everything it starts).
pub fn restrict(rules: &FsRules) -> Result<(), String> {
    let err = |e: landlock::RulesetError| format!("Landlock: {e}");
    let abi = ABI_WANTED;
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(abi))
        .map_err(err)?
        .scope(Scope::from_all(abi))
        .map_err(err)?
        .create()
        .map_err(err)?;
    let grants = [
        (&rules.read, AccessFs::from_read(abi)),
        (&rules.write, AccessFs::from_all(abi)),
        (&rules.write_files, AccessFs::from_file(abi)),
    ];
    for (paths, access) in grants {
        for path in paths {
            let fd = PathFd::new(path).map_err(|e| format!("Landlock: {}: {e}", path.display()))?;
            ruleset = ruleset
                .add_rule(PathBeneath::new(fd, access))
                .map_err(err)?;
        }
    }
    let status = ruleset.restrict_self().map_err(err)?;
    match status.ruleset {
        RulesetStatus::NotEnforced => Err("Landlock: the kernel did not enforce the rules".into()),
        _ => Ok(()),
    }
}

/// Whether Landlock works here (this process restricts itself: call it last, in a process
/// of its own): the ABI in force, or why not.
pub fn probe() -> Result<u8, String> {
    if super::without("landlock") {
        return Err("switched off by PROXYLAB_SANDBOX_WITHOUT".into());
    }
    let status = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(ABI_WANTED))
        .and_then(|r| r.create())
        .and_then(|r| {
            r.add_rules(landlock::path_beneath_rules(
                ["/"],
                AccessFs::from_all(ABI_WANTED),
            ))
        })
        .and_then(|r| r.restrict_self())
        .map_err(|e| e.to_string())?;
    match (status.ruleset, status.landlock) {
        (RulesetStatus::NotEnforced, LandlockStatus::NotEnabled) => {
            Err("the kernel has Landlock but it is not enabled (boot with lsm=…,landlock)".into())
        }
        (RulesetStatus::NotEnforced, _) => {
            Err("the kernel has no Landlock (Linux 5.13 or newer, built with it)".into())
        }
        (_, LandlockStatus::Available { effective_abi, .. }) => Ok(effective_abi as u8),
        _ => Err("not enforced".into()),
    }
}

/// Whether every user may reach `path` (each folder on the way searchable by others, the
/// file itself readable by others): what an unprivileged subject needs of a `--cmd` file.
pub fn reachable_by_others(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    let Ok(path) = path.canonicalize() else {
        return false;
    };
    let readable = std::fs::metadata(&path).is_ok_and(|m| m.permissions().mode() & 0o004 != 0);
    readable
        && path
            .ancestors()
            .skip(1)
            .all(|dir| std::fs::metadata(dir).is_ok_and(|m| m.permissions().mode() & 0o001 != 0))
}

/// How much a submission's copy may hold.
pub const COPY_LIMIT: u64 = 512 << 20;

/// Copies the submission `from` into `to` (which must not exist): files, folders and
/// symbolic links as links (never followed), without `.git`, and — when `rebuilt` — without
/// `target/` next to a `Cargo.toml` (the build makes it again). Refuses past [`COPY_LIMIT`].
pub fn copy_submission(from: &Path, to: &Path, rebuilt: bool) -> Result<(), String> {
    let cargo = rebuilt && from.join("Cargo.toml").exists();
    let mut total = 0u64;
    copy_dir(from, to, &mut total, true, cargo)
}

fn copy_dir(from: &Path, to: &Path, total: &mut u64, top: bool, cargo: bool) -> Result<(), String> {
    let io = |e: std::io::Error, p: &Path| format!("copying {}: {e}", p.display());
    std::fs::create_dir(to).map_err(|e| io(e, to))?;
    for entry in std::fs::read_dir(from).map_err(|e| io(e, from))? {
        let entry = entry.map_err(|e| io(e, from))?;
        let name = entry.file_name();
        if name == ".git" || (top && cargo && name == "target") {
            continue;
        }
        let (src, dst) = (entry.path(), to.join(&name));
        let kind = entry.file_type().map_err(|e| io(e, &src))?;
        if kind.is_symlink() {
            let target = std::fs::read_link(&src).map_err(|e| io(e, &src))?;
            std::os::unix::fs::symlink(target, &dst).map_err(|e| io(e, &dst))?;
        } else if kind.is_dir() {
            copy_dir(&src, &dst, total, false, cargo)?;
        } else if kind.is_file() {
            *total += entry.metadata().map(|m| m.len()).unwrap_or(0);
            if *total > COPY_LIMIT {
                return Err(format!(
                    "the submission holds more than {} (without .git and a Cargo build's target/): too large to grade",
                    super::spec::bytes(COPY_LIMIT)
                ));
            }
            std::fs::copy(&src, &dst).map_err(|e| io(e, &src))?;
        }
    }
    Ok(())
}

/// Gives `path` and everything below it to `uid:gid` (symbolic links themselves, not what
/// they point to).
pub fn chown_tree(path: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
    if std::fs::symlink_metadata(path)?.is_dir() {
        for entry in std::fs::read_dir(path)? {
            chown_tree(&entry?.path(), uid, gid)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toolchains_on_path_are_readable_but_never_a_home_or_cargos_credentials() {
        let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
        let path = format!(
            "/usr/bin:{home}/.pyenv/shims:{home}/.cargo/bin:{home}/bin:/srv/go/bin:relative"
        );
        let got = toolchains(&path);
        let has = |p: &str| got.iter().any(|g| g == Path::new(p));
        assert!(has(&format!("{home}/.pyenv/shims")) && has(&format!("{home}/.pyenv")));
        assert!(has(&format!("{home}/.cargo/bin")) && !has(&format!("{home}/.cargo")));
        assert!(has(&format!("{home}/bin")) && !has(&home));
        assert!(has("/srv/go/bin") && has("/srv/go"));
        assert!(!got.iter().any(|g| g.starts_with("/usr") || g.is_relative()));
    }

    #[test]
    fn a_copy_keeps_links_as_links_and_leaves_out_git_and_a_cargo_target() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("sub");
        std::fs::create_dir_all(from.join(".git")).unwrap();
        std::fs::create_dir_all(from.join("target/release")).unwrap();
        std::fs::create_dir_all(from.join("src")).unwrap();
        std::fs::write(from.join("Cargo.toml"), "[package]\n").unwrap();
        std::fs::write(from.join("src/main.rs"), "fn main() {}\n").unwrap();
        std::fs::write(from.join("target/release/myproxy"), "old").unwrap();
        std::os::unix::fs::symlink("/etc/hostname", from.join("link")).unwrap();
        let to = dir.path().join("copy");
        copy_submission(&from, &to, true).unwrap();
        assert!(to.join("src/main.rs").is_file());
        assert!(!to.join(".git").exists() && !to.join("target").exists());
        assert_eq!(
            std::fs::read_link(to.join("link")).unwrap(),
            Path::new("/etc/hostname")
        );
    }
}
