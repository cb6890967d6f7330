//! Filtering rules: block or allow requests by host, URL prefix, regex, method and port, and
//! rewrite request or response headers. Loaded from a TOML file or a plain list (one host
//! or URL per line, as the seed project's `blacklist.txt`), and reloaded while the proxy runs.
//!
//! Takes: the rules file's text, then for each request the name the client asked for (never
//! a resolved address), its port, method and URL. Returns: allow, or the rule that blocked it
//! (with its line, for the 403 page).
//!
//! ```toml
//! default = "allow"            # or "deny": only what an allow rule matches gets through
//!
//! [[rule]]
//! action = "block"             # or "allow"; the first rule that matches decides
//! host = "*.ads.example"       # exact name, or *.suffix (the name itself and all below it)
//!
//! [[rule]]
//! action = "block"
//! url = "http://example.com/private/"   # URL prefix (plain HTTP requests)
//! method = "POST"                        # every key given must match
//!
//! [[header]]
//! on = "request"               # or "response"
//! hosts = ["*.example.com"]    # optional: only for these hosts
//! remove = ["Cookie"]          # applied in this order: remove, set, add
//! set = { "User-Agent" = "proxylab" }
//! add = { "X-Proxied" = "1" }
//! ```
//!
//! The plain list: `#` starts a comment; `http://host/path` is a URL prefix (`http://host`
//! or `http://host/` alone blocks the host, CONNECT included); `*.suffix` a wildcard;
//! anything else a host name. Every line is a block rule.

use crate::http::wire::Headers;
use regex::Regex;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, Weak};

/// What a rule does to the requests it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Block,
    Allow,
}

/// A host pattern: one exact name, or a domain and every name below it (`*.example.com`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    Exact(String),
    /// The domain without `*.`: matches the domain itself and every name ending `.domain`.
    Domain(String),
}

impl HostPattern {
    pub fn parse(text: &str) -> Result<HostPattern, String> {
        let text = text.trim().trim_end_matches('.').to_ascii_lowercase();
        let (wild, name) = match text.strip_prefix("*.").or_else(|| text.strip_prefix('.')) {
            Some(rest) => (true, rest.to_string()),
            None => (false, text.clone()),
        };
        let name = name
            .strip_prefix('[')
            .and_then(|n| n.strip_suffix(']'))
            .map_or(name.clone(), str::to_string);
        let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | ':');
        if name.is_empty() || !name.chars().all(valid) {
            return Err(format!(
                "{text:?} is not a host name or *.domain pattern (no scheme, path or port)"
            ));
        }
        Ok(if wild {
            HostPattern::Domain(name)
        } else {
            HostPattern::Exact(name)
        })
    }

    /// `host` must be lower-case, without IPv6 brackets (as [`crate::http::target::Authority`]).
    pub fn matches(&self, host: &str) -> bool {
        let host = host.strip_suffix('.').unwrap_or(host);
        match self {
            HostPattern::Exact(name) => host == name,
            HostPattern::Domain(domain) => {
                host == domain
                    || (host.len() > domain.len()
                        && host.ends_with(domain.as_str())
                        && host.as_bytes()[host.len() - domain.len() - 1] == b'.')
            }
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Exact(name) => f.write_str(name),
            HostPattern::Domain(domain) => write!(f, "*.{domain}"),
        }
    }
}

/// What a rule sees of a request.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The name the client asked for: lower-case, no brackets, never resolved.
    pub host: &'a str,
    pub port: u16,
    /// `http://host[:port]/path?query` (the port only when not 80), or `host:port` for
    /// CONNECT. See [`url`].
    pub url: &'a str,
}

/// The URL rules see: `http://host[:port]/path`, the port left out when it is 80.
pub fn url(host: &str, port: u16, path: &str) -> String {
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    if port == 80 {
        format!("http://{host}{path}")
    } else {
        format!("http://{host}:{port}{path}")
    }
}

/// One block or allow rule. Every condition it has must hold for it to match.
#[derive(Debug, Clone)]
pub struct Rule {
    pub action: Action,
    host: Option<HostPattern>,
    /// A normalised URL prefix (lower-case scheme and host, no `:80`).
    url: Option<String>,
    regex: Option<Regex>,
    method: Option<String>,
    port: Option<u16>,
    /// Where the rule starts in its file (1-based).
    pub line: usize,
    /// The rule's conditions as written, e.g. `host = "*.ads.example"`.
    pub text: String,
}

