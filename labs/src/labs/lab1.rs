//! Lab 1 — sockets and many clients: a line-based chat server. The protocol (the handout's,
//! and origin-sim's chat room, the reference):
//!
//! - a client connects and is greeted with a line; its first line may be `/name NAME`;
//! - every line a member sends reaches every *other* member as `[NAME] text`;
//! - joins and leaves are announced as lines naming the member (`* bob joined`, `* bob left`);
//! - `!DISCONNECT` leaves: the server closes that connection;
//! - lines up to 4096 bytes arrive whole; a member that stops reading must not stall the room.

use crate::harness::Env;
use crate::{Check, CheckFuture, Fail, Lab};
use proxy::capture::{TapRead, TapWrite};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// How long a line may take to arrive.
const WAIT: Duration = Duration::from_secs(5);

pub fn lab() -> Lab {
    Lab {
        number: 1,
        title: "Sockets and many clients (a chat server)",
        reference_flags: &[],
        rules: "",
        chat: true,
        checks: vec![
            Check { id: "greeting", points: 10, proves: "a client that connects is greeted with a line", hint: "accept() in a loop and write a welcome line to each new client", run: greeting },
            Check { id: "broadcast", points: 20, proves: "a line from one member reaches the others as [NAME] text, and not its sender", hint: "keep a list of connected clients and write each received line to all but the sender", run: broadcast },
            Check { id: "join-announced", points: 10, proves: "a member's arrival is announced to the others with its name", hint: "after reading /name NAME, tell everyone else that NAME joined", run: join_announced },
            Check { id: "disconnect", points: 10, proves: "!DISCONNECT closes that member's connection and the others hear it left", hint: "on !DISCONNECT, remove the client from the list, close its socket, and tell the others", run: disconnect },
            Check { id: "ten-clients", points: 15, proves: "ten members at once all hear a message", hint: "serve each client in its own thread (or with select/epoll) so that one waiting recv() never blocks the rest", run: ten_clients },
            Check { id: "vanish-mid-line", points: 10, proves: "a client that disappears in the middle of a line does not break the room, and its half line is not passed on", hint: "recv() returning 0 (or an error) means the client is gone: drop it and any partial line", run: vanish },
            Check { id: "long-lines", points: 10, proves: "a 4000-byte line arrives whole, not cut into pieces", hint: "one recv() is not one line: buffer until the newline (4092-byte buffers cut long lines)", run: long_lines },
            Check { id: "slow-reader", points: 15, proves: "a member that stops reading does not stop the others from chatting", hint: "never block the room on one client's send(): give each client its own bounded queue and drop those that fall behind", run: slow_reader },
        ],
    }
}

/// A chat member as the harness drives it.
struct Member {
    reader: BufReader<TapRead>,
    writer: TapWrite,
    reproduce: String,
}

impl Member {
    async fn join(env: &Env, name: Option<&str>) -> Result<Member, Fail> {
        let reproduce = format!(
            "client chat {} --name NAME   (or: nc {} {})",
            env.subject,
            env.subject.ip(),
            env.subject.port()
        );
        let stream = TcpStream::connect(env.subject).await.map_err(|e| {
            Fail::new(
                format!("cannot connect to the chat server: {e}"),
                &reproduce,
            )
        })?;
        let (read, write) = proxy::capture::split(stream, env.capture.as_ref(), env.subject, true);
        let mut member = Member {
            reader: BufReader::new(read),
            writer: write,
            reproduce,
        };
        if let Some(name) = name {
            // The greeting first: once it arrived the server knows this member, so nothing
            // said to the room after this point can miss it.
            if member.line().await?.is_none() {
                return Err(Fail::new(
                    "the server closed the connection without a greeting",
                    &member.reproduce,
                ));
            }
            member.say(&format!("/name {name}")).await?;
        }
        Ok(member)
    }

    async fn say(&mut self, line: &str) -> Result<(), Fail> {
        self.writer
            .write_all(format!("{line}\n").as_bytes())
            .await
            .map_err(|e| {
                Fail::new(
                    format!("writing to the server failed: {e}"),
                    &self.reproduce,
                )
            })
    }

    /// The next line, or `None` when the server closed the connection.
    async fn line(&mut self) -> Result<Option<String>, Fail> {
        let mut line = String::new();
        match tokio::time::timeout(WAIT, self.reader.read_line(&mut line)).await {
            Err(_) => Err(Fail::new(
                format!("no line arrived within {WAIT:?}"),
                &self.reproduce,
            )),
            Ok(Err(e)) => Err(Fail::new(
                format!("reading from the server failed: {e}"),
                &self.reproduce,
            )),
            Ok(Ok(0)) => Ok(None),
            Ok(Ok(_)) => Ok(Some(line)),
        }
    }

    /// Reads lines until one contains `needle`; fails if one contains `never` first.
    async fn expect(&mut self, needle: &str, never: Option<&str>) -> Result<String, Fail> {
        loop {
            match self.line().await {
                Ok(Some(line)) if line.contains(needle) => return Ok(line),
                Ok(Some(line)) if never.is_some_and(|n| line.contains(n)) => {
                    return Err(Fail::new(
                        format!("{line:?} arrived, which should never have been sent"),
                        &self.reproduce,
                    ))
                }
                Ok(Some(_)) => continue,
                Ok(None) => {
                    return Err(Fail::new(
                        format!("the server closed the connection before {needle:?} arrived"),
                        &self.reproduce,
                    ))
                }
                Err(f) => {
                    return Err(Fail::new(
                        format!("waiting for {needle:?}: {}", f.what),
                        f.reproduce,
                    ))
                }
            }
        }
    }
}

