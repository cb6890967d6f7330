//! HTTP/1.x on the wire and the stages that speak it.
//!
//! - [`wire`]: message heads and bodies on a byte stream (shared with origin-sim and labs).
//! - [`target`]: what the request-target names (absolute-form, origin-form, authority-form).
//! - [`forward`]: the header rules a proxy must follow (RFC 9110 §7.6).
//! - [`range`]: what a `Range` header asks for (RFC 9110 §14).
//! - [`upstream`]: name resolution, dialing and the keep-alive pool.
//! - [`reverse`]: reverse mode's upstream choice, and passive health (also the parents').
//! - [`parent`]: parent proxies (`--parent`), one per object by rendezvous hashing.
//! - [`relay`]: the request body up and the response down, re-framed.
//! - [`tunnel`]: CONNECT tunnels, bytes both ways with half-close.
//! - [`splice`]: socket-to-socket moves without a copy through the process (Linux).
//! - [`own`]: the responses the proxy makes itself (status page, OPTIONS, TRACE).
//! - [`fuzzing`]: the fuzz targets' bodies (`make fuzz`), replayed by `make test`.

pub mod forward;
#[doc(hidden)]
pub mod fuzzing;
pub mod own;
pub mod parent;
pub mod range;
pub mod relay;
pub mod reverse;
#[cfg(target_os = "linux")]
pub mod splice;
pub mod target;
pub mod tunnel;
pub mod upstream;
pub mod wire;