impl Rule {
    pub fn matches(&self, req: &Request<'_>) -> bool {
        self.host.as_ref().is_none_or(|h| h.matches(req.host))
            && self
                .url
                .as_ref()
                .is_none_or(|u| req.url.starts_with(u.as_str()))
            && self.regex.as_ref().is_none_or(|r| r.is_match(req.url))
            && self
                .method
                .as_ref()
                .is_none_or(|m| m.eq_ignore_ascii_case(req.method))
            && self.port.is_none_or(|p| p == req.port)
    }
}

/// Which message a header rewrite applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Request,
    Response,
}

/// One `[[header]]` table: header edits for requests or responses, maybe only some hosts.
#[derive(Debug, Clone)]
pub struct Rewrite {
    pub on: Direction,
    hosts: Vec<HostPattern>,
    remove: Vec<String>,
    set: Vec<(String, String)>,
    add: Vec<(String, String)>,
}

impl Rewrite {
    fn apply(&self, host: &str, headers: &mut Headers) {
        if !self.hosts.is_empty() && !self.hosts.iter().any(|h| h.matches(host)) {
            return;
        }
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.set {
            headers.set(name.clone(), value.as_str());
        }
        for (name, value) in &self.add {
            headers.push(name.clone(), value.as_str());
        }
    }
}

/// The decision for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Blocked: says which rule (or the default) decided, for the 403 page and the log.
    Block(String),
}

/// A parsed rules file.
#[derive(Debug, Clone)]
pub struct RuleSet {
    pub rules: Vec<Rule>,
    pub default: Action,
    /// The line of `default = …` (0 when absent).
    default_line: usize,
    pub rewrites: Vec<Rewrite>,
}

impl Default for RuleSet {
    fn default() -> Self {
        RuleSet {
            rules: Vec::new(),
            default: Action::Allow,
            default_line: 0,
            rewrites: Vec::new(),
        }
    }
}

/// A rules file that could not be read or parsed; `line` and `column` are 1-based (0 when
/// the problem is not at one place, such as a missing file).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", place(*line, *column))]
pub struct RulesError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

fn place(line: usize, column: usize) -> String {
    match (line, column) {
        (0, _) => String::new(),
        (l, 0) => format!("line {l}: "),
        (l, c) => format!("line {l}, column {c}: "),
    }
}

/// The two file formats; chosen by extension (`.toml`, anything else is a plain list).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Toml,
    List,
}

impl Format {
    pub fn of(path: &Path) -> Format {
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("toml"))
        {
            Format::Toml
        } else {
            Format::List
        }
    }
}

impl RuleSet {
    /// Reads and parses a rules file.
    pub fn load(path: &Path) -> Result<RuleSet, RulesError> {
        let text = std::fs::read_to_string(path).map_err(|e| RulesError {
            line: 0,
            column: 0,
            message: format!("cannot read {}: {e}", path.display()),
        })?;
        RuleSet::parse(&text, Format::of(path))
    }

    pub fn parse(text: &str, format: Format) -> Result<RuleSet, RulesError> {
        match format {
            Format::Toml => parse_toml(text),
            Format::List => parse_list(text),
        }
    }

    /// First matching rule wins; otherwise the default.
    pub fn check(&self, req: &Request<'_>) -> Verdict {
        for (i, rule) in self.rules.iter().enumerate() {
            if rule.matches(req) {
                return match rule.action {
                    Action::Allow => Verdict::Allow,
                    Action::Block => Verdict::Block(format!(
                        "rule {} (line {}: {})",
                        i + 1,
                        rule.line,
                        rule.text
                    )),
                };
            }
        }
        match self.default {
            Action::Allow => Verdict::Allow,
            Action::Block => Verdict::Block(format!(
                "the default (line {}: default = \"deny\"): no allow rule matched",
                self.default_line
            )),
        }
    }

    /// Applies the request (or response) header rewrites for `host`, in file order.
    pub fn rewrite(&self, on: Direction, host: &str, headers: &mut Headers) {
        for rewrite in self.rewrites.iter().filter(|r| r.on == on) {
            rewrite.apply(host, headers);
        }
    }

    pub fn has_rewrites(&self) -> bool {
        !self.rewrites.is_empty()
    }

    /// One line about what the file holds, for logs and `proxy rules check`.
    pub fn summary(&self) -> String {
        let blocks = self
            .rules
            .iter()
            .filter(|r| r.action == Action::Block)
            .count();
        format!(
            "{} rule(s) ({blocks} block, {} allow), default {}, {} header rewrite(s)",
            self.rules.len(),
            self.rules.len() - blocks,
            match self.default {
                Action::Allow => "allow",
                Action::Block => "deny",
            },
            self.rewrites.len()
        )
    }
}

/// Line and column (1-based) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

