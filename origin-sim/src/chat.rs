//! The chat room: many clients, one room, line by line (lab 1's reference server).
//!
//! - A client joins when it connects and is greeted; the room hears `* NAME joined` with
//!   its first line. If that line is `/name NAME` it names the client, otherwise the client
//!   is `guest-N` and the line is said as its first message.
//! - Every line is sent to every other member as `[NAME] text`, in one order for everyone.
//! - `!DISCONNECT` (the seed project's word) or `/quit` leaves; `/who` lists the members.
//! - A line longer than [`MAX_LINE`] bytes, or not UTF-8, is refused with a message to its
//!   sender, never cut short and passed on.
//! - Each member has a bounded queue ([`QUEUE`] messages). A member that stops reading is
//!   dropped with a notice when its queue is full, so one slow client never stalls the
//!   room (this is the backpressure lesson of tokio's chat example, made explicit).

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

/// The longest line a member may send, in bytes.
pub const MAX_LINE: usize = 4096;
/// Messages queued for one member before it counts as too slow and is dropped.
pub const QUEUE: usize = 256;
/// The longest name.
const MAX_NAME: usize = 32;

struct Member {
    name: String,
    tx: mpsc::Sender<Arc<str>>,
    /// Tells the member's writer to give up (it fell too far behind).
    kick: Option<oneshot::Sender<()>>,
}

/// Everyone in the room.
#[derive(Default)]
struct Room {
    members: Mutex<BTreeMap<u64, Member>>,
    next_id: AtomicU64,
}

impl Room {
    /// Sends `text` to every member but `from`; drops members whose queue is full.
    fn broadcast(&self, from: Option<u64>, text: &str) {
        let message: Arc<str> = Arc::from(text);
        let mut dropped = Vec::new();
        if let Ok(mut members) = self.members.lock() {
            let full: Vec<u64> = members
                .iter()
                .filter(|(id, _)| Some(**id) != from)
                .filter(|(_, m)| {
                    matches!(
                        m.tx.try_send(message.clone()),
                        Err(mpsc::error::TrySendError::Full(_))
                    )
                })
                .map(|(id, _)| *id)
                .collect();
            for id in full {
                if let Some(mut member) = members.remove(&id) {
                    if let Some(kick) = member.kick.take() {
                        let _ = kick.send(());
                    }
                    tracing::info!("chat: {} dropped: too slow to read", member.name);
                    dropped.push(member.name);
                }
            }
        }
        // Announced outside the lock. An announcement may drop more members, but each can
        // be dropped only once, so this ends.
        for name in dropped {
            self.broadcast(None, &format!("* {name} was dropped: too slow to read\n"));
        }
    }

    fn count(&self) -> usize {
        self.members.lock().map_or(0, |m| m.len())
    }

    fn contains(&self, id: u64) -> bool {
        self.members.lock().is_ok_and(|m| m.contains_key(&id))
    }

    fn rename(&self, id: u64, name: &str) {
        if let Ok(mut members) = self.members.lock() {
            if let Some(m) = members.get_mut(&id) {
                m.name = name.to_string();
            }
        }
    }

    fn names(&self) -> Vec<String> {
        self.members
            .lock()
            .map(|m| m.values().map(|v| v.name.clone()).collect())
            .unwrap_or_default()
    }

    fn leave(&self, id: u64) -> Option<String> {
        self.members.lock().ok()?.remove(&id).map(|m| m.name)
    }
}

/// Serves the chat room on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) -> io::Result<()> {
    let room = Arc::new(Room::default());
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            conn = proxy::conn::accept(&listener) => conn,
            _ = &mut shutdown => return Ok(()),
        };
        let room = room.clone();
        tokio::spawn(async move {
            if let Err(e) = member(room, stream).await {
                tracing::debug!("chat: {peer}: {e}");
            }
        });
    }
}

