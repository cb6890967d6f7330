//! `--pcap FILE`: both legs of every exchange (client↔proxy and proxy↔upstream) recorded as
//! synthetic Ethernet/IPv4 (or IPv6)/TCP frames, so Wireshark's "Follow TCP stream" shows
//! the HTTP conversations as the sockets carried them. Tunnels appear as their TCP payload
//! (TLS stays encrypted).
//!
//! Takes: the bytes each socket read or wrote, through [`TapRead`] and [`TapWrite`], which
//! wrap every socket half the proxy uses. Returns: a pcap file. The hot path only copies
//! the bytes into a bounded channel; a writer thread builds the frames (etherparse
//! computes lengths and checksums), numbers them (handshake, sequence and acknowledgement
//! numbers, FIN) and writes them with pcap-file. When the channel is full an event is
//! dropped and counted (the numbers of that flow stay continuous: the gap is in the
//! payload only); `--pcap-max` bounds the file. Both counts are reported at exit.

use etherparse::{PacketBuilder, TcpHeader};
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::task::{Context, Poll};
use std::time::SystemTime;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// Events queued for the writer before new ones are dropped: at 40,000 requests/s a tick
/// ([`crate::observe::batch::TICK`]) brings about 5,000.
const QUEUE: usize = 64 * 1024;
/// The largest TCP payload put in one frame (IPv4 allows a 64 KiB packet).
const SEGMENT: usize = 32 * 1024;

#[derive(Debug)]
enum Event {
    Open {
        flow: u64,
        client: SocketAddr,
        server: SocketAddr,
        at: SystemTime,
    },
    Data {
        flow: u64,
        from_client: bool,
        bytes: Vec<u8>,
        at: SystemTime,
    },
    Fin {
        flow: u64,
        from_client: bool,
        at: SystemTime,
    },
}

/// The capture: a channel to the writer thread.
#[derive(Debug)]
pub struct Capture {
    tx: Mutex<Option<mpsc::SyncSender<Event>>>,
    thread: Mutex<Option<std::thread::JoinHandle<Written>>>,
    next_flow: AtomicU64,
    dropped: AtomicU64,
}

/// What the writer did, reported at exit.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub frames: u64,
    /// Frames not written because the file reached `--pcap-max`.
    pub over_limit: u64,
}

impl Capture {
    /// Creates (truncates) `path` and starts the writer; the file stops growing at
    /// `max_bytes`.
    pub fn create(path: &std::path::Path, max_bytes: u64) -> io::Result<Arc<Capture>> {
        let file = std::fs::File::create(path)?;
        let (tx, rx) = mpsc::sync_channel::<Event>(QUEUE);
        let thread = std::thread::Builder::new()
            .name("pcap-writer".into())
            .spawn(move || {
                let file = SharedFile(std::rc::Rc::new(std::cell::RefCell::new(
                    io::BufWriter::with_capacity(256 * 1024, file),
                )));
                write_frames(file, rx, max_bytes)
            })?;
        Ok(Arc::new(Capture {
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            next_flow: AtomicU64::new(1),
            dropped: AtomicU64::new(0),
        }))
    }