fn error_at(text: &str, span: Option<std::ops::Range<usize>>, message: String) -> RulesError {
    let (line, column) = span.map_or((0, 0), |s| line_col(text, s.start));
    RulesError {
        line,
        column,
        message,
    }
}

/// A URL prefix in the form rules compare: lower-case scheme and host, `:80` dropped.
fn normalise_url(prefix: &str) -> Result<String, String> {
    if !prefix
        .get(..7)
        .is_some_and(|s| s.eq_ignore_ascii_case("http://"))
    {
        return Err(format!(
            "{prefix:?} is not an http:// URL (CONNECT requests show only host and port: use \
             a host rule for HTTPS)"
        ));
    }
    let after = &prefix[7..];
    let (authority, path) = after.split_at(after.find('/').unwrap_or(after.len()));
    let authority = authority.to_ascii_lowercase();
    let authority = authority.strip_suffix(":80").unwrap_or(&authority);
    if authority.is_empty() {
        return Err(format!("{prefix:?} has no host"));
    }
    // The same normal form as request paths (RFC 3986 §6.2.2), so that `/%73ecret` in a
    // rule and `/secret` in a request (or the other way round) compare equal.
    let path = match path {
        "" => String::new(),
        path => crate::http::target::normalize_path(path),
    };
    Ok(format!("http://{authority}{path}"))
}

fn parse_toml(text: &str) -> Result<RuleSet, RulesError> {
    let doc = toml_edit::Document::parse(text)
        .map_err(|e| error_at(text, e.span(), e.message().trim().to_string()))?;
    let mut set = RuleSet::default();
    for (key, item) in doc.as_table().iter() {
        let span = item
            .span()
            .or_else(|| doc.as_table().key(key).and_then(|k| k.span()));
        let bad = |message: String| error_at(text, span.clone(), message);
        match key {
            "default" => {
                set.default_line = span.clone().map_or(0, |s| line_col(text, s.start).0);
                set.default = match item.as_str() {
                    Some("allow") => Action::Allow,
                    Some("deny") => Action::Block,
                    _ => return Err(bad("default must be \"allow\" or \"deny\"".into())),
                };
            }
            "rule" | "header" => {
                let Some(tables) = item.as_array_of_tables() else {
                    return Err(bad(format!(
                        "{key} must be written as [[{key}]] tables, one per {key}"
                    )));
                };
                for table in tables.iter() {
                    if key == "rule" {
                        set.rules.push(toml_rule(text, table)?);
                    } else {
                        set.rewrites.push(toml_rewrite(text, table)?);
                    }
                }
            }
            other => {
                let key_span = doc.as_table().key(other).and_then(|k| k.span());
                return Err(error_at(
                    text,
                    key_span.or(span),
                    format!("unknown key {other:?} (expected default, [[rule]] or [[header]])"),
                ));
            }
        }
    }
    Ok(set)
}

/// The string value of `key` in `table`, or an error pointing at it.
fn string_of(
    text: &str,
    table: &toml_edit::Table,
    key: &str,
) -> Result<Option<String>, RulesError> {
    match table.get(key) {
        None => Ok(None),
        Some(item) => item
            .as_str()
            .map(|s| Some(s.to_string()))
            .ok_or_else(|| error_at(text, item.span(), format!("{key} must be a string"))),
    }
}

/// An error at `key`'s value in `table` (or at the table, when the key is absent).
fn error_in(text: &str, table: &toml_edit::Table, key: &str, message: String) -> RulesError {
    error_at(
        text,
        table.get(key).and_then(|i| i.span()).or(table.span()),
        message,
    )
}

/// Fails on the first key of `table` that is not in `allowed`.
fn only_keys(
    text: &str,
    table: &toml_edit::Table,
    what: &str,
    allowed: &[&str],
) -> Result<(), RulesError> {
    match table.iter().find(|(key, _)| !allowed.contains(key)) {
        Some((key, _)) => Err(error_in(
            text,
            table,
            key,
            format!(
                "unknown key {key:?} in {what} (expected {})",
                allowed.join(", ")
            ),
        )),
        None => Ok(()),
    }
}

