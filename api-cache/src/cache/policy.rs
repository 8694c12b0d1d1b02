//! What may be stored, and for how long.

use std::time::Duration;

/// The storage rules in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// `CACHE_TTL_SECONDS`; zero stores nothing.
    pub ttl: Duration,
    /// `CACHE_MAX_BODY_BYTES`; larger bodies are passed through, not stored.
    pub max_body_bytes: usize,
}

/// Why a response was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotStored {
    Status,
    TooLarge,
    TtlZero,
}

impl Policy {
    /// How long to keep a response with this status and body size, if at all.
    pub fn ttl_for(&self, status: u16, body_len: usize) -> Result<Duration, NotStored> {
        if status != 200 {
            Err(NotStored::Status)
        } else if body_len > self.max_body_bytes {
            Err(NotStored::TooLarge)
        } else if self.ttl.is_zero() {
            Err(NotStored::TtlZero)
        } else {
            Ok(self.ttl)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: Policy = Policy {
        ttl: Duration::from_secs(30),
        max_body_bytes: 100,
    };

    #[test]
    fn only_a_200_within_the_size_limit_is_stored() {
        assert_eq!(POLICY.ttl_for(200, 100), Ok(Duration::from_secs(30)));
        assert_eq!(POLICY.ttl_for(200, 101), Err(NotStored::TooLarge));
        assert_eq!(POLICY.ttl_for(404, 10), Err(NotStored::Status));
        assert_eq!(POLICY.ttl_for(503, 10), Err(NotStored::Status));
        let off = Policy {
            ttl: Duration::ZERO,
            ..POLICY
        };
        assert_eq!(off.ttl_for(200, 10), Err(NotStored::TtlZero));
    }
}