    fn send(&self, event: Event) {
        let Ok(tx) = self.tx.lock() else { return };
        if let Some(tx) = tx.as_ref() {
            if let Err(mpsc::TrySendError::Full(_)) = tx.try_send(event) {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// A new TCP connection from `client` to `server`: its handshake is recorded.
    pub fn open(&self, client: SocketAddr, server: SocketAddr) -> u64 {
        let flow = self.next_flow.fetch_add(1, Ordering::Relaxed);
        self.send(Event::Open {
            flow,
            client,
            server,
            at: SystemTime::now(),
        });
        flow
    }

    /// Events dropped because the writer fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Writes out what is queued, closes the file, and logs what was captured.
    pub fn close(&self) -> Written {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        let written = thread.and_then(|t| t.join().ok()).unwrap_or_default();
        let dropped = self.dropped();
        if dropped > 0 || written.over_limit > 0 {
            tracing::warn!(
                "pcap: {} frames written; {dropped} events dropped (writer behind), {} frames over --pcap-max",
                written.frames,
                written.over_limit
            );
        } else {
            tracing::info!("pcap: {} frames written", written.frames);
        }
        written
    }
}

/// The file, shared between the pcap writer and the loop that flushes it after each batch.
struct SharedFile(std::rc::Rc<std::cell::RefCell<io::BufWriter<std::fs::File>>>);

impl io::Write for SharedFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.borrow_mut().write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.borrow_mut().flush()
    }
}

/// The writer thread: frames for each event, written until the file reaches `max_bytes`,
/// flushed whenever the queue is empty.
fn write_frames(file: SharedFile, rx: mpsc::Receiver<Event>, max_bytes: u64) -> Written {
    use io::Write as _;
    let mut flush = SharedFile(file.0.clone());
    let mut written = Written::default();
    let Ok(mut writer) = pcap_file::pcap::PcapWriter::new(file) else {
        tracing::error!("pcap: cannot write the file header");
        return written;
    };
    let mut flows = Flows::default();
    let mut size = 24u64; // the pcap file header
    crate::observe::batch::drain_in_ticks(
        rx,
        |event| {
            for (at, frame) in flows.frames(event) {
                let record = 16 + frame.len() as u64;
                if size + record > max_bytes {
                    written.over_limit += 1;
                    continue;
                }
                let ts = at
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default();
                let packet = pcap_file::pcap::PcapPacket::new(ts, frame.len() as u32, &frame);
                if writer.write_packet(&packet).is_ok() {
                    size += record;
                    written.frames += 1;
                }
            }
        },
        || {
            let _ = flush.flush();
        },
    );
    written
}

/// Per-connection TCP numbering.
#[derive(Debug)]
struct Flow {
    client: SocketAddr,
    server: SocketAddr,
    /// Next sequence number from the client side, and from the server side.
    seq_client: u32,
    seq_server: u32,
    fin_client: bool,
    fin_server: bool,
}

#[derive(Debug, Default)]
struct Flows {
    open: HashMap<u64, Flow>,
}

const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

impl Flows {
    /// The frames an event becomes.
    fn frames(&mut self, event: Event) -> Vec<(SystemTime, Vec<u8>)> {
        match event {
            Event::Open {
                flow,
                client,
                server,
                at,
            } => self.open_flow(flow, client, server, at),
            Event::Data {
                flow,
                from_client,
                bytes,
                at,
            } => self.data(flow, from_client, &bytes, at),
            Event::Fin {
                flow,
                from_client,
                at,
            } => self.fin(flow, from_client, at),
        }
    }

    /// A new connection: the three-way handshake.
    fn open_flow(
        &mut self,
        flow: u64,
        client: SocketAddr,
        server: SocketAddr,
        at: SystemTime,
    ) -> Vec<(SystemTime, Vec<u8>)> {
        // Initial sequence numbers derived from the flow number: deterministic.
        let isn_c = (flow as u32).wrapping_mul(0x9E37_79B9);
        let isn_s = isn_c ^ 0x5EED_5EED;
        let f = Flow {
            client,
            server,
            seq_client: isn_c.wrapping_add(1),
            seq_server: isn_s.wrapping_add(1),
            fin_client: false,
            fin_server: false,
        };
        let syn = tcp(&f, true, isn_c, 0, |h| h.syn = true);
        let syn_ack = tcp(&f, false, isn_s, isn_c.wrapping_add(1), |h| {
            h.syn = true;
            h.ack = true;
        });
        let ack = tcp(&f, true, f.seq_client, f.seq_server, |h| h.ack = true);
        let frames = vec![
            (at, frame(&f, true, syn, &[])),
            (at, frame(&f, false, syn_ack, &[])),
            (at, frame(&f, true, ack, &[])),
        ];
        self.open.insert(flow, f);
        frames
    }