fn toml_rule(text: &str, table: &toml_edit::Table) -> Result<Rule, RulesError> {
    let line = table.span().map_or(0, |s| line_col(text, s.start).0);
    let at = |key: &str, message: String| error_in(text, table, key, message);
    only_keys(
        text,
        table,
        "a rule",
        &["action", "host", "url", "regex", "method", "port"],
    )?;
    let action = match string_of(text, table, "action")?.as_deref() {
        Some("block") => Action::Block,
        Some("allow") => Action::Allow,
        Some(other) => {
            return Err(at(
                "action",
                format!("unknown action {other:?} (use \"block\" or \"allow\")"),
            ))
        }
        None => {
            return Err(at(
                "",
                "a rule needs action = \"block\" or \"allow\"".into(),
            ))
        }
    };
    let mut parts = Vec::new();
    let host = match string_of(text, table, "host")? {
        Some(h) => {
            parts.push(format!("host = {h:?}"));
            Some(HostPattern::parse(&h).map_err(|e| at("host", e))?)
        }
        None => None,
    };
    let url = match string_of(text, table, "url")? {
        Some(u) => {
            parts.push(format!("url = {u:?}"));
            Some(normalise_url(&u).map_err(|e| at("url", e))?)
        }
        None => None,
    };
    let regex = match string_of(text, table, "regex")? {
        Some(r) => {
            parts.push(format!("regex = {r:?}"));
            Some(Regex::new(&r).map_err(|e| at("regex", format!("invalid regex: {e}")))?)
        }
        None => None,
    };
    let method = string_of(text, table, "method")?;
    if let Some(m) = &method {
        parts.push(format!("method = {m:?}"));
    }
    let port = match table.get("port") {
        Some(item) => {
            let port = item
                .as_integer()
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p > 0)
                .ok_or_else(|| at("port", "port must be a number from 1 to 65535".into()))?;
            parts.push(format!("port = {port}"));
            Some(port)
        }
        None => None,
    };
    if parts.is_empty() {
        return Err(at(
            "",
            "a rule needs at least one of host, url, regex, method, port".into(),
        ));
    }
    Ok(Rule {
        action,
        host,
        url,
        regex,
        method,
        port,
        line,
        text: parts.join(", "),
    })
}

fn toml_rewrite(text: &str, table: &toml_edit::Table) -> Result<Rewrite, RulesError> {
    let at = |key: &str, message: String| error_in(text, table, key, message);
    only_keys(
        text,
        table,
        "a header rewrite",
        &["on", "hosts", "remove", "set", "add"],
    )?;
    let on = match string_of(text, table, "on")?.as_deref() {
        Some("request") => Direction::Request,
        Some("response") => Direction::Response,
        _ => {
            return Err(at(
                "on",
                "a header rewrite needs on = \"request\" or \"response\"".into(),
            ))
        }
    };
    let strings = |key: &str| -> Result<Vec<String>, RulesError> {
        match table.get(key) {
            None => Ok(Vec::new()),
            Some(item) => item
                .as_array()
                .and_then(|a| {
                    a.iter()
                        .map(|v| v.as_str().map(str::to_string))
                        .collect::<Option<Vec<_>>>()
                })
                .ok_or_else(|| at(key, format!("{key} must be a list of strings"))),
        }
    };
    let pairs = |key: &str| -> Result<Vec<(String, String)>, RulesError> {
        match table.get(key) {
            None => Ok(Vec::new()),
            Some(item) => {
                let Some(t) = item.as_table_like() else {
                    return Err(at(
                        key,
                        format!("{key} must be a table of header = \"value\""),
                    ));
                };
                t.iter()
                    .map(|(name, v)| {
                        let value = v.as_str().ok_or_else(|| {
                            at(key, format!("the value of {name} must be a string"))
                        })?;
                        check_header(name, value).map_err(|e| at(key, e))?;
                        Ok((name.to_string(), value.to_string()))
                    })
                    .collect()
            }
        }
    };
    let hosts = strings("hosts")?
        .iter()
        .map(|h| HostPattern::parse(h).map_err(|e| at("hosts", e)))
        .collect::<Result<Vec<_>, _>>()?;
    let remove = strings("remove")?;
    for name in &remove {
        check_header(name, "").map_err(|e| at("remove", e))?;
    }
    Ok(Rewrite {
        on,
        hosts,
        remove,
        set: pairs("set")?,
        add: pairs("add")?,
    })
}

/// A header name must be a token and a value must not break the message (no CR, LF, NUL).
fn check_header(name: &str, value: &str) -> Result<(), String> {
    let tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(tchar) {
        return Err(format!("{name:?} is not a valid header name"));
    }
    if value.contains(['\r', '\n', '\0']) {
        return Err(format!("the value for {name} contains a line break"));
    }
    Ok(())
}

