//! Configuration: every knob of the proxy, with its default and its `--help` text.
//!
//! Takes: command-line arguments (or `Config::default()` in tests). Returns: one `Config`
//! shared read-only by every connection.

use clap::{Parser, ValueEnum};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// A fast, honest HTTP forward proxy for teaching and testing.
///
/// Point a client at it (`curl -x http://127.0.0.1:8080 http://…`) and it forwards each
/// absolute-form request to the origin, keeping connections alive on both sides. It prints
/// `proxy listening on http://IP:PORT` once bound, and one line per client connection.
#[derive(Debug, Clone, Parser)]
#[command(name = "proxy", version, about, long_about)]
#[command(after_help = AFTER_HELP)]
pub struct Config {
    /// Address to listen on; port 0 picks a free port (the `listening on` line tells which).
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "IP:PORT")]
    pub listen: SocketAddr,

    /// Runtime worker threads [default: the number of CPU cores].
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,

    /// Client connections served at once; further connections wait to be accepted.
    #[arg(long, default_value_t = 1024, value_name = "N")]
    pub max_clients: usize,

    /// Teaching mode: serve one client connection at a time (as --max-clients 1).
    #[arg(long)]
    pub sequential: bool,

    /// The name this proxy gives itself in Via headers (and recognises in loops).
    #[arg(long, default_value = "proxylab", value_name = "NAME")]
    pub via_name: String,

    /// Do not add Via headers (as Squid's `via off`); loops are then not detected.
    #[arg(long)]
    pub no_via: bool,

    /// What to do with X-Forwarded-For: append the client's address, strip the header,
    /// or leave it as it came.
    #[arg(long, value_enum, default_value_t = ForwardedFor::Append, value_name = "MODE")]
    pub forwarded_for: ForwardedFor,

    /// Reverse mode: send origin-form requests (`GET /path`) to this server (repeatable;
    /// several are used in turn, one that refuses connections is passed over for a while).
    #[arg(long = "upstream", value_name = "URL", value_parser = parse_upstream)]
    pub upstreams: Vec<crate::http::target::Authority>,

    /// A parent proxy (http://HOST:PORT, repeatable): GET and HEAD requests in forward
    /// mode go through one of them instead of to the origin, each URL always to the same
    /// parent (rendezvous hashing), so a cache hierarchy fetches each object once. A parent
    /// that refuses connections is passed over for a while and only its URLs move. Give
    /// every proxy of the hierarchy its own --via-name: a name met again in Via is a loop.
    #[arg(long = "parent", value_name = "URL", value_parser = parse_upstream)]
    pub parents: Vec<crate::http::target::Authority>,

    /// Ports CONNECT may open tunnels to: a list such as `443,8443,9000-9100`, or `any`.
    #[arg(long, default_value = "443", value_name = "LIST", value_parser = PortPolicy::parse)]
    pub connect_ports: PortPolicy,

    /// How long a CONNECT tunnel may carry nothing either way before it is closed.
    #[arg(long, default_value = "5m", value_parser = parse_duration, value_name = "DURATION")]
    pub tunnel_idle_timeout: Duration,

    /// Resolve NAME to IP without asking DNS (repeatable), like curl's --resolve.
    #[arg(long, value_name = "NAME=IP", value_parser = parse_resolve)]
    pub resolve: Vec<(String, IpAddr)>,

    /// Never ask DNS: only IP literals, `localhost` and --resolve names can be reached
    /// (others answer 502). For offline labs and tests.
    #[arg(long)]
    pub offline: bool,

    /// How long a client may take to send a request's header section (then 408).
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub header_timeout: Duration,

    /// How long an idle keep-alive client connection is kept open.
    #[arg(long, default_value = "60s", value_parser = parse_duration, value_name = "DURATION")]
    pub idle_timeout: Duration,

    /// How long connecting to an upstream server may take (then 504).
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub connect_timeout: Duration,

    /// How long an upstream server may take to start its response, or pause in its body
    /// (then 504, or the response is cut off).
    #[arg(long, default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub upstream_timeout: Duration,

    /// Memory for the shared HTTP cache, in bytes (suffixes K, M, G, KiB, MiB, GiB); 0 turns
    /// caching off.
    #[arg(long, default_value = "64MiB", value_parser = parse_size, value_name = "BYTES")]
    pub cache_size: usize,

    /// The largest response body the cache stores; larger ones stream through uncached.
    #[arg(long, default_value = "8MiB", value_parser = parse_size, value_name = "BYTES")]
    pub cache_max_object: usize,

    /// Also keep cached responses in this directory, one file each, and load them at start
    /// (a damaged file is skipped with a warning).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<std::path::PathBuf>,

    /// Share the cache with other replicas through Redis (redis://HOST:PORT[/DB]): memory
    /// stays the first level, a miss there looks in Redis before the origin, stored
    /// responses are written there, invalidations reach every replica, and one replica
    /// fetches a URI the others miss at the same time. Redis down or slow never fails a
    /// request: the proxy serves from memory and the origin and reconnects by itself.
    #[arg(long, value_name = "URL", value_parser = parse_store_url)]
    pub cache_store: Option<String>,

    /// With --cache-store: how long one replica's fetch of a URI holds back the others
    /// that miss it at the same time (they then fetch it themselves, e.g. if it died).
    #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
    pub cache_store_lock: Duration,

    /// A response field that targets this cache (RFC 9213), e.g. Proxylab-Cache-Control
    /// (repeatable, most specific first). The first such field with a valid value, else
    /// CDN-Cache-Control, rules over Cache-Control and Expires; in reverse mode they are
    /// not passed on to clients.
    #[arg(long, value_name = "NAME", value_parser = parse_field_name)]
    pub targeted_cache_control: Vec<String>,

    /// Idle upstream connections kept per server for reuse; 0 turns pooling off.
    #[arg(long, default_value_t = 256, value_name = "N")]
    pub pool_max_idle: usize,

    /// How long an idle pooled upstream connection is kept.
    #[arg(long, default_value = "90s", value_parser = parse_duration, value_name = "DURATION")]
    pub pool_idle_timeout: Duration,

    /// On Ctrl-C or SIGTERM, how long in-flight requests may take to finish.
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub grace: Duration,

    /// Log filter (error, warn, info, debug, trace, or tracing directives); RUST_LOG wins.
    #[arg(long, default_value = "info", value_name = "FILTER")]
    pub log: String,

    /// Filtering rules: a TOML file (block/allow rules, header rewrites) or a plain list of
    /// hosts and URLs to block, one per line. Reloaded within a second of any change (and on
    /// SIGHUP); a file that does not parse keeps the previous rules.
    #[arg(long, global = true, value_name = "FILE")]
    pub rules: Option<std::path::PathBuf>,

    /// Clients allowed to use the proxy, as CIDR blocks or addresses (repeatable); others
    /// get 403 [default: 127.0.0.0/8 and ::1, so it is never an open proxy by accident].
    #[arg(long = "allow-clients", value_name = "CIDR", value_parser = parse_cidr)]
    pub allow_clients: Vec<ipnet::IpNet>,

    /// Require Basic proxy authentication (407) against this file of `user:bcrypt-hash`
    /// lines (`htpasswd -B` writes them; so does `proxy hash-password USER`).
    #[arg(long, value_name = "FILE")]
    pub auth_file: Option<std::path::PathBuf>,

    /// Write an access log line per request (and per tunnel, when it closes) to FILE, or
    /// `-` for stdout. SIGUSR1 reopens the file, for log rotation.
    #[arg(long, value_name = "FILE")]
    pub access_log: Option<std::path::PathBuf>,

    /// The access log's format: Squid's native format, Apache's common or combined, or
    /// JSON lines with every field.
    #[arg(long, value_enum, default_value_t = LogFormat::Squid, value_name = "FORMAT")]
    pub log_format: LogFormat,

    /// Serve /metrics (Prometheus text) and /stats (JSON) on this address, to allowed
    /// clients only.
    #[arg(long, value_name = "IP:PORT")]
    pub admin: Option<SocketAddr>,

    /// Record both legs of every exchange (client↔proxy, proxy↔upstream) in this pcap
    /// file, as TCP frames Wireshark can follow.
    #[arg(long, value_name = "FILE")]
    pub pcap: Option<std::path::PathBuf>,

    /// The largest the --pcap file may grow; later frames are counted, not written.
    #[arg(long, default_value = "256MiB", value_parser = parse_size_u64, value_name = "BYTES")]
    pub pcap_max: u64,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Commands other than running the proxy.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Add a block rule to the --rules file (created if missing): a host, *.domain, or an
    /// http:// URL prefix. A running proxy applies it within a second.
    Block {
        /// e.g. `ads.example`, `*.tracker.example`, `http://example.com/private/`
        pattern: String,
    },
    /// Remove the block rules for exactly this host or URL from the --rules file.
    Unblock { pattern: String },
    /// Work with a rules file.
    #[command(subcommand)]
    Rules(RulesCommand),
    /// Print a `USER:HASH` line for --auth-file; the password is read from stdin.
    HashPassword { user: String },
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum RulesCommand {
    /// Parse a rules file and say what it holds, or where it is wrong (exit status 1).
    Check { file: std::path::PathBuf },
}

