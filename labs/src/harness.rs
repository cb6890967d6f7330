//! The harness: the origin, the subject under test, and what checks use to talk to them.
//!
//! Takes: which subject to grade (the reference proxy, any program started with `--cmd`, or
//! one already running at `--addr`). Returns: an [`Env`] the checks run against, torn down
//! (the subject's room ended, every process it started with it) when it is dropped, even
//! on panic.
//!
//! Every exchange with the subject has a deadline of its own (a *step*, 5 s unless told),
//! and a step that runs out says which step it was: "sent GET …; no response head within
//! 5 s", "Content-Length said 100; 60 bytes came, then nothing for 5 s".

use crate::process::{self, Listening, Output};
use crate::sandbox::{self, Isolation, Launch, Room, Stop};
use crate::Options;
use proxy::http::wire::{self, BodyError, Framing, HeadError, Limits, Reader, ResponseHead};
use proxy::observe::capture::{split, Capture, TapRead, TapWrite};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// How long a subject may take to start listening.
pub const START_DEADLINE: Duration = Duration::from_secs(15);

/// What to grade.
#[derive(Debug, Clone)]
pub enum Subject {
    /// The reference proxy from this workspace, in this process, with extra flags
    /// (`{rules}` and `{log}` are replaced as for a command).
    Reference(Vec<String>),
    /// Any program: `{port}` becomes a free port it must listen on, `{rules}` the rules file
    /// the lab manages and `{log}` the access log it reads. It runs from the current folder.
    Command(String),
    /// A submission's program (the same placeholders), run from `dir`: the submission's
    /// private copy, which it may write.
    Folder { dir: PathBuf, command: String },
    /// A subject already running (the lab cannot restart it).
    Addr(SocketAddr),
}

impl Subject {
    /// The reference with a lab's flags plus `extra` (how mutants are made).
    pub fn reference(flags: &[&str], extra: &[&str]) -> Subject {
        Subject::Reference(flags.iter().chain(extra).map(|s| s.to_string()).collect())
    }

    /// Whether the subject can be graded at all, said once, before any check runs: a
    /// command must say where its port goes.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Subject::Command(cmd) | Subject::Folder { command: cmd, .. }
                if cmd.trim().is_empty() =>
            {
                Err("the command to grade is empty".into())
            }
            Subject::Command(cmd) | Subject::Folder { command: cmd, .. }
                if !cmd.contains("{port}") =>
            {
                Err(format!(
                "the command {cmd:?} has no {{port}}: the grader starts your program on a port \
                 of its choosing and puts the number where {{port}} is, e.g. \
                 --cmd 'python3 myproxy.py {{port}}'"
                ))
            }
            _ => Ok(()),
        }
    }
}

/// Files a lab shares with its subject, in the subject's own folder (its room's).
#[derive(Debug)]
pub struct Files {
    /// Holds the files when no room does (the reference, `--addr`).
    _dir: Option<tempfile::TempDir>,
    /// A plain list of blocked hosts, one per line (lab 5).
    pub rules: PathBuf,
    /// Where the subject writes its access log (lab 5).
    pub log: PathBuf,
}

impl Files {
    /// In `dir` (a room's own folder), or a temporary folder of their own.
    fn new(rules_text: &str, dir: Option<&std::path::Path>) -> std::io::Result<Files> {
        let own = match dir {
            Some(_) => None,
            None => Some(tempfile::Builder::new().prefix("proxylab-lab-").tempdir()?),
        };
        let dir = dir
            .map_or_else(
                || own.as_ref().map(|d| d.path().to_path_buf()),
                |d| Some(d.to_path_buf()),
            )
            .unwrap_or_default();
        let rules = dir.join("blacklist.txt");
        let log = dir.join("access.log");
        std::fs::write(&rules, rules_text)?;
        // Dated ten seconds back: a change the lab makes later gets a modification time
        // that differs in whole seconds, so a program that compares mtimes in seconds sees it.
        let past = std::time::SystemTime::now() - Duration::from_secs(10);
        std::fs::File::options()
            .append(true)
            .open(&rules)?
            .set_modified(past)?;
        Ok(Files {
            _dir: own,
            rules,
            log,
        })
    }