/// What a line of the plain list (or a `proxy block` argument) means.
fn list_rule(pattern: &str, line: usize) -> Result<Rule, String> {
    let pattern = pattern.trim();
    let mut rule = Rule {
        action: Action::Block,
        host: None,
        url: None,
        regex: None,
        method: None,
        port: None,
        line,
        text: String::new(),
    };
    if pattern.len() >= 7 && pattern[..7].eq_ignore_ascii_case("http://") {
        let url = normalise_url(pattern)?;
        let after = &url[7..];
        let host_only = match after.find('/') {
            None => Some(after),
            Some(i) if i + 1 == after.len() => Some(&after[..i]),
            Some(_) => None,
        };
        // `http://host` or `http://host/`: the whole host, HTTPS included — unless it names
        // a port, which only a URL rule honours.
        match host_only.filter(|h| !h.contains(':')) {
            Some(host) => rule.host = Some(HostPattern::parse(host)?),
            None => rule.url = Some(url.clone()),
        }
        rule.text = pattern.to_string();
    } else {
        rule.host = Some(HostPattern::parse(pattern)?);
        rule.text = pattern.to_string();
    }
    Ok(rule)
}

fn parse_list(text: &str) -> Result<RuleSet, RulesError> {
    let mut set = RuleSet::default();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let rule = list_rule(line, i + 1).map_err(|message| RulesError {
            line: i + 1,
            column: raw.len() - raw.trim_start().len() + 1,
            message,
        })?;
        set.rules.push(rule);
    }
    Ok(set)
}

/// The rules a running proxy uses: swapped whole when the file changes (a reader never
/// sees half of an old set and half of a new one), kept when the new file is broken.
#[derive(Debug)]
pub struct Rules {
    path: Option<PathBuf>,
    current: RwLock<Arc<RuleSet>>,
    /// Keeps the file watcher alive as long as the rules.
    watcher: std::sync::Mutex<Option<notify::RecommendedWatcher>>,
}

impl Rules {
    /// No rules: everything allowed, nothing rewritten.
    pub fn none() -> Rules {
        Rules {
            path: None,
            current: RwLock::new(Arc::new(RuleSet::default())),
            watcher: std::sync::Mutex::new(None),
        }
    }

    /// Loads `path`; a file that cannot be read or parsed is an error at start.
    pub fn load(path: &Path) -> Result<Rules, RulesError> {
        let set = RuleSet::load(path)?;
        Ok(Rules {
            path: Some(path.to_path_buf()),
            current: RwLock::new(Arc::new(set)),
            watcher: std::sync::Mutex::new(None),
        })
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The rule set in force now.
    pub fn current(&self) -> Arc<RuleSet> {
        match self.current.read() {
            Ok(set) => Arc::clone(&set),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Reads the file again. On success the new set replaces the old one at once; on
    /// failure the old one stays and the error (with line and column) is logged.
    pub fn reload(&self) -> Result<(), RulesError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        match RuleSet::load(path) {
            Ok(set) => {
                tracing::info!("rules: reloaded {}: {}", path.display(), set.summary());
                let set = Arc::new(set);
                match self.current.write() {
                    Ok(mut current) => *current = set,
                    Err(poisoned) => *poisoned.into_inner() = set,
                }
                Ok(())
            }
            Err(e) => {
                tracing::error!("rules: {}: {e}; keeping the previous rules", path.display());
                Err(e)
            }
        }
    }

    /// Watches the file (through its directory, so an editor's or `proxy block`'s
    /// write-and-rename is seen) and reloads on every change.
    pub fn watch(self: &Arc<Self>) -> Result<(), notify::Error> {
        use notify::Watcher as _;
        let Some(path) = self.path.clone() else {
            return Ok(());
        };
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = path.file_name().map(|n| n.to_os_string());
        let rules: Weak<Rules> = Arc::downgrade(self);
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let Ok(event) = event else { return };
                if event.kind.is_access() {
                    return;
                }
                let ours = event
                    .paths
                    .iter()
                    .any(|p| p.file_name().map(|n| n.to_os_string()) == name);
                if let (true, Some(rules)) = (ours, rules.upgrade()) {
                    let _ = rules.reload();
                }
            })?;
        watcher.watch(&dir, notify::RecursiveMode::NonRecursive)?;
        if let Ok(mut slot) = self.watcher.lock() {
            *slot = Some(watcher);
        }
        Ok(())
    }
}