/// Access log formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// `time.ms elapsed client code/status bytes method URL user hierarchy/peer type`
    Squid,
    /// Apache's common log format.
    Common,
    /// Apache's combined format (common plus Referer and User-Agent).
    Combined,
    /// One JSON object per line.
    Json,
}

fn parse_cidr(s: &str) -> Result<ipnet::IpNet, String> {
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("{s:?} is not an address or CIDR block (e.g. 10.0.0.0/8)"))
}

const AFTER_HELP: &str = "\
Errors the proxy answers itself, each with a one-sentence plain-text body:
  400 malformed request     408 header section too slow   414 request-target > 8 KiB
  403 blocked by a --rules rule (the page names it and its line), a client outside
      --allow-clients, CONNECT to a port outside --connect-ports, PURGE from elsewhere
  404 an origin-form request for anything but / (forward mode)   431 header section > 64 KiB
  407 --auth-file is set and the Proxy-Authorization credentials are missing or wrong
  501 https:// request-targets (use CONNECT)   502 upstream unreachable, unresolvable or invalid
  504 upstream too slow, only-if-cached with nothing stored, or an origin that fails while
      the stored response must be revalidated (must-revalidate, no-cache, s-maxage)
  508 Via loop, or CONNECT to the proxy itself

Responses to GET and HEAD say what the cache did in Cache-Status (RFC 9211), e.g.
`proxylab; hit` or `proxylab; fwd=uri-miss; stored`; a hit's detail says when it was
stale-while-revalidate, stale-if-error, a range from a stored partial response, or found in
the store replicas share (--cache-store).
`PURGE http://host/path` from this machine removes a stored URI.

