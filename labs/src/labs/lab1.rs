//! Lab 1 — sockets and many clients: a line-based chat server. The protocol (the handout's,
//! and origin-sim's chat room, the reference):
//!
//! - a client connects and is greeted with a line; its first line may be `/name NAME`;
//! - every line a member sends reaches every *other* member as `[NAME] text`;
//! - joins and leaves are announced as lines naming the member (`* bob joined`, `* bob left`);
//! - `!DISCONNECT` leaves: the server closes that connection;
//! - lines up to 4096 bytes arrive whole; a member that stops reading must not stall the room.
//!
//! How the checks know everyone is in the room: not by the greeting (a server may send
//! none) nor by join announcements (a server may make none), but causally — the first
//! member says a line until every other member has heard it, and the last member says one
//! until the first has heard it ([`Room::sync`]). Only the words have to arrive; the
//! `[NAME] text` format is graded once, by `broadcast`. A room that cannot be brought
//! together means lines do not reach the others at all: the checks that need a room are
//! then *not judged* and point to `broadcast`.

use crate::harness::{secs, Env};
use crate::{Check, CheckFuture, Fail, Lab};
use std::pin::Pin;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::Instant;

pub fn lab() -> Lab {
    Lab {
        number: 1,
        title: "Sockets and many clients (a chat server)",
        reference_flags: &[],
        rules: "",
        chat: true,
        checks: vec![
            Check::new("greeting", "a client that connects is greeted with a line before it says anything", "accept() in a loop and write a welcome line (ending in \\n) to each new client", greeting),
            Check::new("broadcast", "a line from one member reaches the others as [NAME] text, and not its sender", "keep a list of connected clients and write each received line to all but the sender, as [NAME] text", broadcast),
            Check::new("join-announced", "a member's arrival is announced to the others with its name", "after reading /name NAME, tell everyone else that NAME joined", join_announced),
            Check::new("disconnect", "!DISCONNECT closes that member's connection and the others hear that it left", "on !DISCONNECT, remove the client from the list, close its socket, and tell the others NAME left (do not relay the command itself)", disconnect),
            Check::new("ten-clients", "ten members at once all hear a message", "serve each client in its own thread (or with select/epoll) so that one waiting recv() never blocks the rest", ten_clients),
            Check::new("vanish-mid-line", "a client that disappears in the middle of a line does not break the room, and its half line is not passed on", "recv() returning 0 (or an error) means the client is gone: drop it and any partial line", vanish),
            Check::new("long-lines", "a 4000-byte line sent in pieces arrives whole, and two lines sent at once arrive as two", "one recv() is not one line: buffer until each newline (4092-byte buffers cut long lines)", long_lines),
            Check::new("slow-reader", "a member that stops reading does not stop the others from chatting", "never block the room on one client's send(): give each client its own bounded queue and drop those that fall behind", slow_reader),
        ],
    }
}

type Read = BufReader<Pin<Box<dyn AsyncRead + Send>>>;
type Write = Pin<Box<dyn AsyncWrite + Send>>;

/// A chat member as the harness drives it (directly, or through a tunnel in lab 5).
pub struct Member {
    pub name: String,
    reader: Read,
    writer: Write,
    /// Bytes of a line that has not ended yet.
    pending: Vec<u8>,
    step: Duration,
    reproduce: String,
    /// The server's port and this connection's own, when it is a direct connection.
    ports: Option<(u16, u16)>,
}

impl Member {
    /// A member over any byte stream.
    pub fn over<R, W>(name: &str, read: R, write: W, step: Duration, reproduce: &str) -> Member
    where
        R: AsyncRead + Send + 'static,
        W: AsyncWrite + Send + 'static,
    {
        Member {
            name: name.to_string(),
            reader: BufReader::new(Box::pin(read)),
            writer: Box::pin(write),
            pending: Vec::new(),
            step,
            reproduce: reproduce.to_string(),
            ports: None,
        }
    }