/// `proxy block PATTERN`: adds a block rule to the file (created if missing). Returns what
/// was done, for the command's output.
pub fn block(path: &Path, pattern: &str) -> Result<String, RulesError> {
    let rule = list_rule(pattern, 0).map_err(|message| RulesError {
        line: 0,
        column: 0,
        message,
    })?;
    let text = read_or_empty(path)?;
    // The file must be valid before we add to it (and stay valid after).
    let existing = RuleSet::parse(&text, Format::of(path))?;
    if existing
        .rules
        .iter()
        .any(|r| r.action == Action::Block && same_target(r, &rule))
    {
        return Ok(format!(
            "{pattern} is already blocked in {}",
            path.display()
        ));
    }
    let new_text = match Format::of(path) {
        Format::List => {
            let mut t = text.clone();
            if !t.is_empty() && !t.ends_with('\n') {
                t.push('\n');
            }
            t.push_str(pattern.trim());
            t.push('\n');
            t
        }
        Format::Toml => {
            let mut doc: toml_edit::DocumentMut = text
                .parse()
                .map_err(|e: toml_edit::TomlError| error_at(&text, e.span(), e.to_string()))?;
            let mut table = toml_edit::Table::new();
            table.insert("action", toml_edit::value("block"));
            match (&rule.host, &rule.url) {
                (Some(host), _) => table.insert("host", toml_edit::value(host.to_string())),
                (None, Some(url)) => table.insert("url", toml_edit::value(url.as_str())),
                (None, None) => None,
            };
            let rules = doc
                .entry("rule")
                .or_insert(toml_edit::Item::ArrayOfTables(Default::default()));
            let Some(rules) = rules.as_array_of_tables_mut() else {
                return Err(RulesError {
                    line: 0,
                    column: 0,
                    message: "rule is not an array of [[rule]] tables".into(),
                });
            };
            rules.push(table);
            doc.to_string()
        }
    };
    RuleSet::parse(&new_text, Format::of(path))?;
    write_atomically(path, &new_text)?;
    Ok(format!("blocked {pattern} in {}", path.display()))
}

/// `proxy unblock PATTERN`: removes every block rule for exactly that host or URL.
pub fn unblock(path: &Path, pattern: &str) -> Result<String, RulesError> {
    let wanted = list_rule(pattern, 0).map_err(|message| RulesError {
        line: 0,
        column: 0,
        message,
    })?;
    let text = read_or_empty(path)?;
    let format = Format::of(path);
    let set = RuleSet::parse(&text, format)?;
    let doomed: Vec<usize> = set
        .rules
        .iter()
        .filter(|r| r.action == Action::Block && same_target(r, &wanted))
        .map(|r| r.line)
        .collect();
    if doomed.is_empty() {
        return Err(RulesError {
            line: 0,
            column: 0,
            message: format!("no block rule for {pattern} in {}", path.display()),
        });
    }
    let new_text = match format {
        Format::List => text
            .split_inclusive('\n')
            .enumerate()
            .filter(|(i, _)| !doomed.contains(&(i + 1)))
            .map(|(_, l)| l)
            .collect::<String>(),
        Format::Toml => {
            let mut doc: toml_edit::DocumentMut = text
                .parse()
                .map_err(|e: toml_edit::TomlError| error_at(&text, e.span(), e.to_string()))?;
            if let Some(rules) = doc.get_mut("rule").and_then(|r| r.as_array_of_tables_mut()) {
                rules.retain(|t| {
                    let as_rule = toml_rule(&t.to_string(), t);
                    !as_rule.is_ok_and(|r| r.action == Action::Block && same_target(&r, &wanted))
                });
            }
            doc.to_string()
        }
    };
    RuleSet::parse(&new_text, format)?;
    write_atomically(path, &new_text)?;
    Ok(format!(
        "unblocked {pattern} in {} ({} rule(s) removed)",
        path.display(),
        doomed.len()
    ))
}

/// Whether a rule blocks exactly what `wanted` (a single host or URL rule) names.
fn same_target(rule: &Rule, wanted: &Rule) -> bool {
    rule.regex.is_none()
        && rule.method.is_none()
        && rule.port.is_none()
        && rule.host == wanted.host
        && rule.url == wanted.url
}

fn read_or_empty(path: &Path) -> Result<String, RulesError> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(RulesError {
            line: 0,
            column: 0,
            message: format!("cannot read {}: {e}", path.display()),
        }),
    }
}

