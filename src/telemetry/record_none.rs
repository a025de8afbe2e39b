//! Without the `metrics` feature: the same functions, recording nothing.

use std::time::Duration;

use super::Introspected;

/// One (`outcome`, `reason`) pair of `tokenguard_requests_total`.
pub(crate) struct Decision {
    outcome: &'static str,
    reason: &'static str,
}

impl Decision {
    #[doc(hidden)]
    pub(crate) const fn new(outcome: &'static str, reason: &'static str) -> Self {
        Self { outcome, reason }
    }

    /// The `outcome` label.
    pub(crate) fn outcome(&self) -> &'static str {
        self.outcome
    }

    /// The `reason` label.
    pub(crate) fn reason(&self) -> &'static str {
        self.reason
    }
}

impl std::fmt::Debug for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.outcome, self.reason)
    }
}

/// Declares one static [`Decision`] per pair, and `ALL` for the tests.
macro_rules! decisions {
    ($($(#[$doc:meta])* $name:ident: $outcome:literal, $reason:literal;)*) => {
        $(
            $(#[$doc])*
            pub(crate) static $name: Decision = Decision::new($outcome, $reason);
        )*
        /// Every pair.
        #[cfg(test)]
        pub(crate) static ALL: &[&Decision] = &[$(&$name),*];
    };
}

/// Records nothing.
#[inline(always)]
pub(crate) fn request(_: &Decision) {}

/// Records nothing.
#[inline(always)]
pub(crate) fn token_cache(_hit: bool) {}

/// Records nothing.
#[inline(always)]
pub(crate) fn introspection_cache(_hit: bool) {}

/// Records nothing.
#[inline(always)]
pub(crate) fn shared_introspection_cache(_hit: bool) {}

/// Records nothing.
#[inline(always)]
pub(crate) fn key_fetch(_ok: bool, _took: Duration) {}

/// Records nothing.
#[inline(always)]
pub(crate) fn introspection(_result: Introspected, _took: Duration) {}

/// Records nothing.
#[inline(always)]
pub(crate) fn dpop_replay() {}

#[cfg(feature = "redis")]
#[inline(always)]
pub(crate) fn redis_call(_result: super::RedisCall) {}

/// Records nothing.
#[inline(always)]
pub(crate) fn dpop_nonce_challenge() {}

/// Describes nothing.
#[inline(always)]
pub(crate) fn describe() {}
