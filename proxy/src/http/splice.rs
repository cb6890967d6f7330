//! Zero-copy moves between two sockets on Linux: `splice(2)` through a pipe, so the bytes
//! of a CONNECT tunnel never enter this process. The socket → pipe → socket steps use
//! rustix's safe wrappers and tokio's readiness (`try_io`), so no `unsafe` is needed.
//!
//! Used only when nothing has to see the bytes (no `--pcap` capture on either side); the
//! tunnel falls back to its copy loop otherwise, and on other systems.

use std::io;
use tokio::io::Interest;
use tokio::net::TcpStream;

/// How much one `splice` asks for; the pipe is grown to hold as much.
const CHUNK: usize = 1 << 20;

/// Moves everything `src` sends to `dst` until `src` ends (its FIN): returns then, with
/// nothing left in between. `moved` is told each chunk's size as it is delivered. An
/// error on either socket ends the move.
pub async fn copy(src: &TcpStream, dst: &TcpStream, mut moved: impl FnMut(u64)) -> io::Result<()> {
    use rustix::pipe::{fcntl_setpipe_size, pipe_with, splice, PipeFlags, SpliceFlags};
    let (pipe_out, pipe_in) = pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
    // A larger pipe moves more per system call; the default (64 KiB) still works.
    let capacity = fcntl_setpipe_size(&pipe_in, CHUNK).unwrap_or(64 * 1024);
    let flags = SpliceFlags::MOVE | SpliceFlags::NONBLOCK;
    loop {
        // Socket to pipe: the pipe is empty here, so this waits only for the socket.
        let n = loop {
            src.readable().await?;
            let step = || Ok(splice(src, None, &pipe_in, None, capacity, flags)?);
            match src.try_io(Interest::READABLE, step) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        };
        if n == 0 {
            return Ok(());
        }
        // Pipe to socket, until the pipe is empty again.
        let mut left = n;
        while left > 0 {
            dst.writable().await?;
            let step = || Ok(splice(&pipe_out, None, dst, None, left, flags)?);
            match dst.try_io(Interest::WRITABLE, step) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(m) => left -= m,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
        moved(n as u64);
    }
}

/// Moves exactly `n` bytes from `src` to `dst`, but for the last `keep` of them, which it
/// returns instead (the caller writes them after giving `src` back to its pool). Fails
/// when `src` ends early, or stays silent for `idle` (only a wait registers a timer).
pub async fn copy_exact(
    src: &TcpStream,
    dst: &TcpStream,
    n: u64,
    keep: usize,
    idle: std::time::Duration,
) -> io::Result<Vec<u8>> {
    use rustix::pipe::{fcntl_setpipe_size, pipe_with, splice, PipeFlags, SpliceFlags};
    let (pipe_out, pipe_in) = pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
    let capacity = fcntl_setpipe_size(&pipe_in, CHUNK).unwrap_or(64 * 1024) as u64;
    let keep = (keep as u64).min(n).min(capacity / 2);
    let flags = SpliceFlags::MOVE | SpliceFlags::NONBLOCK;
    let waited = |e| io::Error::new(io::ErrorKind::TimedOut, format!("{e}: idle for {idle:?}"));
    // Bytes still to read from `src`, and bytes read but still in the pipe.
    let (mut left, mut in_pipe) = (n, 0u64);
    while left > 0 {
        // Socket to pipe, as much as the pipe has room for.
        let want = left.min(capacity - in_pipe);
        let got = loop {
            let step = || Ok(splice(src, None, &pipe_in, None, want as usize, flags)?);
            match src.try_io(Interest::READABLE, step) {
                Ok(got) => break got as u64,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    tokio::time::timeout(idle, src.readable())
                        .await
                        .map_err(waited)??;
                }
                Err(e) => return Err(e),
            }
        };
        if got == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        left -= got;
        in_pipe += got;
        // Pipe to socket: everything but what must stay for the tail.
        let mut out = (left + in_pipe).saturating_sub(keep).min(in_pipe);
        while out > 0 {
            let step = || Ok(splice(&pipe_out, None, dst, None, out as usize, flags)?);
            match dst.try_io(Interest::WRITABLE, step) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(m) => {
                    out -= m as u64;
                    in_pipe -= m as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    tokio::time::timeout(idle, dst.writable())
                        .await
                        .map_err(waited)??;
                }
                Err(e) => return Err(e),
            }
        }
    }
    // The tail, from the pipe into memory.
    let mut tail = vec![0u8; in_pipe as usize];
    let mut filled = 0;
    while filled < tail.len() {
        match rustix::io::read(&pipe_out, &mut tail[filled..])? {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            k => filled += k,
        }
    }
    Ok(tail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// Two connected loopback sockets.
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (a, b) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (a.unwrap(), b.unwrap().0)
    }

    /// Every byte arrives in order, the end is passed on by the caller, and the counts add
    /// up — for more than one pipe's worth.
    #[tokio::test]
    async fn bytes_move_in_order_until_the_end() {
        let (mut writer, src) = pair().await;
        let (dst, mut reader) = pair().await;
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let sent = data.clone();
        let feeder = tokio::spawn(async move {
            writer.write_all(&sent).await.unwrap();
            writer.shutdown().await.unwrap();
        });
        let mut total = 0;
        let (moved, received) = tokio::join!(
            async {
                copy(&src, &dst, |n| total += n).await.unwrap();
                drop(dst);
                total
            },
            async {
                let mut got = Vec::new();
                reader.read_to_end(&mut got).await.unwrap();
                got
            }
        );
        feeder.await.unwrap();
        assert_eq!(moved, data.len() as u64);
        assert!(received == data, "the bytes arrived as they were sent");
    }

    /// Exactly `n` bytes move, the last `keep` come back to the caller, and what follows
    /// them on the source (the next response) is left unread.
    #[tokio::test]
    async fn exactly_n_bytes_move_and_the_tail_comes_back() {
        let (mut writer, src) = pair().await;
        let (dst, mut reader) = pair().await;
        let body: Vec<u8> = (0..2_500_000u32).map(|i| (i % 241) as u8).collect();
        let mut sent = body.clone();
        sent.extend_from_slice(b"NEXT");
        let feeder = tokio::spawn(async move { writer.write_all(&sent).await.unwrap() });
        let idle = std::time::Duration::from_secs(10);
        let n = body.len() as u64;
        let (tail, received) = tokio::join!(
            async {
                let tail = copy_exact(&src, &dst, n, 1000, idle).await.unwrap();
                drop(dst);
                tail
            },
            async {
                let mut got = Vec::new();
                reader.read_to_end(&mut got).await.unwrap();
                got
            }
        );
        feeder.await.unwrap();
        let split = body.len() - 1000;
        assert!(received == body[..split], "all but the tail went through");
        assert!(tail == body[split..], "the tail came back");
        let mut next = [0u8; 4];
        src.try_read(&mut next).unwrap();
        assert_eq!(
            &next, b"NEXT",
            "the bytes after the body stayed in the socket"
        );
    }

    #[tokio::test]
    async fn a_source_that_ends_early_is_an_error() {
        let (mut writer, src) = pair().await;
        let (dst, _reader) = pair().await;
        writer.write_all(&[7u8; 1000]).await.unwrap();
        writer.shutdown().await.unwrap();
        let idle = std::time::Duration::from_secs(10);
        let err = copy_exact(&src, &dst, 5000, 10, idle).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    /// The tail is whole even when the body arrives in pieces smaller than it.
    #[tokio::test]
    async fn the_tail_is_whole_when_the_body_trickles() {
        let (mut writer, src) = pair().await;
        let (dst, mut reader) = pair().await;
        let body: Vec<u8> = (0..100_000u32).map(|i| (i % 239) as u8).collect();
        let sent = body.clone();
        let feeder = tokio::spawn(async move {
            for piece in sent.chunks(3000) {
                writer.write_all(piece).await.unwrap();
                writer.flush().await.unwrap();
                tokio::task::yield_now().await;
            }
            writer
        });
        let idle = std::time::Duration::from_secs(10);
        let (tail, received) = tokio::join!(
            async {
                let tail = copy_exact(&src, &dst, body.len() as u64, 16 * 1024, idle).await;
                drop(dst);
                tail.unwrap()
            },
            async {
                let mut got = Vec::new();
                reader.read_to_end(&mut got).await.unwrap();
                got
            }
        );
        drop(feeder.await.unwrap());
        let split = body.len() - 16 * 1024;
        assert!(received == body[..split], "all but the tail went through");
        assert!(tail == body[split..], "the tail came back whole");
    }
}