/// Joins `names` in order, each waiting until the first member heard it arrive.
async fn room(env: &Env, names: &[&str]) -> Result<Vec<Member>, Fail> {
    let mut members: Vec<Member> = Vec::new();
    for name in names {
        let member = Member::join(env, Some(name)).await?;
        if let Some(first) = members.first_mut() {
            first.expect(name, None).await?;
        }
        members.push(member);
    }
    Ok(members)
}

fn greeting(env: &Env) -> CheckFuture<'_> {
    Box::pin(async move {
        let mut m = Member::join(env, None).await?;
        match m.line().await? {
            Some(line) if !line.trim().is_empty() => Ok(()),
            Some(_) => Err(Fail::new("the greeting was an empty line", &m.reproduce)),
            None => Err(Fail::new(
                "the server closed the connection without a greeting",
                &m.reproduce,
            )),
        }
    })
}

fn broadcast(env: &Env) -> CheckFuture<'_> {
    Box::pin(async move {
        let mut members = room(env, &["alice", "bob"]).await?;
        members[0].say("hello bob").await?;
        members[1].expect("[alice] hello bob", None).await?;
        // The sender does not get its own line back: bob's reply is the next thing alice
        // hears that is a message.
        members[1].say("hi alice").await?;
        members[0]
            .expect("[bob] hi alice", Some("[alice] hello bob"))
            .await
            .map(|_| ())
    })
}

fn join_announced(env: &Env) -> CheckFuture<'_> {
    Box::pin(async move {
        let mut alice = Member::join(env, Some("alice")).await?;
        // alice's own greeting and any lines about her come first; then bob arrives.
        let _bob = Member::join(env, Some("bob")).await?;
        alice.expect("bob", None).await.map(|_| ())
    })
}

fn disconnect(env: &Env) -> CheckFuture<'_> {
    Box::pin(async move {
        let mut members = room(env, &["alice", "bob"]).await?;
        members[1].say("!DISCONNECT").await?;
        // bob's connection is closed by the server: reading ends.
        loop {
            match members[1].line().await {
                Ok(Some(_)) => continue,
                Ok(None) => break,
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
        members[0].expect("bob", None).await.map(|_| ())
    })
}

fn ten_clients(env: &Env) -> CheckFuture<'_> {
    Box::pin(async move {
        let names: Vec<String> = (0..10).map(|i| format!("member{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut members = room(env, &refs).await?;
        members[9].say("roll call").await?;
        for m in members.iter_mut().take(9) {
            m.expect("[member9] roll call", None).await?;
        }
        Ok(())
    })
}

fn vanish(env: &Env) -> CheckFuture<'_> {
    Box::pin(async move {
        let mut members = room(env, &["alice", "bob"]).await?;
        let mut ghost = Member::join(env, Some("ghost")).await?;
        members[0].expect("ghost", None).await?;
        ghost
            .writer
            .write_all(b"half a li")
            .await
            .map_err(|e| Fail::new(e.to_string(), ""))?;
        drop(ghost);
        members[1].say("still here").await?;
        members[0]
            .expect("[bob] still here", Some("half a li"))
            .await
            .map(|_| ())
    })
}

fn long_lines(env: &Env) -> CheckFuture<'_> {
    Box::pin(async move {
        let mut members = room(env, &["alice", "bob"]).await?;
        let long: String = (0..4000).map(|i| (b'a' + (i % 26) as u8) as char).collect();
        members[0].say(&long).await?;
        let line = members[1].expect("[alice] ", None).await?;
        let text = line
            .trim_end_matches(['\r', '\n'])
            .trim_start_matches("[alice] ");
        if text == long {
            Ok(())
        } else {
            Err(Fail::new(
                format!("a 4000-byte line arrived as {} bytes: long lines are cut (or split into several messages)", text.len()),
                &members[1].reproduce,
            ))
        }
    })
}

fn slow_reader(env: &Env) -> CheckFuture<'_> {
    Box::pin(async move {
        let mut members = room(env, &["alice", "bob", "sleepy"]).await?;
        // sleepy never reads again. alice and bob talk in turn, 3,000 lines of 3,000 bytes:
        // 9 MB that the server also owes sleepy, more than socket buffers hold, so a server
        // whose send() to sleepy blocks stops the conversation.
        let _sleepy = members.pop();
        let line: String = "x".repeat(3000);
        let count = 3_000;
        let (alice, bob) = members.split_at_mut(1);
        let (alice, bob) = (&mut alice[0], &mut bob[0]);
        let reproduce = bob.reproduce.clone();
        let mut buf = String::new();
        for i in 0..count {
            alice.say(&format!("{i} {line}")).await?;
            let wanted = format!("[alice] {i} ");
            loop {
                buf.clear();
                let n = match tokio::time::timeout(WAIT, bob.reader.read_line(&mut buf)).await {
                    Ok(Ok(n)) => n,
                    _ => {
                        return Err(Fail::new(
                            format!("bob heard {i} of {count} lines, then nothing for {WAIT:?}: a member that does not read stalls the room"),
                            reproduce,
                        ))
                    }
                };
                if n == 0 {
                    return Err(Fail::new(
                        format!("bob's connection closed after {i} lines"),
                        reproduce,
                    ));
                }
                if buf.starts_with(&wanted) {
                    break;
                }
            }
        }
        Ok(())
    })
}