Examples:
  proxy --listen 127.0.0.1:0
  curl -x http://127.0.0.1:8080 http://127.0.0.1:9000/bytes/100
  curl -x http://127.0.0.1:8080 --cacert ca.pem https://localhost:9443/bytes/100
  proxy --resolve example.test=127.0.0.1 --workers 2 --max-clients 64
  proxy --listen 127.0.0.1:8000 --upstream http://127.0.0.1:9000 --cache-dir cache/
  proxy --via-name replica-1 --cache-store redis://127.0.0.1:6379 --parent http://127.0.0.1:3129
  proxy --rules rules.toml --access-log access.log --admin 127.0.0.1:9090
  proxy --rules rules.toml block '*.ads.example'    (a running proxy applies it at once)
  proxy rules check rules.toml

The rules file (TOML; a .txt file is a plain list of hosts and http:// URLs to block):
  default = \"allow\"                  # or \"deny\": only what an allow rule matches passes
  [[rule]]
  action = \"block\"                   # first matching rule wins
  host = \"*.ads.example\"             # also: url = \"http://…/prefix\", regex, method, port
  [[header]]
  on = \"request\"                     # or \"response\"; hosts = [...] to scope it
  remove = [\"Cookie\"]
  set = { \"User-Agent\" = \"proxylab\" }";

/// Which ports CONNECT may reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortPolicy {
    Any,
    /// Inclusive ranges.
    Only(Vec<(u16, u16)>),
}

impl PortPolicy {
    pub fn parse(s: &str) -> Result<PortPolicy, String> {
        if s.trim().eq_ignore_ascii_case("any") {
            return Ok(PortPolicy::Any);
        }
        let mut ranges = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (lo, hi) = part.split_once('-').unwrap_or((part, part));
            let port = |p: &str| {
                p.trim().parse::<u16>().map_err(|_| {
                    format!("{p:?} is not a port (use e.g. 443,8443,9000-9100 or any)")
                })
            };
            let (lo, hi) = (port(lo)?, port(hi)?);
            if lo > hi {
                return Err(format!("the range {part:?} is backwards"));
            }
            ranges.push((lo, hi));
        }
        if ranges.is_empty() {
            return Err("no ports given (use e.g. 443, or any)".into());
        }
        Ok(PortPolicy::Only(ranges))
    }

    pub fn allows(&self, port: u16) -> bool {
        match self {
            PortPolicy::Any => true,
            PortPolicy::Only(ranges) => ranges.iter().any(|&(lo, hi)| (lo..=hi).contains(&port)),
        }
    }
}

impl std::fmt::Display for PortPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PortPolicy::Any => f.write_str("any"),
            PortPolicy::Only(ranges) => {
                let parts: Vec<String> = ranges
                    .iter()
                    .map(|&(lo, hi)| {
                        if lo == hi {
                            lo.to_string()
                        } else {
                            format!("{lo}-{hi}")
                        }
                    })
                    .collect();
                f.write_str(&parts.join(","))
            }
        }
    }
}

