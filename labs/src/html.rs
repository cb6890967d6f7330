//! `lab run N --html FILE`: one self-contained page (no network, no scripts) with the score,
//! each check's verdict, hint and reproducer, and for each lost check the exchange itself —
//! what the grader sent, what the origin received, what came back — drawn as a message
//! sequence from the check's capture, with the first differing byte of a wrong body marked.
//! Lab 3's sweep is a plot: requests/s against clients, the student beside the reference.

use crate::report::Report;
use crate::{Outcome, Verdict};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;

/// Who sent or received a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Party {
    Grader,
    Subject,
    Origin,
}

impl Party {
    fn column(self) -> usize {
        match self {
            Party::Grader => 0,
            Party::Subject => 1,
            Party::Origin => 2,
        }
    }
}

/// One message: consecutive bytes one way on one connection.
#[derive(Debug, Clone)]
pub struct Message {
    pub from: Party,
    pub to: Party,
    /// Which connection (both directions share it), numbered as they appear.
    pub conn: usize,
    pub bytes: Vec<u8>,
}

/// A check's traffic, read back from its capture: the grader's connections to the subject
/// (`subject` is its address) and the subject's connections to the origin (`origin`).
pub fn exchange(
    pcap: &Path,
    subject: SocketAddr,
    origin: SocketAddr,
) -> Result<Vec<Message>, String> {
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};
    let file = std::fs::File::open(pcap).map_err(|e| format!("{}: {e}", pcap.display()))?;
    let mut reader =
        pcap_file::pcap::PcapReader::new(file).map_err(|e| format!("{}: {e}", pcap.display()))?;
    let mut messages: Vec<Message> = Vec::new();
    let mut conns: Vec<(u16, u16)> = Vec::new();
    while let Some(packet) = reader.next_packet() {
        let Ok(packet) = packet else { break };
        let Ok(sliced) = SlicedPacket::from_ethernet(&packet.data) else {
            continue;
        };
        let Some(TransportSlice::Tcp(tcp)) = sliced.transport else {
            continue;
        };
        if tcp.payload().is_empty()
            || !matches!(sliced.net, Some(NetSlice::Ipv4(_) | NetSlice::Ipv6(_)))
        {
            continue;
        }
        let (src, dst) = (tcp.source_port(), tcp.destination_port());
        let (from, to, client_port) = if dst == subject.port() {
            (Party::Grader, Party::Subject, src)
        } else if src == subject.port() {
            (Party::Subject, Party::Grader, dst)
        } else if dst == origin.port() {
            (Party::Subject, Party::Origin, src)
        } else if src == origin.port() {
            (Party::Origin, Party::Subject, dst)
        } else {
            continue;
        };
        let server = if matches!(to, Party::Origin) || matches!(from, Party::Origin) {
            origin.port()
        } else {
            subject.port()
        };
        let key = (client_port, server);
        let conn = match conns.iter().position(|c| *c == key) {
            Some(i) => i,
            None => {
                conns.push(key);
                conns.len() - 1
            }
        };
        match messages.last_mut() {
            Some(last) if last.conn == conn && last.from == from => {
                last.bytes.extend_from_slice(tcp.payload())
            }
            _ => messages.push(Message {
                from,
                to,
                conn,
                bytes: tcp.payload().to_vec(),
            }),
        }
    }
    Ok(messages)
}

/// Lab 3's sweep, for the plot: (clients, requests/s) for the student and the reference.
#[derive(Debug, Clone, Default)]
pub struct Sweep {
    pub student: Vec<(usize, f64)>,
    pub reference: Vec<(usize, f64)>,
}

fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Bytes as text a person can read: printable ASCII as it is, `\r\n` as ↵ and a line
/// break, anything else as `\xHH`; at most `limit` bytes, then how many more there were.
fn printable(bytes: &[u8], limit: usize) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < bytes.len().min(limit) {
        match bytes[i] {
            b'\r' if bytes.get(i + 1) == Some(&b'\n') => {
                out.push_str("↵\n");
                i += 1;
            }
            b'\n' => out.push_str("↵\n"),
            b @ 0x20..=0x7e => out.push(b as char),
            b => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
        i += 1;
    }
    if bytes.len() > limit {
        let _ = write!(out, "\n… and {} more bytes", bytes.len() - limit);
    }
    esc(&out)
}