    /// Connects to the chat server; with a name, says `/name NAME` at once (the server
    /// reads it after its greeting, if it sends one).
    async fn join(env: &Env, name: Option<&str>) -> Result<Member, Fail> {
        let reproduce = format!(
            "{} chat --server {} --name {}   (in two terminals, as alice and bob)",
            crate::harness::client_bin(),
            env.subject,
            name.unwrap_or("alice")
        );
        let stream = tokio::time::timeout(env.step, TcpStream::connect(env.subject))
            .await
            .map_err(|_| {
                Fail::new(
                    format!(
                        "the server accepted no connection within {}",
                        secs(env.step)
                    ),
                    &reproduce,
                )
            })?
            .map_err(|e| {
                Fail::new(
                    format!("cannot connect to the chat server: {e}"),
                    &reproduce,
                )
            })?;
        let local = stream.local_addr().map_or(0, |a| a.port());
        let (read, write) =
            proxy::observe::capture::split(stream, env.capture.as_ref(), env.subject, true);
        let mut member = Member::over(name.unwrap_or("guest"), read, write, env.step, &reproduce);
        member.ports = Some((env.subject.port(), local));
        if let Some(name) = name {
            member.say(&format!("/name {name}")).await?;
        }
        Ok(member)
    }

    /// Waits (up to a step) until the server has read all this member sent
    /// ([`crate::process::until_read`]).
    async fn until_read(&mut self) {
        match self.ports {
            Some((server, local)) => {
                crate::process::until_read(server, local, Instant::now() + self.step).await
            }
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }

    pub async fn say(&mut self, line: &str) -> Result<(), Fail> {
        self.write(format!("{line}\n").as_bytes()).await
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), Fail> {
        let sent = async {
            self.writer.write_all(bytes).await?;
            self.writer.flush().await
        };
        match tokio::time::timeout(self.step, sent).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Fail::new(
                format!("{} could not write to the server: {e}", self.name),
                &self.reproduce,
            )),
            Err(_) => Err(Fail::new(
                format!(
                    "{} could not write for {}: the server is not reading its connection",
                    self.name,
                    secs(self.step)
                ),
                &self.reproduce,
            )),
        }
    }

    /// The next line within `wait`, `Ok(None)` when the server closed the connection.
    async fn line_within(&mut self, wait: Duration) -> Result<Option<String>, Fail> {
        self.line_until(Instant::now() + wait, wait).await
    }

    /// The next line before `deadline` (`wait` long, for messages), `Ok(None)` when the
    /// server closed the connection. Cancel-safe: bytes of a line that has not ended yet
    /// stay for the next call.
    async fn line_until(
        &mut self,
        deadline: Instant,
        wait: Duration,
    ) -> Result<Option<String>, Fail> {
        loop {
            if let Some(i) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=i).collect();
                return Ok(Some(String::from_utf8_lossy(&line).into_owned()));
            }
            let read = match tokio::time::timeout_at(deadline, self.reader.fill_buf()).await {
                Err(_) if self.pending.is_empty() => {
                    return Err(Fail::new(
                        format!("{} heard nothing for {}", self.name, secs(wait)),
                        &self.reproduce,
                    ))
                }
                Err(_) => {
                    return Err(Fail::new(
                        format!(
                            "{} got {} bytes of a line, then nothing for {} (lines end with \\n)",
                            self.name,
                            self.pending.len(),
                            secs(wait)
                        ),
                        &self.reproduce,
                    ))
                }
                Ok(Err(e)) => {
                    return Err(Fail::new(
                        format!("{}'s connection failed: {e}", self.name),
                        &self.reproduce,
                    ))
                }
                Ok(Ok(bytes)) => bytes.to_vec(),
            };
            if read.is_empty() {
                // Closed: a last line without its newline still counts as a line.
                if self.pending.is_empty() {
                    return Ok(None);
                }
                let line = std::mem::take(&mut self.pending);
                return Ok(Some(String::from_utf8_lossy(&line).into_owned()));
            }
            self.reader.consume(read.len());
            self.pending.extend_from_slice(&read);
        }
    }

    async fn line(&mut self) -> Result<Option<String>, Fail> {
        self.line_within(self.step).await
    }

    /// Reads lines until one satisfies `wanted` (`what` describes it); fails if one
    /// satisfies `never` first — a line that satisfies both fails too: a forbidden text glued
    /// to the wanted one is still there — or nothing comes for a step.
    async fn expect(
        &mut self,
        what: &str,
        wanted: impl Fn(&str) -> bool,
        never: impl Fn(&str) -> bool,
    ) -> Result<String, Fail> {
        let mut heard = Vec::new();
        loop {
            match self.line().await {
                Ok(Some(line)) => {
                    let text = line.trim_end_matches(['\r', '\n']).to_string();
                    if never(&text) {
                        return Err(Fail::new(
                            format!(
                                "{} heard {text:?}, which should never have been sent",
                                self.name
                            ),
                            &self.reproduce,
                        ));
                    }
                    if wanted(&text) {
                        return Ok(text);
                    }
                    heard.push(text);
                }
                Ok(None) => {
                    return Err(Fail::new(
                        format!(
                            "the server closed {}'s connection before {what} arrived{}",
                            self.name,
                            heard_so_far(&heard)
                        ),
                        &self.reproduce,
                    ))
                }
                Err(f) => {
                    return Err(Fail::new(
                        format!("waiting for {what}: {}{}", f.what, heard_so_far(&heard)),
                        f.reproduce,
                    ))
                }
            }
        }
    }

    /// Waits for a line containing `needle`.
    pub async fn hear(&mut self, needle: &str) -> Result<String, Fail> {
        self.expect(&format!("{needle:?}"), |l| l.contains(needle), |_| false)
            .await
    }
}