/// What to do with `X-Forwarded-For`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ForwardedFor {
    /// Add the client's address to the list.
    Append,
    /// Remove the header entirely.
    Strip,
    /// Forward whatever the client sent, unchanged.
    Off,
}

impl Default for Config {
    fn default() -> Self {
        Config::parse_from(["proxy"])
    }
}

impl Config {
    /// A configuration for tests: listen on 127.0.0.1:0, everything else default.
    pub fn for_tests() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            ..Config::default()
        }
    }

    /// The client networks allowed to use the proxy (loopback when none were given).
    pub fn client_networks(&self) -> Vec<ipnet::IpNet> {
        if self.allow_clients.is_empty() {
            vec![
                ipnet::IpNet::V4(ipnet::Ipv4Net::new_assert(std::net::Ipv4Addr::LOCALHOST, 8)),
                ipnet::IpNet::from(IpAddr::from(std::net::Ipv6Addr::LOCALHOST)),
            ]
        } else {
            self.allow_clients.clone()
        }
    }

    /// How many connections are served at once.
    pub fn concurrency(&self) -> usize {
        if self.sequential {
            1
        } else {
            self.max_clients.max(1)
        }
    }

    /// The Via entry this proxy adds, e.g. `1.1 proxylab`; `None` with `--no-via`.
    pub fn via_entry(&self, version: crate::http::wire::Version) -> Option<String> {
        (!self.no_via).then(|| format!("{} {}", version.number(), self.via_name))
    }

    /// The `--resolve` overrides as a map from lower-cased name to address.
    pub fn resolve_map(&self) -> HashMap<String, IpAddr> {
        self.resolve
            .iter()
            .map(|(name, ip)| (name.to_ascii_lowercase(), *ip))
            .collect()
    }
}

/// Parses durations such as `10s`, `250ms`, `2m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (use e.g. 10s, 250ms, 2m)"))
}