/// The first line of a message, for its arrow.
fn first_line(bytes: &[u8]) -> String {
    let end = bytes
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(bytes.len())
        .min(90);
    let line = String::from_utf8_lossy(&bytes[..end]).into_owned();
    if line.chars().all(|c| !c.is_control()) && !line.is_empty() {
        line
    } else {
        format!("{} bytes", bytes.len())
    }
}

const STYLE: &str = r#"
body{font:15px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:70rem;padding:0 1rem;color:#1d2330}
h1{font-size:1.5rem;margin:.2rem 0}h2{font-size:1.15rem;margin:2rem 0 .5rem}
.score{font-size:2.6rem;font-weight:700}.sub{color:#566}
table.checks{border-collapse:collapse;width:100%}table.checks td{padding:.3rem .5rem;border-bottom:1px solid #e4e7ec;vertical-align:top}
.v{font-weight:700;border-radius:.3rem;padding:.05rem .45rem;font-size:.8rem;white-space:nowrap}
.passed{background:#dcf5e3;color:#14532d}.failed{background:#fde2e1;color:#7f1d1d}.not-judged{background:#fef3c7;color:#78350f}.not-run{background:#e5e7eb;color:#374151}
.lost{border:1px solid #e4e7ec;border-radius:.5rem;padding:.8rem 1rem;margin:1rem 0}
pre{background:#f6f8fa;padding:.6rem;border-radius:.3rem;overflow-x:auto;white-space:pre-wrap;word-break:break-all;font-size:.82rem}
.seq{display:grid;grid-template-columns:1fr 1fr 1fr;gap:.15rem 0;margin:.6rem 0;font-size:.82rem}
.seq .who{font-weight:700;text-align:center;border-bottom:2px solid #94a3b8;padding-bottom:.2rem}
.seq .msg{border:1px solid #cbd5e1;border-radius:.3rem;padding:.15rem .4rem;margin:.1rem .3rem;background:#fff}
.seq .right{border-right:4px solid #2563eb}.seq .left{border-left:4px solid #16a34a}
.seq summary{cursor:pointer;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.diff b{background:#fca5a5;color:#7f1d1d}
"#;

/// One lost check's section.
fn lost(out: &mut String, o: &Outcome, exchange: Option<&[Message]>) {
    let verdict = match o.verdict {
        Verdict::NotJudged => "not judged",
        _ => "failed",
    };
    let _ = write!(
        out,
        "<div class=lost id=\"{id}\"><h2>{id} — {verdict}, {max} point(s) lost</h2><p>{proves}</p>",
        id = esc(&o.id),
        max = o.max,
        proves = esc(&o.proves)
    );
    if let Some(f) = &o.failure {
        let _ = write!(out, "<p><b>What happened:</b> {}</p>", esc(f));
    }
    if let Some(h) = &o.hint {
        let _ = write!(out, "<p><b>Hint:</b> {}</p>", esc(h));
    }
    if let Some(d) = &o.diff {
        let _ = write!(
            out,
            "<p><b>The body, from byte {}:</b> the first differing byte is marked</p>",
            d.offset
        );
        for (label, bytes) in [("expected", &d.expected), ("received", &d.received)] {
            let at = d.at - d.offset;
            let (a, rest) = bytes.split_at(at.min(bytes.len()));
            let (b, c) = rest.split_at(rest.len().min(1));
            let _ = write!(
                out,
                "<pre class=diff>{label}: {}<b>{}</b>{}</pre>",
                printable(a, 256),
                printable(b, 1),
                printable(c, 256)
            );
        }
    }
    if let Some(r) = &o.repro {
        let _ = write!(
            out,
            "<p><b>Reproduce</b> (it keeps everything running):</p><pre>{}</pre>",
            esc(r)
        );
    }
    if let Some(r) = &o.reproduce {
        let _ = write!(
            out,
            "<p><b>It ran</b> (ports of that run):</p><pre>{}</pre>",
            esc(r)
        );
    }
    if !o.output.is_empty() {
        let _ = write!(
            out,
            "<p><b>Your program's last output:</b></p><pre>{}</pre>",
            esc(&o.output.join("\n"))
        );
    }
    match exchange {
        Some(messages) if !messages.is_empty() => {
            out.push_str(
                "<p><b>The exchange</b> (click a message for its bytes):</p><div class=seq>",
            );
            for who in ["the grader", "your program", "origin-sim"] {
                let _ = write!(out, "<div class=who>{who}</div>");
            }
            for m in messages.iter().take(200) {
                let (a, b) = (m.from.column(), m.to.column());
                let (lo, hi) = (a.min(b), a.max(b));
                let (class, arrow) = if b > a {
                    ("right", "→")
                } else {
                    ("left", "←")
                };
                let _ = write!(
                    out,
                    "<div class=\"msg {class}\" style=\"grid-column:{}/{}\"><details><summary>{arrow} #{} {} <span class=sub>({} B)</span></summary><pre>{}</pre></details></div>",
                    lo + 1,
                    hi + 2,
                    m.conn + 1,
                    esc(&first_line(&m.bytes)),
                    m.bytes.len(),
                    printable(&m.bytes, 4096)
                );
            }
            if messages.len() > 200 {
                let _ = write!(
                    out,
                    "<div style=\"grid-column:1/4\" class=sub>… {} more messages</div>",
                    messages.len() - 200
                );
            }
            out.push_str("</div>");
        }
        _ => {}
    }
    out.push_str("</div>");
}

/// An SVG plot of requests/s against clients (every attribute quoted: inline SVG in HTML).
fn plot(sweep: &Sweep) -> String {
    let (w, h, pad) = (660.0, 300.0, 64.0);
    let all: Vec<(usize, f64)> = sweep
        .student
        .iter()
        .chain(&sweep.reference)
        .copied()
        .collect();
    let max_y = all.iter().map(|p| p.1).fold(1.0, f64::max) * 1.1;
    let xs: Vec<usize> = {
        let mut xs: Vec<usize> = all.iter().map(|p| p.0).collect();
        xs.sort_unstable();
        xs.dedup();
        xs
    };
    let x = |c: usize| {
        let i = xs.iter().position(|&v| v == c).unwrap_or(0) as f64;
        pad + i * (w - 2.0 * pad) / (xs.len().max(2) - 1) as f64
    };
    let y = |v: f64| h - pad - v / max_y * (h - 2.0 * pad);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"requests per second against clients\">\
         <line x1=\"{pad}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"#94a3b8\"/>\
         <line x1=\"{pad}\" y1=\"{pad}\" x2=\"{pad}\" y2=\"{b}\" stroke=\"#94a3b8\"/>",
        b = h - pad,
        r = w - pad,
    );
    for &c in &xs {
        let _ = write!(
            svg,
            "<text x=\"{:.0}\" y=\"{}\" font-size=\"12\" text-anchor=\"middle\">{c}</text>",
            x(c),
            h - pad + 18.0
        );
    }
    for i in 0..=4 {
        let v = max_y * i as f64 / 4.0;
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"{:.0}\" font-size=\"11\" text-anchor=\"end\">{v:.0}</text>",
            pad - 6.0,
            y(v) + 4.0
        );
    }
    let _ = write!(
        svg,
        "<text x=\"{}\" y=\"{}\" font-size=\"12\" text-anchor=\"middle\">clients</text>\
         <text x=\"10\" y=\"{}\" font-size=\"12\" transform=\"rotate(-90 10 {})\" text-anchor=\"middle\">requests/s</text>",
        w / 2.0,
        h - 8.0,
        h / 2.0,
        h / 2.0
    );
    for (points, colour, name, dy) in [
        (&sweep.student, "#2563eb", "your program", 0.0),
        (&sweep.reference, "#94a3b8", "the reference", 16.0),
    ] {
        if points.is_empty() {
            continue;
        }
        let line: Vec<String> = points
            .iter()
            .map(|&(c, v)| format!("{:.1},{:.1}", x(c), y(v)))
            .collect();
        let _ = write!(
            svg,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2.5\" points=\"{}\"/>",
            line.join(" ")
        );
        for &(c, v) in points.iter() {
            let _ = write!(
                svg,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3.5\" fill=\"{colour}\"><title>{c} clients: {v:.0} requests/s</title></circle>",
                x(c),
                y(v)
            );
        }
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"{}\" font-size=\"12\" fill=\"{colour}\">■ {name}</text>",
            pad + 10.0,
            pad - 20.0 + dy
        );
    }
    svg.push_str("</svg>");
    svg
}

/// The page for `report`: `exchanges` has the traffic of lost checks by id; `sweep`, lab 3's.
pub fn page(
    report: &Report,
    exchanges: &std::collections::BTreeMap<String, Vec<Message>>,
    sweep: Option<&Sweep>,
) -> String {
    let mut out = format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport content=\"width=device-width\">\
         <title>Lab {n}: {score}/{max}</title><style>{STYLE}</style></head><body>\
         <p class=sub>proxylab · lab {n}</p><h1>{title}</h1><p class=sub>grading {subject}</p>\
         <p><span class=score>{score}/{max}</span></p>",
        n = report.lab,
        title = esc(&report.title),
        subject = esc(&report.subject),
        score = report.score(),
        max = report.max(),
    );
    if let Some(why) = &report.aborted {
        let _ = write!(
            out,
            "<div class=lost><b>No check could run:</b><pre>{}</pre></div>",
            esc(why)
        );
    }
    out.push_str("<table class=checks>");
    for o in &report.outcomes {
        let (class, word) = match o.verdict {
            Verdict::Passed => ("passed", "pass"),
            Verdict::Failed => ("failed", "fail"),
            Verdict::NotJudged => ("not-judged", "not judged"),
            Verdict::NotRun => ("not-run", "not run"),
        };
        let name = if o.passed() || o.verdict == Verdict::NotRun {
            esc(&o.id)
        } else {
            format!("<a href=\"#{0}\">{0}</a>", esc(&o.id))
        };
        let _ = write!(
            out,
            "<tr><td><span class=\"v {class}\">{word}</span></td><td>{name}</td><td>{}/{}</td><td>{}</td></tr>",
            o.points,
            o.max,
            esc(&o.proves)
        );
    }
    out.push_str("</table>");
    if report
        .outcomes
        .iter()
        .any(|o| o.verdict == Verdict::NotJudged)
    {
        out.push_str("<p class=sub>Not judged: the ability the check builds on is missing; the check it names grades that ability, and is where to start.</p>");
    }
    for o in report
        .outcomes
        .iter()
        .filter(|o| matches!(o.verdict, Verdict::Failed | Verdict::NotJudged))
    {
        lost(&mut out, o, exchanges.get(&o.id).map(Vec::as_slice));
    }
    if let Some(sweep) = sweep {
        out.push_str("<h2>Concurrency sweep (reported, not graded)</h2><p class=sub>Requests per second through the proxy with 1, 4, 16 and 64 keep-alive clients.</p>");
        out.push_str(&plot(sweep));
    }
    if let Some(isolation) = &report.isolation {
        out.push_str("<h2>Graded under</h2><ul class=sub>");
        for line in isolation.lines() {
            let _ = write!(out, "<li>{}</li>", esc(&line));
        }
        out.push_str("</ul>");
    }
    let _ = writeln!(
        out,
        "<p class=sub>Graded in {:.1} s. Generated by proxylab's <code>lab</code>; this page loads nothing from the network.</p></body></html>",
        report.elapsed.as_secs_f64()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn bytes_read_as_text_with_line_ends_and_escapes() {
        assert_eq!(
            printable(b"GET / HTTP/1.1\r\n<x>\x00", 100),
            "GET / HTTP/1.1↵\n&lt;x&gt;\\x00"
        );
        assert_eq!(printable(b"abcdef", 3), "abc\n… and 3 more bytes");
    }
}