/// "; before it, NAME heard: …" (the last few lines), or nothing.
fn heard_so_far(heard: &[String]) -> String {
    if heard.is_empty() {
        return String::new();
    }
    let last: Vec<String> = heard
        .iter()
        .rev()
        .take(3)
        .rev()
        .map(|l| format!("{:?}", l.chars().take(80).collect::<String>()))
        .collect();
    format!(
        " (it heard {} line(s) before, the last: {})",
        heard.len(),
        last.join(", ")
    )
}

/// Members brought together: each has been heard by the others.
pub struct Room {
    pub members: Vec<Member>,
}

/// How long the first round of [`Room::sync`] waits for members to hear its line; each
/// later round waits twice as long as the one before, up to a second.
const SYNC_ROUND: Duration = Duration::from_millis(50);

impl Room {
    /// Joins `names` and brings them together ([`Room::sync`]).
    async fn join(env: &Env, names: &[&str]) -> Result<Room, Fail> {
        let mut members = Vec::new();
        for name in names {
            members.push(Member::join(env, Some(name)).await?);
        }
        let mut room = Room { members };
        room.sync(env.step).await?;
        Ok(room)
    }

    /// Proves every member is in the room: the first member says a line until every other
    /// member has heard it, then the last says one until the first has heard it. A server
    /// that registers a member late is given rounds until `deadline` to do it; only the
    /// words must arrive, whatever the format.
    pub async fn sync(&mut self, deadline: Duration) -> Result<(), Fail> {
        if self.members.len() < 2 {
            return Ok(());
        }
        let last = self.members.len() - 1;
        self.round("sync-a", 0, &(1..=last).collect::<Vec<_>>(), deadline)
            .await?;
        self.round("sync-b", last, &[0], deadline).await
    }

    /// `from` says `tag-K` for K = 1, 2, … until each of `to` heard one of them.
    async fn round(
        &mut self,
        tag: &str,
        from: usize,
        to: &[usize],
        deadline: Duration,
    ) -> Result<(), Fail> {
        let until = Instant::now() + deadline;
        let mut waiting: Vec<usize> = to.to_vec();
        let mut k: u32 = 0;
        while !waiting.is_empty() {
            k += 1;
            self.members[from].say(&format!("{tag}-{k}")).await?;
            // One deadline for the round: a member whose line has come answers at once, so
            // a round costs one SYNC_ROUND at most, however many members wait.
            let wait = (SYNC_ROUND * 2u32.pow(k.min(10) - 1)).min(Duration::from_secs(1));
            let round_end = Instant::now() + wait;
            let mut still = Vec::new();
            for &i in &waiting {
                let heard = loop {
                    match self.members[i].line_until(round_end, wait).await {
                        Ok(Some(l)) if l.contains(&format!("{tag}-")) => break true,
                        Ok(Some(_)) => continue,
                        Ok(None) => {
                            return Err(Fail::new(
                                format!("the server closed {}'s connection", self.members[i].name),
                                &self.members[i].reproduce,
                            ))
                        }
                        Err(_) => break false,
                    }
                };
                if !heard {
                    still.push(i);
                }
            }
            waiting = still;
            if !waiting.is_empty() && Instant::now() > until {
                let deaf: Vec<&str> = waiting
                    .iter()
                    .map(|&i| self.members[i].name.as_str())
                    .collect();
                return Err(Fail::new(
                    format!(
                        "{} said a line {k} times over {}; {} never heard it",
                        self.members[from].name,
                        secs(deadline),
                        deaf.join(", ")
                    ),
                    &self.members[from].reproduce,
                ));
            }
        }
        Ok(())
    }
}

/// A room for a check that builds on broadcast: not judged when lines do not get through.
async fn room(env: &Env, names: &[&str]) -> Result<Room, Fail> {
    Room::join(env, names)
        .await
        .map_err(|f| Fail::not_judged(f, "lines do not reach the other members", "lab 1 broadcast"))
}