/// Parses sizes such as `64MiB`, `8M`, `512k`, `1000` (bytes).
pub fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: usize = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a size (use e.g. 64MiB, 8M, 1000)"))?;
    let scale: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => return Err(format!("unknown size unit {other:?} (use K, M or G)")),
    };
    n.checked_mul(scale)
        .ok_or_else(|| format!("{s:?} is too large"))
}

fn parse_store_url(s: &str) -> Result<String, String> {
    if !s.starts_with("redis://") {
        return Err(format!("{s}: expected redis://HOST:PORT[/DB]"));
    }
    redis::Client::open(s).map_err(|e| format!("{s}: {e}"))?;
    Ok(s.to_string())
}

fn parse_upstream(s: &str) -> Result<crate::http::target::Authority, String> {
    match crate::http::target::parse("GET", s) {
        Ok(crate::http::target::Target::Absolute { authority, path }) if path == "/" => {
            Ok(authority)
        }
        Ok(crate::http::target::Target::Absolute { .. }) => Err(format!(
            "{s:?}: give the server only, e.g. http://127.0.0.1:9000"
        )),
        _ => Err(format!(
            "{s:?} is not an http:// URL (e.g. http://127.0.0.1:9000)"
        )),
    }
}

fn parse_resolve(s: &str) -> Result<(String, IpAddr), String> {
    let (name, ip) = s
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=IP, got {s:?}"))?;
    if name.is_empty() {
        return Err("the name in NAME=IP is empty".into());
    }
    let ip = ip
        .trim_matches(|c| c == '[' || c == ']')
        .parse()
        .map_err(|_| format!("{ip:?} is not an IP address"))?;
    Ok((name.to_string(), ip))
}

fn parse_field_name(s: &str) -> Result<String, String> {
    if s.is_empty() || !s.bytes().all(crate::http::wire::is_tchar) {
        return Err(format!("{s:?} is not a header field name"));
    }
    if s.eq_ignore_ascii_case("cache-control") {
        return Err(
            "Cache-Control is not a targeted field; name one such as Proxylab-Cache-Control".into(),
        );
    }
    Ok(s.to_string())
}

fn parse_size_u64(s: &str) -> Result<u64, String> {
    parse_size(s).map(|n| n as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targeted_field_names_are_tokens_and_not_cache_control() {
        assert_eq!(
            parse_field_name("Proxylab-Cache-Control").as_deref(),
            Ok("Proxylab-Cache-Control")
        );
        for bad in ["", "Two Words", "a:b", "Cache-Control", "cache-control"] {
            assert!(parse_field_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn connect_ports_are_lists_of_inclusive_ranges() {
        let policy = PortPolicy::parse(" 443, 9000-9100 ,8443-8443").unwrap();
        assert_eq!(
            policy,
            PortPolicy::Only(vec![(443, 443), (9000, 9100), (8443, 8443)])
        );
        for (port, allowed) in [
            (443, true),
            (442, false),
            (444, false),
            (9000, true),
            (9050, true),
            (9100, true),
            (9101, false),
            (8443, true),
        ] {
            assert_eq!(policy.allows(port), allowed, "port {port}");
        }
        assert_eq!(policy.to_string(), "443,9000-9100,8443");
        for any in ["any", "ANY", " Any "] {
            assert_eq!(PortPolicy::parse(any), Ok(PortPolicy::Any));
        }
        assert!(PortPolicy::Any.allows(1) && PortPolicy::Any.allows(65535));
        assert_eq!(PortPolicy::Any.to_string(), "any");
    }

    #[test]
    fn bad_connect_ports_are_refused_with_a_reason() {
        for (text, says) in [
            ("9100-9000", "backwards"),
            ("", "no ports"),
            (" , ", "no ports"),
            ("https", "not a port"),
            ("70000", "not a port"),
            ("1-x", "not a port"),
        ] {
            let err = PortPolicy::parse(text).expect_err(text);
            assert!(err.contains(says), "{text:?}: {err}");
        }
    }

    #[test]
    fn tests_listen_on_a_free_loopback_port() {
        assert_eq!(
            Config::for_tests().listen,
            SocketAddr::from(([127, 0, 0, 1], 0))
        );
    }
}