async fn member(room: Arc<Room>, stream: TcpStream) -> io::Result<()> {
    let id = room.next_id.fetch_add(1, Ordering::Relaxed) + 1;
    let mut name = format!("guest-{id}");
    let (read, mut write) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Arc<str>>(QUEUE);
    let (kick_tx, mut kick_rx) = oneshot::channel::<()>();
    if let Ok(mut members) = room.members.lock() {
        members.insert(
            id,
            Member {
                name: name.clone(),
                tx: tx.clone(),
                kick: Some(kick_tx),
            },
        );
    }
    let greeting = format!(
        "* welcome to the origin-sim chat ({} online). Say `/name NAME` first to choose a name; \
         `/who` lists who is here; `!DISCONNECT` or `/quit` leaves.\n",
        room.count()
    );
    write.write_all(greeting.as_bytes()).await?;
    // The writer: this member's queue to its socket, until the room lets go of it.
    let writer = tokio::spawn(async move {
        // A oneshot receiver must not be polled again once it has completed.
        let mut kick_pending = true;
        loop {
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(m) => if write.write_all(m.as_bytes()).await.is_err() { break },
                    None => break,
                },
                kick = &mut kick_rx, if kick_pending => {
                    kick_pending = false;
                    // Only a real kick: the sender is also dropped when the member just
                    // leaves, and then its last messages still go out.
                    if kick.is_ok() {
                        let notice = b"! you fell too far behind reading; disconnected\n";
                        let _ = tokio::time::timeout(Duration::from_secs(1), write.write_all(notice)).await;
                        break;
                    }
                }
            }
        }
        let _ = write.shutdown().await;
    });

    let mut lines = Lines::new(read);
    let mut joined = false;
    loop {
        let line = match lines.next().await {
            Ok(Some(line)) => line,
            Ok(None) | Err(_) => break,
        };
        if !room.contains(id) {
            break; // dropped for being too slow
        }
        let text = match line {
            Line::Text(t) => t,
            Line::TooLong => {
                let _ = tx.try_send(Arc::from(format!(
                    "! line longer than {MAX_LINE} bytes refused; it was not sent\n"
                )));
                continue;
            }
            Line::NotUtf8 => {
                let _ = tx.try_send(Arc::from("! line is not UTF-8; it was not sent\n"));
                continue;
            }
        };
        if !joined {
            joined = true;
            if let Some(wanted) = text.strip_prefix("/name ") {
                match valid_name(wanted) {
                    Some(n) => name = n,
                    None => {
                        let _ = tx.try_send(Arc::from(format!(
                            "! names are 1-{MAX_NAME} characters without spaces; you are {name}\n"
                        )));
                    }
                }
                room.rename(id, &name);
                tracing::info!("chat: {name} joined ({} online)", room.count());
                room.broadcast(Some(id), &format!("* {name} joined\n"));
                continue;
            }
            tracing::info!("chat: {name} joined ({} online)", room.count());
            room.broadcast(Some(id), &format!("* {name} joined\n"));
        }
        match text.as_str() {
            "!DISCONNECT" | "/quit" => break,
            "/who" => {
                let _ = tx.try_send(Arc::from(format!("* here: {}\n", room.names().join(", "))));
            }
            other if other.starts_with("/name ") => {
                if let Some(new) = valid_name(&other[6..]) {
                    room.broadcast(Some(id), &format!("* {name} is now {new}\n"));
                    name = new;
                    room.rename(id, &name);
                }
            }
            other => room.broadcast(Some(id), &format!("[{name}] {other}\n")),
        }
    }
    if room.leave(id).is_some() && joined {
        tracing::info!("chat: {name} left ({} online)", room.count());
        room.broadcast(Some(id), &format!("* {name} left\n"));
    }
    drop(tx);
    let _ = writer.await;
    Ok(())
}

fn valid_name(wanted: &str) -> Option<String> {
    let wanted = wanted.trim();
    let ok = !wanted.is_empty()
        && wanted.chars().count() <= MAX_NAME
        && !wanted.chars().any(|c| c.is_whitespace() || c.is_control());
    ok.then(|| wanted.to_string())
}

/// One line from a member.
enum Line {
    Text(String),
    TooLong,
    NotUtf8,
}

/// Reads `\n`-terminated lines of at most [`MAX_LINE`] bytes; the rest of a longer line is
/// read and thrown away. A last line without `\n` (the client vanished mid-line) is dropped.
struct Lines {
    inner: BufReader<OwnedReadHalf>,
}

impl Lines {
    fn new(read: OwnedReadHalf) -> Self {
        Lines {
            inner: BufReader::new(read),
        }
    }

    async fn next(&mut self) -> io::Result<Option<Line>> {
        let mut line = Vec::new();
        let mut too_long = false;
        loop {
            let buf = self.inner.fill_buf().await?;
            if buf.is_empty() {
                return Ok(None);
            }
            let (take, end) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (i, Some(i + 1)),
                None => (buf.len(), None),
            };
            if !too_long {
                line.extend_from_slice(&buf[..take]);
                if line.len() > MAX_LINE + 1 {
                    too_long = true;
                    line = Vec::new();
                }
            }
            self.inner.consume(end.unwrap_or(take));
            if end.is_some() {
                break;
            }
        }
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if too_long || line.len() > MAX_LINE {
            return Ok(Some(Line::TooLong));
        }
        Ok(Some(match String::from_utf8(line) {
            Ok(text) => Line::Text(text),
            Err(_) => Line::NotUtf8,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join(
        room: &Room,
        id: u64,
        name: &str,
        queue: usize,
    ) -> (mpsc::Receiver<Arc<str>>, oneshot::Receiver<()>) {
        let (tx, rx) = mpsc::channel(queue);
        let (kick, kicked) = oneshot::channel();
        room.members.lock().unwrap().insert(
            id,
            Member {
                name: name.into(),
                tx,
                kick: Some(kick),
            },
        );
        (rx, kicked)
    }

    /// A member whose queue is full is dropped and told so; the others get every message
    /// and the notice, and nobody waits.
    #[test]
    fn a_member_that_stops_reading_is_dropped_not_waited_for() {
        let room = Room::default();
        let (_slow_rx, mut slow_kicked) = join(&room, 1, "slow", 2);
        let (mut ok_rx, _) = join(&room, 2, "ok", 100);
        for i in 0..3 {
            room.broadcast(None, &format!("message {i}\n"));
        }
        assert!(!room.contains(1), "the slow member is out");
        assert!(room.contains(2));
        assert!(
            slow_kicked.try_recv().is_ok(),
            "its writer was told to stop"
        );
        let got: Vec<String> =
            std::iter::from_fn(|| ok_rx.try_recv().ok().map(|m| m.to_string())).collect();
        assert_eq!(
            got,
            [
                "message 0\n",
                "message 1\n",
                "message 2\n",
                "* slow was dropped: too slow to read\n"
            ]
        );
    }

    #[test]
    fn names_are_checked() {
        assert_eq!(valid_name(" alice ").as_deref(), Some("alice"));
        assert_eq!(valid_name("two words"), None);
        assert_eq!(valid_name(""), None);
        assert_eq!(valid_name(&"x".repeat(MAX_NAME + 1)), None);
    }
}