/// Writes a temporary file beside `path`, then renames it over `path`: a running proxy
/// reads either the old file or the new one, never half of one.
fn write_atomically(path: &Path, text: &str) -> Result<(), RulesError> {
    let fail = |e: std::io::Error| RulesError {
        line: 0,
        column: 0,
        message: format!("cannot write {}: {e}", path.display()),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "rules".into());
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, text).map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        fail(e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn request<'a>(method: &'a str, host: &'a str, port: u16, url: &'a str) -> Request<'a> {
        Request {
            method,
            host,
            port,
            url,
        }
    }

    #[test]
    fn wildcards_match_the_domain_and_below_but_not_lookalikes() {
        let p = HostPattern::parse("*.Example.COM").unwrap();
        assert!(p.matches("example.com"));
        assert!(p.matches("a.b.example.com"));
        assert!(!p.matches("badexample.com"));
        assert!(!p.matches("example.com.evil"));
        let exact = HostPattern::parse("example.com").unwrap();
        assert!(exact.matches("example.com") && exact.matches("example.com."));
        assert!(!exact.matches("www.example.com"));
        assert!(HostPattern::parse("http://x/").is_err());
        assert!(HostPattern::parse("").is_err());
    }

    #[test]
    fn first_match_wins_and_the_default_decides_the_rest() {
        let set = RuleSet::parse(
            r#"
default = "deny"

[[rule]]
action = "block"
host = "bad.example"

[[rule]]
action = "allow"
host = "*.example"

[[rule]]
action = "allow"
url = "http://OTHER.test:80/public/"
method = "GET"
"#,
            Format::Toml,
        )
        .unwrap();
        let url = url("bad.example", 80, "/");
        let Verdict::Block(why) = set.check(&request("GET", "bad.example", 80, &url)) else {
            panic!("bad.example must be blocked");
        };
        assert_eq!(why, "rule 1 (line 4: host = \"bad.example\")");
        let url = super::url("good.example", 80, "/");
        assert_eq!(
            set.check(&request("GET", "good.example", 80, &url)),
            Verdict::Allow
        );
        let url = super::url("other.test", 80, "/public/a");
        assert_eq!(
            set.check(&request("GET", "other.test", 80, &url)),
            Verdict::Allow
        );
        let Verdict::Block(why) = set.check(&request("POST", "other.test", 80, &url)) else {
            panic!("POST is not allowed by the GET rule");
        };
        assert!(why.starts_with("the default (line 2"), "{why}");
    }

    #[test]
    fn errors_say_where() {
        let cases = [
            (
                "[[rule]]\naction = \"blok\"\nhost = \"x\"\n",
                2,
                "unknown action",
            ),
            ("[[rule]]\naction = \"block\"\n", 1, "at least one of"),
            (
                "[[rule]]\naction = \"block\"\nregex = \"(\"\n",
                3,
                "invalid regex",
            ),
            (
                "[[rule]]\naction = \"block\"\nport = 70000\n",
                3,
                "port must be",
            ),
            (
                "[[rule]]\naction = \"block\"\nhosts = \"x\"\n",
                3,
                "unknown key",
            ),
            ("default = \"maybe\"\n", 1, "default must be"),
            ("[[rule]\n", 1, ""),
            (
                "[[header]]\non = \"request\"\nset = { \"X-A\" = \"a\\nb\" }\n",
                3,
                "line break",
            ),
        ];
        for (text, line, message) in cases {
            let err = RuleSet::parse(text, Format::Toml).unwrap_err();
            assert_eq!(err.line, line, "{text:?}: {err}");
            assert!(err.column > 0, "{text:?}: {err}");
            assert!(err.message.contains(message), "{text:?}: {err}");
        }
        let err = RuleSet::parse("ok.example\n\nhttp:/broken\n", Format::List).unwrap_err();
        assert_eq!((err.line, err.column), (3, 1), "{err}");
    }

    #[test]
    fn the_plain_list_reads_hosts_wildcards_and_urls() {
        let set = RuleSet::parse(
            "# blocked\nads.example\n*.tracker.example  # and below\nhttp://seed.example/\nhttp://site.example/private/\n",
            Format::List,
        )
        .unwrap();
        assert_eq!(set.rules.len(), 4);
        let blocked = |method: &str, host: &str, port: u16, path: Option<&str>| {
            let url = match path {
                Some(p) => url(host, port, p),
                None => format!("{host}:{port}"),
            };
            matches!(
                set.check(&request(method, host, port, &url)),
                Verdict::Block(_)
            )
        };
        assert!(blocked("GET", "ads.example", 80, Some("/")));
        assert!(blocked("CONNECT", "x.tracker.example", 443, None));
        // `http://host/` alone blocks the host, HTTPS included.
        assert!(blocked("CONNECT", "seed.example", 443, None));
        assert!(blocked("GET", "site.example", 80, Some("/private/x")));
        assert!(!blocked("GET", "site.example", 80, Some("/public")));
        assert!(!blocked("GET", "notads.example", 80, Some("/")));
    }

    #[test]
    fn rewrites_apply_in_order_and_only_to_their_hosts() {
        let set = RuleSet::parse(
            r#"
[[header]]
on = "request"
hosts = ["*.example"]
remove = ["Cookie"]
set = { "User-Agent" = "proxylab" }
add = { "X-Added" = "1" }

[[header]]
on = "response"
set = { "X-Served-By" = "proxylab" }
"#,
            Format::Toml,
        )
        .unwrap();
        let mut headers = Headers::default();
        headers.push("Cookie", "a=1");
        headers.push("User-Agent", "curl");
        set.rewrite(Direction::Request, "www.example", &mut headers);
        assert_eq!(headers.get("cookie"), None);
        assert_eq!(headers.get("user-agent"), Some(&b"proxylab"[..]));
        assert_eq!(headers.get("x-added"), Some(&b"1"[..]));
        let mut other = Headers::default();
        other.push("Cookie", "a=1");
        set.rewrite(Direction::Request, "other.test", &mut other);
        assert_eq!(other.get("cookie"), Some(&b"a=1"[..]));
        let mut response = Headers::default();
        set.rewrite(Direction::Response, "other.test", &mut response);
        assert_eq!(response.get("x-served-by"), Some(&b"proxylab"[..]));
    }

    /// A rule as the reference model sees it.
    #[derive(Debug, Clone)]
    struct Spec {
        allow: bool,
        host: Option<(bool, String)>,
        url: Option<String>,
        method: Option<&'static str>,
        port: Option<u16>,
    }

    fn labels() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop::sample::select(vec!["a", "b", "ads", "xads", "example"]),
            1..4,
        )
        .prop_map(|l| l.join("."))
    }

    fn spec() -> impl Strategy<Value = Spec> {
        (
            any::<bool>(),
            prop::option::of((any::<bool>(), labels())),
            prop::option::of((labels(), prop::sample::select(vec!["/", "/p", "/p/q"]))),
            prop::option::of(prop::sample::select(vec!["GET", "POST"])),
            prop::option::of(prop::sample::select(vec![80u16, 8080])),
        )
            .prop_filter("a rule needs a condition", |(_, h, u, m, p)| {
                h.is_some() || u.is_some() || m.is_some() || p.is_some()
            })
            .prop_map(|(allow, host, url, method, port)| Spec {
                allow,
                host,
                url: url.map(|(h, p)| format!("http://{h}{p}")),
                method,
                port,
            })
    }

    /// The reference: label-wise domain comparison, plain string prefix, first match wins.
    fn model(specs: &[Spec], deny: bool, method: &str, host: &str, port: u16, url: &str) -> bool {
        let host_labels: Vec<&str> = host.split('.').collect();
        for s in specs {
            let host_ok = s.host.as_ref().is_none_or(|(wild, h)| {
                let want: Vec<&str> = h.split('.').collect();
                if *wild {
                    host_labels.ends_with(&want)
                } else {
                    host_labels == want
                }
            });
            let url_ok = s.url.as_ref().is_none_or(|u| url.starts_with(u.as_str()));
            let method_ok = s.method.is_none_or(|m| m == method);
            let port_ok = s.port.is_none_or(|p| p == port);
            if host_ok && url_ok && method_ok && port_ok {
                return s.allow;
            }
        }
        !deny
    }

    fn toml_of(specs: &[Spec], deny: bool) -> String {
        let mut t = format!("default = \"{}\"\n", if deny { "deny" } else { "allow" });
        for s in specs {
            t.push_str("\n[[rule]]\n");
            t.push_str(&format!(
                "action = \"{}\"\n",
                if s.allow { "allow" } else { "block" }
            ));
            if let Some((wild, h)) = &s.host {
                t.push_str(&format!(
                    "host = \"{}{h}\"\n",
                    if *wild { "*." } else { "" }
                ));
            }
            if let Some(u) = &s.url {
                t.push_str(&format!("url = \"{u}\"\n"));
            }
            if let Some(m) = s.method {
                t.push_str(&format!("method = \"{m}\"\n"));
            }
            if let Some(p) = s.port {
                t.push_str(&format!("port = {p}\n"));
            }
        }
        t
    }

    proptest! {
        #[test]
        fn matching_agrees_with_the_reference_model(
            specs in prop::collection::vec(spec(), 0..8),
            deny in any::<bool>(),
            requests in prop::collection::vec(
                (
                    prop::sample::select(vec!["GET", "POST"]),
                    labels(),
                    prop::sample::select(vec![80u16, 8080]),
                    prop::sample::select(vec!["/", "/p", "/p/q/r", "/x"]),
                ),
                1..16,
            ),
        ) {
            let set = RuleSet::parse(&toml_of(&specs, deny), Format::Toml).unwrap();
            for (method, host, port, path) in requests {
                let url = url(&host, port, path);
                let ours = set.check(&request(method, &host, port, &url)) == Verdict::Allow;
                prop_assert_eq!(
                    ours,
                    model(&specs, deny, method, &host, port, &url),
                    "{} {} (port {})", method, url, port
                );
            }
        }
    }
}