    /// Bytes one way, as segments of at most [`SEGMENT`] bytes.
    fn data(
        &mut self,
        flow: u64,
        from_client: bool,
        bytes: &[u8],
        at: SystemTime,
    ) -> Vec<(SystemTime, Vec<u8>)> {
        let Some(f) = self.open.get_mut(&flow) else {
            return Vec::new();
        };
        let mut frames = Vec::new();
        for chunk in bytes.chunks(SEGMENT) {
            let (seq, ack) = f.numbers(from_client);
            let h = tcp(f, from_client, seq, ack, |h| {
                h.ack = true;
                h.psh = true;
            });
            frames.push((at, frame(f, from_client, h, chunk)));
            f.advance(from_client, chunk.len() as u32);
        }
        frames
    }

    /// One side finished sending; the flow is forgotten once both have.
    fn fin(&mut self, flow: u64, from_client: bool, at: SystemTime) -> Vec<(SystemTime, Vec<u8>)> {
        let Some(f) = self.open.get_mut(&flow) else {
            return Vec::new();
        };
        let done = if from_client {
            &mut f.fin_client
        } else {
            &mut f.fin_server
        };
        if *done {
            return Vec::new();
        }
        *done = true;
        let (seq, ack) = f.numbers(from_client);
        let h = tcp(f, from_client, seq, ack, |h| {
            h.fin = true;
            h.ack = true;
        });
        let frames = vec![(at, frame(f, from_client, h, &[]))];
        f.advance(from_client, 1);
        if f.fin_client && f.fin_server {
            self.open.remove(&flow);
        }
        frames
    }
}

impl Flow {
    /// The sequence number for the next segment from this side, and what it acknowledges.
    fn numbers(&self, from_client: bool) -> (u32, u32) {
        if from_client {
            (self.seq_client, self.seq_server)
        } else {
            (self.seq_server, self.seq_client)
        }
    }