    fn fill(&self, template: &str, port: u16) -> String {
        template
            .replace("{port}", &port.to_string())
            .replace("{rules}", &self.rules.display().to_string())
            .replace("{log}", &self.log.display().to_string())
    }
}

/// The reference proxy running in this process (none in the student kit's `lab`).
#[cfg(feature = "reference")]
type Reference = proxy::Handle;
#[cfg(not(feature = "reference"))]
#[derive(Debug)]
struct Reference;

#[cfg(not(feature = "reference"))]
impl Reference {
    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 0))
    }

    async fn shutdown(self) {}
}

/// A running subject.
enum Running {
    Reference(Reference),
    Child(sandbox::Process),
    External,
}

/// Why the harness could not start.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("origin-sim did not start: {0}")]
    Origin(String),
    /// The subject did not start listening: no check can be judged.
    #[error("the subject did not start: {0}")]
    Subject(String),
    /// The subject is not the student's own program (proxylab's, or a known proxy).
    #[error("{0}")]
    Refused(String),
    /// The grader could not set the subject's room up: a grading error, not the student's.
    #[error("the grader could not start your program in its sandbox (this is not your program's fault; tell your instructor): {0}")]
    Sandbox(String),
}

/// Everything a check needs: the origin, the subject's address, the shared files.
pub struct Env {
    pub origin: origin_sim::Handle,
    pub subject: SocketAddr,
    pub files: Files,
    running: Running,
    /// The subject's room (after `running`: dropped once the subject is gone).
    _room: Option<Room>,
    /// What the subject was graded under (`None`: the reference, or `--addr`).
    pub isolation: Option<Isolation>,
    /// `--pcap-dir`: what the harness saw on both sides (its own connections to the
    /// subject, and the origin's connections from it).
    pub capture: Option<Arc<Capture>>,
    /// How long one step may take.
    pub step: Duration,
}

impl Env {
    /// Starts origin-sim (every listener, on loopback) and the subject for check `check` of
    /// lab `lab`, with the rules file holding `rules`. For a chat lab the reference subject
    /// is origin-sim's own chat room.
    pub async fn start(
        subject: &Subject,
        lab: &crate::Lab,
        check: &str,
        options: &Options,
    ) -> Result<Env, HarnessError> {
        subject.validate().map_err(HarnessError::Subject)?;
        let capture = match &options.pcap_dir {
            Some(dir) => {
                let path = dir.join(format!("lab{}-{check}.pcap", lab.number));
                Some(
                    Capture::create(&path, 256 << 20)
                        .map_err(|e| HarnessError::Origin(format!("{}: {e}", path.display())))?,
                )
            }
            None => None,
        };
        let origin = origin_sim::start(origin_sim::Config {
            capture: capture.clone(),
            ..origin_sim::Config::all_on_loopback()
        })
        .await
        .map_err(|e| HarnessError::Origin(e.to_string()))?;
        let (template, cwd, own_folder) = match subject {
            Subject::Command(template) => {
                let cwd =
                    std::env::current_dir().map_err(|e| HarnessError::Subject(e.to_string()))?;
                (template, cwd, false)
            }
            Subject::Folder { dir, command } => (command, dir.clone(), true),
            Subject::Reference(_) | Subject::Addr(_) => {
                return Env::unconfined(subject, lab, origin, capture, options).await
            }
        };
        let sandbox = sandbox::sandbox();
        let room = sandbox
            .room()
            .map_err(|e| HarnessError::Sandbox(format!("its room: {e}")))?;
        let files = Files::new(lab.rules, Some(&room.own))
            .map_err(|e| HarnessError::Sandbox(e.to_string()))?;
        let port = process::pick_port().map_err(|e| HarnessError::Subject(e.to_string()))?;
        let command = files.fill(template, port);
        let (read, write) = if own_folder {
            (Vec::new(), vec![cwd.clone()])
        } else {
            command_paths(sandbox, &command, &cwd, &room.own)?
        };
        let file = options
            .output_dir
            .as_ref()
            .map(|d| d.join(format!("lab{}-{check}.log", lab.number)));
        let output = Output::new(file.as_deref(), options.echo_output)
            .map_err(|e| HarnessError::Subject(format!("the output file: {e}")))?;
        let launch = Launch {
            command: &command,
            cwd: &cwd,
            read,
            write,
            limits: options.limits,
            private_tmp: own_folder,
        };
        let child = sandbox
            .start(&room, launch, output)
            .map_err(HarnessError::Sandbox)?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut running = Running::Child(child);
        wait_until_listening(addr, &mut running, &command).await?;
        Ok(Env {
            origin,
            subject: addr,
            files,
            running,
            _room: Some(room),
            isolation: Some(sandbox.isolation(&options.limits, own_folder)),
            capture,
            step: options.step,
        })
    }