/// For [`Member::expect`]'s failures: `hint` when a line that should never have been sent
/// arrived (the other failures keep the check's own hint).
fn hint_if_never(hint: &'static str) -> impl FnOnce(Fail) -> Fail {
    move |f| {
        if f.what.contains("should never") {
            f.hint(hint)
        } else {
            f
        }
    }
}

/// Whether `line` is someone's words relayed (`[bob] …`), not the server speaking.
fn relayed(line: &str, name: &str) -> bool {
    line.trim_start().starts_with(&format!("[{name}]"))
}

fn greeting(env: &Env) -> CheckFuture<'_> {
    Box::pin(async move {
        let mut m = Member::join(env, None).await?;
        match m.line().await {
            Ok(Some(line)) if !line.trim().is_empty() => Ok(()),
            Ok(Some(_)) => Err(Fail::new("the greeting was an empty line", &m.reproduce)),
            Ok(None) => Err(Fail::new(
                "the server closed the connection without a greeting",
                &m.reproduce,
            )),
            Err(f) => Err(Fail::new(
                format!(
                    "a new client that says nothing waited for a greeting line: {}",
                    f.what
                ),
                f.reproduce,
            )),
        }
    })
}

fn broadcast(env: &Env) -> CheckFuture<'_> {
    Box::pin(async move {
        let mut room = Room::join(env, &["alice", "bob"]).await?;
        let [alice, bob] = &mut room.members[..] else {
            return Err(Fail::new("the room has not two members", ""));
        };
        alice.say("hello bob").await?;
        let line = bob.hear("hello bob").await?;
        if line.trim() != "[alice] hello bob" {
            return Err(Fail::new(
                format!("bob received {line:?}; the protocol's form is \"[alice] hello bob\""),
                &bob.reproduce,
            )
            .hint("send each line to the others as [NAME] text: the name in brackets, a space, the words"));
        }
        // The sender does not get its own line back: bob's reply is the next thing alice
        // hears that is a message.
        bob.say("hi alice").await?;
        alice
            .expect(
                "bob's \"hi alice\"",
                |l| l.contains("hi alice"),
                |l| l.contains("hello bob"),
            )
            .await
            .map(|_| ())
            .map_err(hint_if_never(
                "send a member's line to everyone but that member",
            ))
    })
}

fn join_announced(env: &Env) -> CheckFuture<'_> {
    Box::pin(async move {
        // alice and carol are in the room (each heard the other), then bob arrives.
        let mut room = room(env, &["alice", "carol"]).await?;
        let _bob = Member::join(env, Some("bob")).await?;
        let alice = &mut room.members[0];
        alice
            .expect(
                "a line announcing bob",
                |l| l.contains("bob") && !l.contains("/name") && !relayed(l, "bob"),
                |_| false,
            )
            .await
            .map(|_| ())
    })
}

fn disconnect(env: &Env) -> CheckFuture<'_> {
    Box::pin(async move {
        let mut room = room(env, &["alice", "bob"]).await?;
        room.members[1].say("!DISCONNECT").await?;
        // bob's connection is closed by the server: reading ends.
        loop {
            match room.members[1].line().await {
                Ok(Some(_)) => continue,
                Ok(None) => break,
                Err(f) if f.what.contains("failed") => break, // a reset is a close too
                Err(f) => {
                    return Err(Fail::new(
                        format!(
                            "after !DISCONNECT the server kept the connection open: {}",
                            f.what
                        ),
                        f.reproduce,
                    ))
                }
            }
        }
        room.members[0]
            .expect(
                "a line saying bob left",
                |l| {
                    l.contains("bob")
                        && !relayed(l, "bob")
                        && !l.contains("!DISCONNECT")
                        && !l.to_ascii_lowercase().contains("join")
                },
                |l| l.contains("!DISCONNECT"),
            )
            .await
            .map(|_| ())
            .map_err(hint_if_never(
                "!DISCONNECT is a command to the server: do not relay it; announce that the member left",
            ))
    })
}

fn ten_clients(env: &Env) -> CheckFuture<'_> {
    Box::pin(async move {
        // Two members first: if they cannot talk, the check is not judged.
        let mut room = room(env, &["member0", "member1"]).await?;
        for i in 2..10 {
            room.members
                .push(Member::join(env, Some(&format!("member{i}"))).await?);
        }
        room.sync(env.step).await?;
        room.members[9].say("roll call").await?;
        for m in room.members.iter_mut().take(9) {
            m.hear("roll call").await?;
        }
        Ok(())
    })
}

