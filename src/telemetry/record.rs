//! Recording through the `metrics` facade: whatever recorder the application
//! installed (none: every call is a no-op).

use std::time::Duration;

use metrics::{Key, Level, Metadata, counter, histogram};

use super::Introspected;
#[cfg(feature = "redis")]
use super::RedisCall;

/// The name of the request counter, for the keys made by `decisions!`.
pub(crate) const REQUESTS: &str = "tokenguard_requests_total";

/// One (`outcome`, `reason`) pair of `tokenguard_requests_total`, with its
/// series key.
pub(crate) struct Decision {
    outcome: &'static str,
    reason: &'static str,
    key: Key,
}

impl Decision {
    #[doc(hidden)]
    pub(crate) const fn new(outcome: &'static str, reason: &'static str, key: Key) -> Self {
        Self {
            outcome,
            reason,
            key,
        }
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

/// Declares one static [`Decision`] per pair, each with its key built at
/// compile time (labels included), and `ALL` for the tests.
macro_rules! decisions {
    ($($(#[$doc:meta])* $name:ident: $outcome:literal, $reason:literal;)*) => {
        $(
            $(#[$doc])*
            pub(crate) static $name: Decision = {
                static LABELS: [::metrics::Label; 2] = [
                    ::metrics::Label::from_static_parts("outcome", $outcome),
                    ::metrics::Label::from_static_parts("reason", $reason),
                ];
                Decision::new(
                    $outcome,
                    $reason,
                    ::metrics::Key::from_static_parts($crate::telemetry::record::REQUESTS, &LABELS),
                )
            };
        )*
        /// Every pair.
        #[cfg(test)]
        pub(crate) static ALL: &[&Decision] = &[$(&$name),*];
    };
}

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// Counts one request (`tokenguard_requests_total`).
pub(crate) fn request(decision: &Decision) {
    metrics::with_recorder(|r| r.register_counter(&decision.key, &METADATA).increment(1));
}

/// A lookup in the verified-token cache.
pub(crate) fn token_cache(hit: bool) {
    if hit {
        counter!("tokenguard_cache_lookups_total", "cache" => "token", "result" => "hit")
            .increment(1);
    } else {
        counter!("tokenguard_cache_lookups_total", "cache" => "token", "result" => "miss")
            .increment(1);
    }
}

/// A lookup in the introspection cache.
pub(crate) fn introspection_cache(hit: bool) {
    if hit {
        counter!("tokenguard_cache_lookups_total", "cache" => "introspection", "result" => "hit")
            .increment(1);
    } else {
        counter!("tokenguard_cache_lookups_total", "cache" => "introspection", "result" => "miss")
            .increment(1);
    }
}

/// A lookup in the shared introspection cache.
pub(crate) fn shared_introspection_cache(hit: bool) {
    if hit {
        counter!("tokenguard_cache_lookups_total", "cache" => "introspection_shared", "result" => "hit")
            .increment(1);
    } else {
        counter!("tokenguard_cache_lookups_total", "cache" => "introspection_shared", "result" => "miss")
            .increment(1);
    }
}

/// One key-set fetch and how long it took.
pub(crate) fn key_fetch(ok: bool, took: Duration) {
    if ok {
        counter!("tokenguard_key_fetches_total", "result" => "ok").increment(1);
        histogram!("tokenguard_key_fetch_duration_seconds", "result" => "ok").record(took);
    } else {
        counter!("tokenguard_key_fetches_total", "result" => "error").increment(1);
        histogram!("tokenguard_key_fetch_duration_seconds", "result" => "error").record(took);
    }
}

/// One introspection call and how long it took.
pub(crate) fn introspection(result: Introspected, took: Duration) {
    match result {
        Introspected::Active => {
            counter!("tokenguard_introspections_total", "result" => "active").increment(1);
            histogram!("tokenguard_introspection_duration_seconds", "result" => "active")
                .record(took);
        }
        Introspected::Inactive => {
            counter!("tokenguard_introspections_total", "result" => "inactive").increment(1);
            histogram!("tokenguard_introspection_duration_seconds", "result" => "inactive")
                .record(took);
        }
        Introspected::Error => {
            counter!("tokenguard_introspections_total", "result" => "error").increment(1);
            histogram!("tokenguard_introspection_duration_seconds", "result" => "error")
                .record(took);
        }
    }
}

/// One call a `RedisStore` made, failed, or skipped (breaker open).
#[cfg(feature = "redis")]
pub(crate) fn redis_call(result: RedisCall) {
    match result {
        RedisCall::Ok => counter!("tokenguard_redis_calls_total", "result" => "ok").increment(1),
        RedisCall::Error => {
            counter!("tokenguard_redis_calls_total", "result" => "error").increment(1)
        }
        RedisCall::Skipped => {
            counter!("tokenguard_redis_calls_total", "result" => "skipped").increment(1)
        }
    }
}

/// A DPoP proof refused as a replay.
pub(crate) fn dpop_replay() {
    counter!("tokenguard_dpop_replays_total").increment(1);
}

/// A `use_dpop_nonce` challenge.
pub(crate) fn dpop_nonce_challenge() {
    counter!("tokenguard_dpop_nonce_challenges_total").increment(1);
}

/// Describes every metric to the installed recorder (its help text and
/// unit), for exporters that publish them. Called when a guard is built.
pub(crate) fn describe() {
    use metrics::{Unit, describe_counter, describe_histogram};
    describe_counter!(
        REQUESTS,
        Unit::Count,
        "Requests by outcome: let through by the guard's layer, or refused"
    );
    describe_counter!(
        "tokenguard_cache_lookups_total",
        Unit::Count,
        "Lookups in the verified-token and introspection caches"
    );
    describe_counter!(
        "tokenguard_redis_calls_total",
        Unit::Count,
        "Calls of a RedisStore by result: answered, failed, or skipped by its circuit breaker"
    );
    describe_counter!(
        "tokenguard_key_fetches_total",
        Unit::Count,
        "Key-set fetches by result"
    );
    describe_histogram!(
        "tokenguard_key_fetch_duration_seconds",
        Unit::Seconds,
        "Duration of key-set fetches"
    );
    describe_counter!(
        "tokenguard_introspections_total",
        Unit::Count,
        "Introspection calls by result"
    );
    describe_histogram!(
        "tokenguard_introspection_duration_seconds",
        Unit::Seconds,
        "Duration of introspection calls"
    );
    describe_counter!(
        "tokenguard_dpop_replays_total",
        Unit::Count,
        "DPoP proofs refused as replays"
    );
    describe_counter!(
        "tokenguard_dpop_nonce_challenges_total",
        Unit::Count,
        "use_dpop_nonce challenges sent"
    );
}
