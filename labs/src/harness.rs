//! The harness: the origin, the subject under test, and what checks use to talk to them.
//!
//! Takes: which subject to grade (the reference proxy, any program started with `--cmd`, or
//! one already running at `--addr`). Returns: an [`Env`] the checks run against, torn down
//! (the subject's whole process group killed) when it is dropped, even on panic.

use proxy::capture::{split, Capture, TapRead, TapWrite};
use proxy::wire::{self, Reader, ResponseHead};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// How long a subject may take to start accepting connections.
pub const START_DEADLINE: Duration = Duration::from_secs(15);

/// What to grade.
#[derive(Debug, Clone)]
pub enum Subject {
    /// The reference proxy from this workspace, in this process, with extra flags
    /// (`{rules}` and `{log}` are replaced as for a command).
    Reference(Vec<String>),
    /// Any program: `{port}` becomes a free port it must listen on, `{rules}` the rules file
    /// the lab manages and `{log}` the access log it reads.
    Command(String),
    /// A subject already running (the lab cannot restart it).
    Addr(SocketAddr),
}

impl Subject {
    /// The reference with a lab's flags plus `extra` (how mutants are made).
    pub fn reference(flags: &[&str], extra: &[&str]) -> Subject {
        Subject::Reference(flags.iter().chain(extra).map(|s| s.to_string()).collect())
    }
}

/// Files a lab shares with its subject.
#[derive(Debug)]
pub struct Files {
    /// Holds the files; removed with them when the check ends.
    _dir: tempfile::TempDir,
    /// A plain list of blocked hosts, one per line (lab 5).
    pub rules: PathBuf,
    /// Where the subject writes its access log (lab 5).
    pub log: PathBuf,
}

impl Files {
    fn new(rules_text: &str) -> std::io::Result<Files> {
        let dir = tempfile::Builder::new().prefix("proxylab-lab-").tempdir()?;
        let rules = dir.path().join("blacklist.txt");
        let log = dir.path().join("access.log");
        std::fs::write(&rules, rules_text)?;
        Ok(Files {
            _dir: dir,
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

/// A running subject.
enum Running {
    Reference(proxy::Handle),
    Child(ChildGuard),
    External,
}

/// A subject process, killed with its whole process group when dropped (a shell wrapper's
/// children go too), whether the check passed, failed or panicked.
struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0.id())])
            .stderr(std::process::Stdio::null())
            .status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Why the harness could not start.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("origin-sim did not start: {0}")]
    Origin(String),
    #[error("the subject did not start: {0}")]
    Subject(String),
}

/// Everything a check needs: the origin, the subject's address, the shared files.
pub struct Env {
    pub origin: origin_sim::Handle,
    pub subject: SocketAddr,
    pub files: Files,
    running: Running,
    /// `--pcap-dir`: what the harness saw on both sides (its own connections to the
    /// subject, and the origin's connections from it).
    pub capture: Option<Arc<Capture>>,
}

impl Env {
    /// Starts origin-sim (every listener, on loopback) and the subject, with the rules file
    /// holding `rules`. For a chat lab the reference subject is origin-sim's own chat room.
    /// With `pcap`, both sides' traffic is recorded there.
    pub async fn start(
        subject: &Subject,
        rules: &str,
        chat: bool,
        pcap: Option<&Path>,
    ) -> Result<Env, HarnessError> {
        let capture = match pcap {
            Some(path) => Some(
                Capture::create(path, 256 << 20)
                    .map_err(|e| HarnessError::Origin(format!("{}: {e}", path.display())))?,
            ),
            None => None,
        };
        let origin = origin_sim::start(origin_sim::Config {
            capture: capture.clone(),
            ..origin_sim::Config::all_on_loopback()
        })
        .await
        .map_err(|e| HarnessError::Origin(e.to_string()))?;
        let files = Files::new(rules).map_err(|e| HarnessError::Subject(e.to_string()))?;
        let (subject, running) = match subject {
            Subject::Reference(_) if chat => {
                let addr = origin
                    .chat_addr()
                    .ok_or_else(|| HarnessError::Origin("origin-sim has no chat room".into()))?;
                (addr, Running::External)
            }
            Subject::Reference(flags) => {
                let mut args = vec!["proxy".to_string(), "--listen".into(), "127.0.0.1:0".into()];
                args.extend(flags.iter().map(|f| files.fill(f, 0)));
                args.extend(["--log".into(), "warn".into()]);
                let config = <proxy::Config as clap::Parser>::try_parse_from(&args)
                    .map_err(|e| HarnessError::Subject(e.to_string()))?;
                let handle = proxy::start(config)
                    .await
                    .map_err(|e| HarnessError::Subject(e.to_string()))?;
                (handle.addr(), Running::Reference(handle))
            }
            Subject::Command(template) => {
                let port = free_port().map_err(|e| HarnessError::Subject(e.to_string()))?;
                let command = files.fill(template, port);
                let child = spawn(&command)
                    .map_err(|e| HarnessError::Subject(format!("cannot run {command:?}: {e}")))?;
                let mut running = Running::Child(ChildGuard(child));
                let addr = SocketAddr::from(([127, 0, 0, 1], port));
                wait_until_accepting(addr, &mut running, &command).await?;
                (addr, running)
            }
            Subject::Addr(addr) => (*addr, Running::External),
        };
        Ok(Env {
            origin,
            subject,
            files,
            running,
            capture,
        })
    }