fn vanish(env: &Env) -> CheckFuture<'_> {
    Box::pin(async move {
        let mut room = room(env, &["alice", "bob"]).await?;
        let mut ghost = Member::join(env, Some("ghost")).await?;
        // Once alice heard ghost speak, ghost is in the room.
        ghost.say("ghost is here").await?;
        room.members[0].hear("ghost is here").await?;
        ghost.write(b"half a li").await?;
        ghost.until_read().await;
        drop(ghost);
        // When the server says that ghost left, it has read all ghost sent; a server that
        // says nothing gets a moment instead (which can only let a bad server pass, never
        // fail a good one). A half line relayed before that fails at once.
        let alice = &mut room.members[0];
        let until = Instant::now() + Duration::from_millis(300);
        while let Ok(Some(line)) = alice.line_until(until, Duration::from_millis(300)).await {
            if line.contains("half a li") {
                return Err(Fail::new(
                    format!(
                        "alice heard {:?}, which should never have been sent",
                        line.trim_end()
                    ),
                    &alice.reproduce,
                ));
            }
            if line.contains("ghost") {
                break;
            }
        }
        room.members[1].say("still here").await?;
        room.members[0]
            .expect(
                "bob's \"still here\"",
                |l| l.contains("still here"),
                |l| l.contains("half a li"),
            )
            .await
            .map_err(|f| match f.what.strip_suffix(", which should never have been sent") {
                // Say what it is: ghost's unfinished line, glued to what came next.
                Some(heard) => Fail::new(
                    format!("{heard}: ghost's unfinished line (\"half a li\", never ended by a newline) was passed on, glued to the next message"),
                    f.reproduce,
                ),
                None => f,
            })?;
        // And the room still works the other way.
        room.members[0].say("and alice too").await?;
        room.members[1].hear("and alice too").await.map(|_| ())
    })
}

fn long_lines(env: &Env) -> CheckFuture<'_> {
    Box::pin(async move {
        let mut room = room(env, &["alice", "bob"]).await?;
        let [alice, bob] = &mut room.members[..] else {
            return Err(Fail::new("the room has not two members", ""));
        };
        // Two lines in one write must arrive as two messages, each from alice: the second
        // with the same prefix as the first, whatever the server's format (`[alice] `,
        // `alice: `, an address) — the format itself is `broadcast`'s to grade.
        alice.write(b"first of two\nsecond of two\n").await?;
        let first = bob.hear("first of two").await?;
        let second = bob.hear("second of two").await?;
        let prefix = |line: &str, text: &str| line[..line.find(text).unwrap_or(0)].to_string();
        if prefix(&second, "second of two") != prefix(&first, "first of two") {
            return Err(Fail::new(
                format!("two lines sent in one write arrived as one message: the first came as {first:?}, the second as {second:?}, without the first one's sender prefix"),
                &bob.reproduce,
            ));
        }
        // A 4000-byte line, written in four pieces, each sent once the server has read the
        // one before: a server that takes each recv() as a line shows it.
        let long: String = (0..4000).map(|i| (b'a' + (i % 26) as u8) as char).collect();
        let bytes = format!("{long}\n").into_bytes();
        for piece in bytes.chunks(1000) {
            alice.write(piece).await?;
            alice.until_read().await;
        }
        let line = bob.hear(&long[..20]).await?;
        if line.ends_with(&long) {
            Ok(())
        } else {
            Err(Fail::new(
                format!("a 4000-byte line sent in pieces arrived as a line of {} bytes: long lines are cut (or split into several messages)", line.len()),
                &bob.reproduce,
            ))
        }
    })
}

fn slow_reader(env: &Env) -> CheckFuture<'_> {
    Box::pin(async move {
        let mut room = room(env, &["alice", "bob", "sleepy"]).await?;
        // sleepy never reads again. alice and bob talk in turn, 3,000 lines of 3,000 bytes:
        // 9 MB that the server also owes sleepy, more than socket buffers hold, so a server
        // whose send() to sleepy blocks stops the conversation.
        let _sleepy = room.members.pop();
        let line: String = "x".repeat(3000);
        let count = 3_000;
        let [alice, bob] = &mut room.members[..] else {
            return Err(Fail::new("the room has not two members", ""));
        };
        for i in 0..count {
            alice.say(&format!("L{i}.{line}")).await?;
            bob.hear(&format!("L{i}.xxxx")).await.map_err(|f| {
                Fail::new(
                    format!("bob heard {i} of {count} lines, then: {} — a member that does not read stalls the room", f.what),
                    f.reproduce,
                )
            })?;
        }
        Ok(())
    })
}