    /// The reference (in this process) or a subject already running (`--addr`).
    async fn unconfined(
        subject: &Subject,
        lab: &crate::Lab,
        origin: origin_sim::Handle,
        capture: Option<Arc<Capture>>,
        options: &Options,
    ) -> Result<Env, HarnessError> {
        let files =
            Files::new(lab.rules, None).map_err(|e| HarnessError::Subject(e.to_string()))?;
        let (addr, running, isolation) = match subject {
            Subject::Reference(_) if lab.chat => {
                let addr = origin
                    .chat_addr()
                    .ok_or_else(|| HarnessError::Origin("origin-sim has no chat room".into()))?;
                (
                    addr,
                    Running::External,
                    "the reference chat room, inside the grader",
                )
            }
            Subject::Reference(flags) => {
                let handle = start_reference(flags, &files).await?;
                (
                    handle.addr(),
                    Running::Reference(handle),
                    "the reference proxy, inside the grader",
                )
            }
            Subject::Addr(addr) => {
                if !process::something_listens(*addr).await {
                    return Err(HarnessError::Subject(format!("nothing listens on {addr}")));
                }
                (
                    *addr,
                    Running::External,
                    "none: a program the grader did not start (--addr)",
                )
            }
            Subject::Command(_) | Subject::Folder { .. } => {
                return Err(HarnessError::Sandbox(
                    "a program must run in its room".into(),
                ))
            }
        };
        Ok(Env {
            origin,
            subject: addr,
            files,
            running,
            _room: None,
            isolation: Some(Isolation::not_confined(isolation)),
            capture,
            step: options.step,
        })
    }

    /// Why the grader stopped the subject during the check, if it did: a limit it went
    /// past, or its program is not the student's own.
    pub fn stopped(&mut self) -> Option<Stop> {
        match &mut self.running {
            Running::Child(child) => child.inspect(),
            _ => None,
        }
    }

    /// Stops the subject and the origin.
    pub async fn stop(self) {
        let Env {
            origin,
            running,
            capture,
            ..
        } = self;
        match running {
            Running::Reference(handle) => {
                let _ = handle.shutdown().await;
            }
            Running::Child(child) => drop(child),
            Running::External => {}
        }
        origin.shutdown().await;
        if let Some(capture) = capture {
            capture.close();
        }
    }

    /// What the subject program wrote (stdout and stderr), when the grader started it.
    pub fn output(&self) -> Option<&Output> {
        match &self.running {
            Running::Child(child) => Some(child.output()),
            _ => None,
        }
    }

    /// `http://ORIGIN{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin.url())
    }

    /// The command a student can paste to see what the check saw (the URL quoted for the
    /// shell).
    pub fn curl(&self, args: &str, url: &str) -> String {
        format!("curl -sv -x http://{} {args}{}", self.subject, sh(url))
    }

    /// A command that sends `bytes` (written for `printf`) to the subject as they are and
    /// prints what comes back, with the workspace's own client.
    pub fn raw(&self, printf: &str) -> String {
        format!(
            "printf '{printf}' | {} echo --server {}",
            client_bin(),
            self.subject
        )
    }

    /// A new connection to the subject.
    pub async fn connect(&self) -> Result<Conn, String> {
        Conn::open(self.subject, self.step, self.capture.clone()).await
    }

    /// `GET url` through the subject on a new connection.
    pub async fn get(&self, url: &str) -> Result<Response, String> {
        self.request("GET", url, &[], b"").await
    }

    /// One request on a new connection, with `Content-Length` when there is a body.
    pub async fn request(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Response, String> {
        let mut conn = self.connect().await?;
        conn.send_request(method, url, headers, body).await?;
        conn.read(method).await
    }

    /// How many requests the origin has received for `path` (with its query).
    pub fn hits(&self, path: &str) -> u64 {
        self.origin.origin().hits(path)
    }

    /// The requests the origin received for `path` (with its query), as they arrived.
    pub fn seen(&self, path: &str) -> Vec<origin_sim::Seen> {
        let mut all = self.origin.origin().seen();
        all.retain(|s| s.path == path);
        all
    }
}

