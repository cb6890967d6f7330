//! Who may use the proxy and for what: the admission stage.
//!
//! - [`admit_client`]: `--allow-clients`, checked once per request before anything else.
//! - [`admit`]: proxy authentication ([`auth`]), then the filtering rules ([`rules`]);
//!   returns the header rewrites the request's rule set holds ([`Rewrites`]).

pub mod auth;
pub mod rules;

use crate::error::ProxyError;
use crate::http::wire::{Headers, RequestHead};
use crate::request::RequestContext;
use auth::Auth;
use rules::{Direction, RuleSet, Rules, Verdict};
use std::net::SocketAddr;
use std::sync::Arc;

/// `--allow-clients`: whether `peer` may use the proxy (403 if not).
pub fn admit_client(networks: &[ipnet::IpNet], peer: SocketAddr) -> Result<(), ProxyError> {
    let ip = peer.ip().to_canonical();
    if networks.iter().any(|n| n.contains(&ip)) {
        Ok(())
    } else {
        Err(ProxyError::Forbidden(format!(
            "{ip} is not allowed to use this proxy (see --allow-clients)"
        )))
    }
}

/// The header rewrites that apply to one request: the rule set it was admitted by (so the
/// whole request sees one set, whatever a reload does meanwhile) and the host they match.
#[derive(Debug)]
pub struct Rewrites {
    rules: Arc<RuleSet>,
    host: String,
}

impl Rewrites {
    pub fn apply(&self, on: Direction, headers: &mut Headers) {
        self.rules.rewrite(on, &self.host, headers);
    }
}

/// Access control for a request to `host:port` (the name the client asked for, never a
/// resolved address): proxy authentication, then the filtering rules. `path` is `None`
/// for CONNECT. Returns the header rewrites for the request, when the rules have any.
pub async fn admit(
    auth: Option<&Arc<Auth>>,
    rules: &Rules,
    head: &RequestHead,
    host: &str,
    port: u16,
    path: Option<&str>,
    ctx: &mut RequestContext,
) -> Result<Option<Rewrites>, ProxyError> {
    if let Some(auth) = auth {
        match auth.check(head.headers.get("proxy-authorization")).await {
            Ok(user) => ctx.user = Some(user),
            Err(why) => return Err(ProxyError::AuthRequired(why)),
        }
    }
    let Some(file) = rules.path() else {
        return Ok(None);
    };
    let set = rules.current();
    let url = match path {
        Some(path) => rules::url(host, port, path),
        None if host.contains(':') => format!("[{host}]:{port}"),
        None => format!("{host}:{port}"),
    };
    let request = rules::Request {
        method: &head.method,
        host,
        port,
        url: &url,
    };
    if let Verdict::Block(why) = set.check(&request) {
        let file = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let why = format!("{file} {why}");
        ctx.blocked_by = Some(why.clone());
        return Err(ProxyError::Blocked(why));
    }
    Ok(set.has_rewrites().then(|| Rewrites {
        rules: set,
        host: host.to_string(),
    }))
}