    /// Stops the subject and the origin.
    pub async fn stop(self) {
        let Env {
            origin,
            running,
            capture,
            ..
        } = self;
        if let Running::Reference(handle) = running {
            let _ = handle.shutdown().await;
        }
        origin.shutdown().await;
        if let Some(capture) = capture {
            capture.close();
        }
    }

    /// `http://ORIGIN{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin.url())
    }

    /// The command a student can paste to see what the check saw.
    pub fn curl(&self, args: &str, url: &str) -> String {
        format!("curl -sv -x http://{} {args}{url}", self.subject)
    }

    /// A new connection to the subject.
    pub async fn connect(&self) -> Result<Conn, String> {
        let stream = TcpStream::connect(self.subject)
            .await
            .map_err(|e| format!("cannot connect to the subject at {}: {e}", self.subject))?;
        let _ = stream.set_nodelay(true);
        let (read, writer) = split(stream, self.capture.as_ref(), self.subject, true);
        Ok(Conn {
            reader: Reader::new(read),
            writer,
        })
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
}

/// Spawns `command` through `sh -c` in its own process group.
fn spawn(command: &str) -> std::io::Result<std::process::Child> {
    use std::os::unix::process::CommandExt as _;
    std::process::Command::new("sh")
        .args(["-c", command])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .spawn()
}

/// A port nothing listens on right now.
fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Retries a connection until the subject accepts, it exits, or the deadline passes.
async fn wait_until_accepting(
    addr: SocketAddr,
    running: &mut Running,
    command: &str,
) -> Result<(), HarnessError> {
    let deadline = tokio::time::Instant::now() + START_DEADLINE;
    loop {
        if TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        if let Running::Child(ChildGuard(child)) = running {
            if let Ok(Some(status)) = child.try_wait() {
                let mut err = String::new();
                if let Some(mut stderr) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut stderr, &mut err);
                }
                return Err(HarnessError::Subject(format!(
                    "{command:?} exited ({status}) before listening on {addr}:\n{}",
                    err.trim_end()
                )));
            }
        }
        if tokio::time::Instant::now() > deadline {
            return Err(HarnessError::Subject(format!(
                "{command:?} did not accept connections on {addr} within {START_DEADLINE:?} \
                 (does it listen on the port given as {{port}}?)"
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A raw HTTP/1 connection to the subject.
pub struct Conn {
    pub reader: Reader<TapRead>,
    pub writer: TapWrite,
}

/// A response as the harness read it.
#[derive(Debug)]
pub struct Response {
    pub head: ResponseHead,
    pub body: Vec<u8>,
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
    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.writer
            .write_all(bytes)
            .await
            .map_err(|e| format!("sending to the subject failed: {e}"))
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

    /// Reads one response to a request with `method`.
    pub async fn read(&mut self, method: &str) -> Result<Response, String> {
        let (head, body) = wire::read_response(&mut self.reader, method).await?;
        Ok(Response { head, body })
    }
}

/// The host (and port) of an absolute URL, for the Host header.
fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest)
}