/// Starts the reference proxy in this process with `flags`.
#[cfg(feature = "reference")]
async fn start_reference(flags: &[String], files: &Files) -> Result<Reference, HarnessError> {
    let mut args = vec!["proxy".to_string(), "--listen".into(), "127.0.0.1:0".into()];
    args.extend(flags.iter().map(|f| files.fill(f, 0)));
    args.extend(["--log".into(), "warn".into()]);
    let config = <proxy::Config as clap::Parser>::try_parse_from(&args)
        .map_err(|e| HarnessError::Subject(e.to_string()))?;
    proxy::start(config)
        .await
        .map_err(|e| HarnessError::Subject(e.to_string()))
}

/// The student kit's `lab` has no reference proxy to start.
#[cfg(not(feature = "reference"))]
async fn start_reference(_: &[String], _: &Files) -> Result<Reference, HarnessError> {
    Err(HarnessError::Subject(
        "this lab was built without the reference proxy (the student kit's): grade your \
         program with --submission DIR or --cmd"
            .into(),
    ))
}

/// What a `--cmd` program may read and write besides its room: it reads the current folder
/// and the files its command names (their folders), and, when it runs as the grader's own
/// user, writes the current folder too (a program that keeps a cache or a log beside itself
/// must not lose points for it). Under root, a file its user cannot reach is refused here,
/// with what to do, rather than failing later as a mystery.
fn command_paths(
    sandbox: &sandbox::Sandbox,
    command: &str,
    cwd: &std::path::Path,
    own: &std::path::Path,
) -> Result<(Vec<PathBuf>, Vec<PathBuf>), HarnessError> {
    let mut read = vec![cwd.to_path_buf()];
    for word in shell_words(command) {
        let path = cwd.join(&word);
        // Its own folder's files ({rules}, {log}) are its own already.
        if !word.contains('/') || !path.exists() || path.starts_with(own) {
            continue;
        }
        if !sandbox.can_read(&path) {
            let user = sandbox
                .user
                .as_ref()
                .map_or("", |(_, _, name)| name.as_str());
            return Err(HarnessError::Subject(format!(
                "{} cannot be read by your program's user ({user}): lab runs as root, so your program runs as an unprivileged user; put the file where every user can read it, or grade its folder with --submission DIR (which lab copies for that user)",
                path.display()
            )));
        }
        let dir = if path.is_dir() {
            path
        } else {
            path.parent()
                .map(std::path::Path::to_path_buf)
                .unwrap_or(path)
        };
        read.push(dir);
    }
    let write = if sandbox.user.is_none() {
        vec![cwd.to_path_buf()]
    } else {
        Vec::new()
    };
    Ok((read, write))
}