    fn advance(&mut self, from_client: bool, by: u32) {
        let seq = if from_client {
            &mut self.seq_client
        } else {
            &mut self.seq_server
        };
        *seq = seq.wrapping_add(by);
    }
}

fn tcp(
    f: &Flow,
    from_client: bool,
    seq: u32,
    ack: u32,
    flags: impl FnOnce(&mut TcpHeader),
) -> TcpHeader {
    let (src, dst) = if from_client {
        (f.client, f.server)
    } else {
        (f.server, f.client)
    };
    let mut h = TcpHeader::new(src.port(), dst.port(), seq, 65535);
    h.acknowledgment_number = ack;
    flags(&mut h);
    h
}

/// One Ethernet frame; IPv6 when either end is IPv6 (an IPv4 end is then v4-mapped).
fn frame(f: &Flow, from_client: bool, tcp: TcpHeader, payload: &[u8]) -> Vec<u8> {
    let (src, dst, src_mac, dst_mac) = if from_client {
        (f.client.ip(), f.server.ip(), CLIENT_MAC, SERVER_MAC)
    } else {
        (f.server.ip(), f.client.ip(), SERVER_MAC, CLIENT_MAC)
    };
    let eth = PacketBuilder::ethernet2(src_mac, dst_mac);
    let ip = match (src.to_canonical(), dst.to_canonical()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => eth.ipv4(s.octets(), d.octets(), 64),
        (s, d) => eth.ipv6(v6(s), v6(d), 64),
    };
    let builder = ip.tcp_header(tcp);
    let mut out = Vec::with_capacity(builder.size(payload.len()));
    // Writing to a Vec cannot fail; a payload too large for one packet is impossible here
    // (segments are at most SEGMENT bytes).
    let _ = builder.write(&mut out, payload);
    out
}

fn v6(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// Which side of a captured connection a socket half belongs to.
#[derive(Debug, Clone)]
struct Tap {
    capture: Arc<Capture>,
    flow: u64,
    /// Whether this process is the connection's client (the upstream leg) or its server
    /// (the client leg).
    we_are_client: bool,
}

impl Tap {
    fn data(&self, ours: bool, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.capture.send(Event::Data {
            flow: self.flow,
            from_client: ours == self.we_are_client,
            bytes: bytes.to_vec(),
            at: SystemTime::now(),
        });
    }

    fn fin(&self, ours: bool) {
        self.capture.send(Event::Fin {
            flow: self.flow,
            from_client: ours == self.we_are_client,
            at: SystemTime::now(),
        });
    }
}

/// Splits a TCP stream into halves that record what passes through them when a capture
/// is on (`local` is this end's address, `peer` the other's; `we_are_client` says who
/// connected to whom).
pub fn split(
    stream: tokio::net::TcpStream,
    capture: Option<&Arc<Capture>>,
    peer: SocketAddr,
    we_are_client: bool,
) -> (TapRead, TapWrite) {
    let tap = capture.map(|capture| {
        let local = stream
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let (client, server) = if we_are_client {
            (local, peer)
        } else {
            (peer, local)
        };
        Tap {
            flow: capture.open(client, server),
            capture: capture.clone(),
            we_are_client,
        }
    });
    let (read, write) = stream.into_split();
    (
        TapRead {
            inner: read,
            tap: tap.clone(),
            eof: false,
        },
        TapWrite {
            inner: write,
            fin: FinOnDrop { tap, sent: false },
        },
    )
}

/// The reading half of a socket, recording what it reads when a capture is on.
#[derive(Debug)]
pub struct TapRead {
    inner: OwnedReadHalf,
    tap: Option<Tap>,
    eof: bool,
}

impl TapRead {
    /// A non-blocking read that is not recorded (the pool's liveness probe: any byte it
    /// sees makes the connection unusable anyway).
    pub fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.try_read(buf)
    }
}

impl TapRead {
    /// The socket itself, when nothing records what it reads: then bytes may move from it
    /// without passing through this process (`splice`).
    pub fn untapped(&self) -> Option<&tokio::net::TcpStream> {
        self.tap.is_none().then(|| self.inner.as_ref())
    }
}

impl TapWrite {
    /// The socket itself, when nothing records what it writes.
    pub fn untapped(&self) -> Option<&tokio::net::TcpStream> {
        self.fin.tap.is_none().then(|| self.inner.as_ref())
    }
}

impl crate::http::wire::Readable for TapRead {
    fn readable(&self) -> impl std::future::Future<Output = io::Result<()>> + Send {
        self.inner.readable()
    }
}

impl AsyncRead for TapRead {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let (Poll::Ready(Ok(())), Some(tap)) = (&result, &self.tap) {
            let got = &buf.filled()[before..];
            if got.is_empty() {
                if !self.eof {
                    tap.fin(false);
                    self.eof = true;
                }
            } else {
                tap.data(false, got);
            }
        }
        result
    }
}

/// The writing half of a socket, recording what it writes when a capture is on.
#[derive(Debug)]
pub struct TapWrite {
    inner: OwnedWriteHalf,
    fin: FinOnDrop,
}

/// Records our FIN once: at shutdown, or when the writing half is dropped (which closes
/// our side of the connection).
#[derive(Debug)]
struct FinOnDrop {
    tap: Option<Tap>,
    sent: bool,
}

impl FinOnDrop {
    fn send(&mut self) {
        if let (Some(tap), false) = (&self.tap, self.sent) {
            tap.fin(true);
            self.sent = true;
        }
    }
}

impl Drop for FinOnDrop {
    fn drop(&mut self) {
        self.send();
    }
}

impl TapRead {
    /// Puts the halves back together (to close with a reset, say). The capture sees no FIN
    /// from us: the connection goes on as a whole.
    pub fn reunite(self, write: TapWrite) -> io::Result<tokio::net::TcpStream> {
        let TapWrite { inner, mut fin } = write;
        fin.sent = true;
        self.inner.reunite(inner).map_err(io::Error::other)
    }
}

impl AsyncWrite for TapWrite {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let (Poll::Ready(Ok(n)), Some(tap)) = (&result, &self.fin.tap) {
            tap.data(true, &buf[..*n]);
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_shutdown(cx);
        if let Poll::Ready(Ok(())) = &result {
            self.fin.send();
        }
        result
    }
}
