//! Basic proxy authentication (RFC 9110 §11.7): `Proxy-Authorization: Basic …` checked
//! against a file of `user:bcrypt-hash` lines.
//!
//! Takes: the request's `Proxy-Authorization` value. Returns: the user name, or why not
//! (answered 407 with `Proxy-Authenticate`). Passwords are never logged; bcrypt runs on a
//! blocking thread (it is slow on purpose), and a credential that was right once is
//! remembered so a keep-alive client does not pay for it on every request.

use base64::Engine as _;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// The realm the proxy names in `Proxy-Authenticate`.
pub const REALM: &str = "proxylab";

/// Users and their password hashes.
#[derive(Debug)]
pub struct Auth {
    users: HashMap<String, String>,
    /// `Proxy-Authorization` values already verified (bounded by the number of users'
    /// right passwords, since only successes are kept).
    verified: Mutex<HashSet<String>>,
}

impl Auth {
    /// Reads `user:hash` lines; `#` comments and blank lines are skipped. A line that is
    /// not `user:$2…` bcrypt is an error naming its line.
    pub fn load(path: &Path) -> Result<Auth, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Auth::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Auth, String> {
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match line.split_once(':') {
                Some((user, hash)) if !user.is_empty() && hash.starts_with("$2") => {
                    users.insert(user.to_string(), hash.to_string());
                }
                _ => {
                    return Err(format!(
                        "line {}: expected user:bcrypt-hash (make one with `proxy hash-password USER` or `htpasswd -nB USER`)",
                        i + 1
                    ))
                }
            }
        }
        Ok(Auth {
            users,
            verified: Mutex::new(HashSet::new()),
        })
    }

    /// Checks a `Proxy-Authorization` value; returns the user name. The error says what
    /// was wrong without repeating the password.
    pub async fn check(self: &Arc<Self>, header: Option<&[u8]>) -> Result<String, String> {
        let Some(value) = header else {
            return Err("this proxy requires authentication".into());
        };
        let value = std::str::from_utf8(value)
            .map_err(|_| "the Proxy-Authorization header is not text".to_string())?
            .trim();
        let (scheme, encoded) = value.split_once(' ').unwrap_or((value, ""));
        if !scheme.eq_ignore_ascii_case("basic") {
            return Err(format!(
                "the {scheme:?} authentication scheme is not supported (use Basic)"
            ));
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()
            .and_then(|d| String::from_utf8(d).ok())
            .ok_or_else(|| "the Basic credentials are not valid base64 text".to_string())?;
        let Some((user, password)) = decoded.split_once(':') else {
            return Err("the Basic credentials have no user:password".into());
        };
        let user = user.to_string();
        let known = self
            .verified
            .lock()
            .map(|v| v.contains(value))
            .unwrap_or(false);
        if known {
            return Ok(user);
        }
        let Some(hash) = self.users.get(&user).cloned() else {
            return Err(format!("unknown user {user:?}"));
        };
        let password = password.to_string();
        let ok = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(false);
        if !ok {
            return Err(format!("wrong password for user {user:?}"));
        }
        if let Ok(mut v) = self.verified.lock() {
            v.insert(value.to_string());
        }
        Ok(user)
    }
}

/// A `user:hash` line for `password` (bcrypt, cost 10).
pub fn hash_line(user: &str, password: &str) -> Result<String, String> {
    if user.is_empty() || user.contains(':') {
        return Err("a user name must be non-empty and contain no ':'".into());
    }
    bcrypt::hash(password, 10)
        .map(|h| format!("{user}:{h}"))
        .map_err(|e| format!("hashing failed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user_pass: &str) -> Vec<u8> {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(user_pass)
        )
        .into_bytes()
    }

    #[tokio::test]
    async fn right_wrong_and_malformed_credentials() {
        let line = hash_line("ann", "s3cret").unwrap();
        let auth = Arc::new(Auth::parse(&format!("# users\n{line}\n")).unwrap());
        assert_eq!(auth.check(Some(&basic("ann:s3cret"))).await.unwrap(), "ann");
        // Remembered: the same header again is accepted without bcrypt.
        assert_eq!(auth.check(Some(&basic("ann:s3cret"))).await.unwrap(), "ann");
        let wrong = auth.check(Some(&basic("ann:guess"))).await.unwrap_err();
        assert!(
            wrong.contains("wrong password") && !wrong.contains("guess"),
            "{wrong}"
        );
        assert!(auth.check(Some(&basic("bob:x"))).await.is_err());
        assert!(auth.check(None).await.is_err());
        assert!(auth.check(Some(b"Basic !!!notbase64")).await.is_err());
        assert!(auth.check(Some(&basic("no-colon"))).await.is_err());
        assert!(auth.check(Some(b"Digest abc")).await.is_err());
        assert!(auth.check(Some(&[0xff, 0xfe])).await.is_err());
    }

    #[test]
    fn a_bad_line_is_named() {
        let err = Auth::parse("ann:$2b$10$abc\nbob:plaintext\n").unwrap_err();
        assert!(err.starts_with("line 2:"), "{err}");
    }
}