/// The words of a shell command as `sh` would split them: quotes ('…' and "…") and
/// backslashes kept together; `;`, `&`, `|`, `<` and `>` end a word. Enough to find the
/// files a command names, not a shell.
fn shell_words(command: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut chars = command.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') => word.extend(chars.next()),
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => quote = Some(c),
            (None, '\\') => word.extend(chars.next()),
            (None, c) if c.is_whitespace() || ";&|<>".contains(c) => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            (None, c) => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// Waits until the subject listens on `addr` (seen in `/proc/net/tcp*`, held by one of its
/// processes), it exits, or the deadline passes. Where `/proc` cannot tell, a connection is
/// the fallback. Before it counts as ready, the grader looks at what it runs: proxylab's
/// own programs, or an off-the-shelf proxy, are refused.
async fn wait_until_listening(
    addr: SocketAddr,
    running: &mut Running,
    command: &str,
) -> Result<(), HarnessError> {
    let Running::Child(child) = running else {
        return Ok(());
    };
    let deadline = Instant::now() + START_DEADLINE;
    // Someone else's listener on the port: allowed after a grace period (a program that
    // left its process group), never at once.
    let mut foreign_since: Option<Instant> = None;
    let ready = |child: &mut sandbox::Process| match child.inspect() {
        Some(Stop::Refused(why)) => Err(HarnessError::Refused(why)),
        Some(Stop::Limit(why)) => Err(HarnessError::Subject(why)),
        None => Ok(()),
    };
    loop {
        if let Some(status) = child.exited() {
            let said = child.output().last_lines(12).join("\n");
            if status.code() == Some(sandbox::spec::SETUP_FAILED)
                && said.contains(sandbox::spec::SETUP_FAILED_PREFIX)
            {
                return Err(HarnessError::Sandbox(said));
            }
            if let Some(stop) = child.stopped() {
                return Err(HarnessError::Subject(stop.message().to_string()));
            }
            return Err(HarnessError::Subject(format!(
                "{command:?} exited ({status}) before listening on {addr}{}",
                if said.is_empty() {
                    String::from(" (it printed nothing)")
                } else {
                    format!(":\n{said}")
                }
            )));
        }
        match process::listening(addr.port(), Some(child.pgid())) {
            Some(Listening::Yes { owned: Some(true) }) => return ready(child),
            Some(Listening::Yes { .. }) => {
                let since = *foreign_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_secs(2) {
                    return ready(child);
                }
            }
            Some(Listening::Elsewhere(ips)) => {
                return Err(HarnessError::Subject(format!(
                    "{command:?} listens on port {} of {ips:?}, which a connection to {addr} does not reach: listen on 127.0.0.1 (or on every address)",
                    addr.port()
                )))
            }
            Some(Listening::No) => foreign_since = None,
            None => {
                if TcpStream::connect(addr).await.is_ok() {
                    return ready(child);
                }
            }
        }
        if let Some(stop) = child.stopped() {
            return Err(match stop {
                Stop::Refused(why) => HarnessError::Refused(why),
                Stop::Limit(why) => HarnessError::Subject(why),
            });
        }
        if Instant::now() > deadline {
            return Err(HarnessError::Subject(format!(
                "{command:?} did not listen on {addr} within {} (does it listen on the port given as {{port}}?)",
                secs(START_DEADLINE)
            )));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// How a reproducer names the workspace's `client`: the one beside this `lab` (`bin/client`
/// in the student kit, `target/release/client` in the repository), relative to the current
/// folder when it is below it; `target/release/client` when there is none beside it.
pub fn client_bin() -> &'static str {
    static CLIENT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    CLIENT.get_or_init(|| {
        let beside = std::env::current_exe()
            .ok()
            .and_then(|exe| Some(exe.parent()?.join("client")))
            .filter(|p| p.is_file());
        match beside {
            Some(path) => {
                let here = std::env::current_dir().unwrap_or_default();
                let shown = path
                    .strip_prefix(&here)
                    .unwrap_or(&path)
                    .display()
                    .to_string();
                sh(&shown)
            }
            None => "target/release/client".into(),
        }
    })
}

/// `5 s`, `0.5 s`.
pub fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{s:.0} s")
    } else {
        format!("{s:.1} s")
    }
}

/// `text` quoted for a POSIX shell when it needs to be (`&`, `?`, spaces …).
pub fn sh(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:@,+=%".contains(&b));
    if plain {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

/// A raw HTTP/1 connection to the subject.
pub struct Conn {
    pub reader: Reader<TapRead>,
    pub writer: TapWrite,
    /// How long one step may take.
    pub step: Duration,
    /// What was sent last, for messages ("sent GET http://…").
    sent: String,
    /// The subject's port and this connection's own.
    subject: u16,
    local: u16,
}

/// A response as the harness read it.
#[derive(Debug)]
pub struct Response {
    pub head: ResponseHead,
    pub body: Vec<u8>,
    /// Bytes that had already arrived after the response's end when it was read (a body
    /// sent where none belongs, or a response sent twice).
    pub extra: usize,
}

impl Response {
    pub fn status(&self) -> u16 {
        self.head.status
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.head
            .headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    /// `X-Origin-Hits` as a number (0 when absent).
    pub fn origin_hits(&self) -> u64 {
        self.header("x-origin-hits")
            .and_then(|h| h.trim().parse().ok())
            .unwrap_or(0)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Conn {
    /// A new connection to the subject at `subject`, each step within `step`, recorded in
    /// `capture` if there is one.
    pub async fn open(
        subject: SocketAddr,
        step: Duration,
        capture: Option<Arc<Capture>>,
    ) -> Result<Conn, String> {
        let stream = tokio::time::timeout(step, TcpStream::connect(subject))
            .await
            .map_err(|_| {
                format!(
                    "the subject at {subject} did not accept a connection within {}",
                    secs(step)
                )
            })?
            .map_err(|e| format!("cannot connect to the subject at {subject}: {e}"))?;
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr().map_or(0, |a| a.port());
        let (read, writer) = split(stream, capture.as_ref(), subject, true);
        Ok(Conn {
            reader: Reader::new(read),
            writer,
            step,
            sent: String::new(),
            subject: subject.port(),
            local,
        })
    }

    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        let line_end = bytes
            .iter()
            .position(|&b| b == b'\r' || b == b'\n')
            .unwrap_or(bytes.len())
            .min(120);
        self.sent = String::from_utf8_lossy(&bytes[..line_end]).into_owned();
        match tokio::time::timeout(self.step, self.writer.write_all(bytes)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) if closed(&e) => Err(format!(
                "sent {:?}; the connection closed without a response",
                self.sent
            )),
            Ok(Err(e)) => Err(format!(
                "sending {:?} to the subject failed: {e}",
                self.sent
            )),
            Err(_) => Err(format!(
                "sending {:?}: the subject read none of it for {} (it is not reading this connection)",
                self.sent,
                secs(self.step)
            )),
        }
    }

    /// Waits (up to a step) until the subject has read everything sent so far on this
    /// connection ([`process::until_read`]).
    pub async fn until_read(&self) {
        process::until_read(self.subject, self.local, Instant::now() + self.step).await;
    }

    pub async fn send_request(
        &mut self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(), String> {
        let mut out = format!("{method} {url} HTTP/1.1\r\nHost: {}\r\n", host_of(url));
        for (name, value) in headers {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        if !body.is_empty() || matches!(method, "POST" | "PUT") {
            out.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(body);
        self.send(&bytes).await
    }

    /// Reads one response to a request with `method`, each step within the step deadline.
    /// The error says which step failed and what had arrived.
    pub async fn read(&mut self, method: &str) -> Result<Response, String> {
        let step = self.step;
        let after = if self.sent.is_empty() {
            String::from("connected")
        } else {
            format!("sent {:?}", self.sent)
        };
        let head = match self
            .reader
            .read_response_head(Limits::default(), Some(Instant::now() + step))
            .await
        {
            Ok(head) => head,
            Err(e) => return Err(head_error(e, &after, step, self.reader.buffered())),
        };
        let framing = wire::response_framing(method, &head).map_err(|e| {
            format!(
                "{after}; the response head ({} {}) has invalid framing: {e}",
                head.status, head.reason
            )
        })?;
        let mut body = Vec::new();
        let copied = wire::copy_body(
            &mut self.reader,
            framing,
            &mut body,
            Framing::Close,
            Vec::new(),
            Some(step),
        )
        .await;
        if let Err(e) = copied {
            return Err(body_error(e, &head, framing, body.len(), step));
        }
        let extra = self.reader.buffered().len();
        Ok(Response { head, body, extra })
    }
}

/// Whether `e` says the peer closed the connection (reset, or a write after its close).
fn closed(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ConnectionReset | ConnectionAborted | BrokenPipe)
}

/// What a failed head read means, in words; `arrived` is what came of it.
fn head_error(e: HeadError, after: &str, step: Duration, arrived: &[u8]) -> String {
    let began = || {
        let text: String = String::from_utf8_lossy(&arrived[..arrived.len().min(40)])
            .chars()
            .map(|c| if c.is_control() && c != '\n' { '·' } else { c })
            .collect();
        format!("{text:?}{}", if arrived.len() > 40 { "…" } else { "" })
    };
    let not_http = !arrived.is_empty() && !arrived.starts_with(b"HTTP/");
    match e {
        HeadError::Incomplete | HeadError::Closed if not_http => format!(
            "{after}; {} bytes came and the connection closed, but no response head: they began {} — a response starts with a status line such as `HTTP/1.1 200 OK` (RFC 9112 §4)",
            arrived.len(),
            began()
        ),
        HeadError::Timeout { partial: false } => {
            format!("{after}; no response head within {}", secs(step))
        }
        HeadError::Timeout { partial: true } => format!(
            "{after}; part of a response head arrived, then nothing for {} (a head ends with an empty line: \\r\\n\\r\\n)",
            secs(step)
        ),
        HeadError::Closed => format!("{after}; the connection closed without a response"),
        // A reset is how a close looks when the peer had unread bytes: the same to a student.
        HeadError::Io(e) if closed(&e) => {
            format!("{after}; the connection closed without a response")
        }
        HeadError::Incomplete => format!(
            "{after}; the connection closed in the middle of the response head, after {} bytes: {}",
            arrived.len(),
            began()
        ),
        HeadError::Io(e) => format!("{after}; reading the response failed: {e}"),
        _ if not_http => format!(
            "{after}; what came back is not an HTTP response: it began {} — a response starts with a status line such as `HTTP/1.1 200 OK` (RFC 9112 §4)",
            began()
        ),
        other => format!(
            "{after}; the response head is not valid HTTP/1.x: {other} (it began {})",
            began()
        ),
    }
}

/// What a failed body read means, in words.
fn body_error(
    e: BodyError,
    head: &ResponseHead,
    framing: Framing,
    got: usize,
    step: Duration,
) -> String {
    let status = format!("{} {}", head.status, head.reason);
    let promised = match framing {
        Framing::Length(n) => format!("the response ({status}) said Content-Length {n}"),
        Framing::Chunked => format!("the response ({status}) was chunked"),
        _ => format!("the response ({status}) had no length (its body ends at the close)"),
    };
    match e {
        BodyError::Idle(_) if framing == Framing::Close => format!(
            "{promised}; {got} bytes came, then nothing for {} and the connection stayed open",
            secs(step)
        ),
        BodyError::Idle(_) if framing == Framing::Chunked => format!(
            "{promised}; {got} bytes came, then nothing for {} (no last chunk, 0\\r\\n\\r\\n)",
            secs(step)
        ),
        BodyError::Idle(_) => format!(
            "{promised}; {got} bytes came, then nothing for {}",
            secs(step)
        ),
        BodyError::Truncated => {
            format!("{promised}; the connection closed after {got} body bytes")
        }
        BodyError::BadChunk(why) => {
            format!("{promised}; its chunked framing is invalid after {got} bytes: {why}")
        }
        BodyError::Read(e) => format!("{promised}; reading the body failed after {got} bytes: {e}"),
        BodyError::Write(e) => format!("{promised}: {e}"),
    }
}

/// The host (and port) of an absolute URL, for the Host header.
fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_command_splits_into_words_as_sh_would_split_it() {
        assert_eq!(
            super::shell_words(r#"cd /a && python3 '/tmp/my proxy.py' "x y"\ z {port}>log"#),
            [
                "cd",
                "/a",
                "python3",
                "/tmp/my proxy.py",
                "x y z",
                "{port}",
                "log"
            ]
        );
    }

    use super::sh;

    #[test]
    fn shell_words_are_quoted_only_when_needed() {
        assert_eq!(
            sh("http://127.0.0.1:80/bytes/10"),
            "http://127.0.0.1:80/bytes/10"
        );
        assert_eq!(sh("http://h/a?x=1&y=2"), "'http://h/a?x=1&y=2'");
        assert_eq!(sh("it's"), "'it'\\''s'");
    }
}
