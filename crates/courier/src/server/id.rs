//! Connection ids.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The public id of one connection (`Context.ConnectionId` in ASP.NET Core): 22 characters of base64url, visible
/// to other clients. It is not a secret (the transport layer's connection token is).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(Arc<str>);

impl ConnectionId {
    /// A fresh id: 16 bytes from SipHash under a per-process random key over a counter, so ids are unique within the
    /// process and not guessable from one another.
    pub(crate) fn generate() -> Self {
        Self(unique_id().into())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for ConnectionId {
    fn from(id: &str) -> Self {
        Self(id.into())
    }
}

impl From<String> for ConnectionId {
    fn from(id: String) -> Self {
        Self(id.into())
    }
}

/// 22 characters of base64url from 16 bytes of SipHash under a per-process random key over a counter: unique
/// within the process, and across processes as random 128-bit values are.
pub(crate) fn unique_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    thread_local! { static KEYS: RandomState = RandomState::new(); }
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut bytes = [0u8; 16];
    KEYS.with(|keys| {
        for (half, chunk) in bytes.chunks_mut(8).enumerate() {
            let mut hasher = keys.build_hasher();
            hasher.write_u64(n);
            hasher.write_usize(half);
            chunk.copy_from_slice(&hasher.finish().to_le_bytes());
        }
    });
    base64url(&bytes)
}

/// Base64url without padding.
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_22_url_safe_characters_and_distinct() {
        let a = ConnectionId::generate();
        let b = ConnectionId::generate();
        assert_eq!(a.as_str().len(), 22);
        assert!(
            a.as_str()
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
        assert_ne!(a, b);
        assert_eq!(base64url(b"\xfb\xff"), "-_8");
    }
}
