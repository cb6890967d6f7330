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
}
