//! Remote key sets: fetched from a JWKS URL (or one found by discovery),
//! cached, and refetched when a token names an unknown `kid`.
//!
//! - Reads are lock-free (`arc-swap`): once keys are cached no request waits
//!   on a lock or on the network.
//! - One fetch at a time: concurrent callers share the result of the fetch in
//!   flight. The fetch runs in its own task, so a caller that goes away does
//!   not cancel it for the others.
//! - Refetches are rate-limited: after any fetch attempt, another one starts
//!   only once `refetch_cooldown` has passed. Tokens naming unknown `kid`s can
//!   therefore cause at most one fetch per cooldown (12 a minute with the
//!   default 5 s).
//! - Cached keys are refreshed in the background once `refresh_interval` has
//!   passed (or the `Cache-Control: max-age` of the response, clamped to
//!   `min_refresh..=max_refresh`); while the issuer is down the last good keys
//!   keep serving.
//! - Fetches go through [`Fetcher`](crate::fetch::Fetcher): a total
//!   timeout, a response size cap, no redirects, HTTPS except on loopback.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use reqwest::Url;
use tokio::time::Instant;
use tracing::{Instrument, Span};

use super::{KeyRules, KeySet, KeySetStatus};
use crate::fetch::{FetchError, Fetcher};
use crate::telemetry;

/// Where a remote key set comes from.
#[derive(Debug, Clone)]
pub(crate) enum RemoteSource {
    /// A JWKS URL.
    Jwks(Url),
    /// The `jwks_uri` of this issuer's metadata.
    Discovery(String),
}

impl std::fmt::Display for RemoteSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Jwks(url) => write!(f, "{url}"),
            Self::Discovery(issuer) => write!(f, "discovery of {issuer}"),
        }
    }
}

/// Timing of remote key sets.
#[derive(Debug, Clone)]
pub(crate) struct RemoteConfig {
    pub(crate) refetch_cooldown: Duration,
    /// Longest wait between attempts while fetches keep failing.
    pub(crate) max_backoff: Duration,
    /// How long past their planned refresh cached keys keep serving while
    /// refreshes fail.
    pub(crate) max_stale: Duration,
    pub(crate) refresh_interval: Duration,
    pub(crate) min_refresh: Duration,
    pub(crate) max_refresh: Duration,
}

impl Default for RemoteConfig {
    fn default() -> Self {
        Self {
            refetch_cooldown: Duration::from_secs(5),
            max_backoff: Duration::from_secs(5 * 60),
            max_stale: Duration::from_secs(24 * 60 * 60),
            refresh_interval: Duration::from_secs(10 * 60),
            min_refresh: Duration::from_secs(5 * 60),
            max_refresh: Duration::from_secs(24 * 60 * 60),
        }
    }
}

struct Loaded {
    keys: Arc<KeySet>,
    refresh_at: Instant,
    /// Past this, the keys are too stale to serve.
    expires_at: Instant,
}

type SharedFetch = Shared<BoxFuture<'static, Result<Arc<KeySet>, FetchError>>>;

#[derive(Default)]
struct State {
    inflight: Option<SharedFetch>,
    last_attempt: Option<Instant>,
    jwks_uri: Option<Url>,
    /// Fetches failed in a row.
    failures: u32,
    last_error: Option<String>,
    last_success: Option<std::time::SystemTime>,
}

/// Why [`RemoteKeys::refresh`] gave no keys.
#[derive(Debug, Clone)]
pub(crate) enum RefreshError {
    /// A fetch happened too recently; try again after this long.
    CoolingDown(Duration),
    /// The fetch failed.
    Failed(FetchError),
}

/// `at + d`, or about a century later where that would overflow (settings
/// like `Duration::MAX` mean "never").
fn later(at: Instant, d: Duration) -> Instant {
    at.checked_add(d)
        .unwrap_or_else(|| at + Duration::from_secs(100 * 365 * 24 * 3600))
}

/// Clears `inflight` and counts a failure if a fetch task is dropped before it
/// stores its result.
struct Interrupted {
    remote: Option<Arc<RemoteKeys>>,
}

impl Drop for Interrupted {
    fn drop(&mut self) {
        if let Some(remote) = self.remote.take() {
            let mut state = remote.state.lock().unwrap_or_else(|p| p.into_inner());
            state.inflight = None;
            state.failures = state.failures.saturating_add(1);
            state.last_error = Some("the key fetch was interrupted".into());
        }
    }
}

/// A cached remote key set.
pub(crate) struct RemoteKeys {
    source: RemoteSource,
    fetcher: Fetcher,
    rules: KeyRules,
    cfg: RemoteConfig,
    current: ArcSwapOption<Loaded>,
    state: Mutex<State>,
}

impl RemoteKeys {
    pub(crate) fn new(
        source: RemoteSource,
        fetcher: Fetcher,
        rules: KeyRules,
        cfg: RemoteConfig,
    ) -> Self {
        Self {
            source,
            fetcher,
            rules,
            cfg,
            current: ArcSwapOption::empty(),
            state: Mutex::default(),
        }
    }

    /// The cached keys, without waiting. Starts a background refresh when
    /// they are due for one; `None` when there are none, or they are past
    /// their staleness limit.
    pub(crate) fn cached(self: &Arc<Self>) -> Option<Arc<KeySet>> {
        let loaded = self.current.load();
        let loaded = loaded.as_ref()?;
        let now = Instant::now();
        if now >= loaded.refresh_at {
            self.refresh_in_background();
        }
        (now < loaded.expires_at).then(|| loaded.keys.clone())
    }

    /// The wait imposed after the last attempt: the cooldown, doubled for
    /// each failure in a row, up to `max_backoff`.
    fn wait_after(&self, failures: u32) -> Duration {
        let base = self.cfg.refetch_cooldown;
        if failures <= 1 {
            return base;
        }
        let factor = 1u32.checked_shl(failures - 1).unwrap_or(u32::MAX);
        base.saturating_mul(factor)
            .min(self.cfg.max_backoff.max(base))
    }

    /// The state of the key set, for health reports.
    pub(crate) fn status(&self, issuer: Option<String>) -> KeySetStatus {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let loaded = self.current.load();
        let keys = loaded
            .as_ref()
            .filter(|l| Instant::now() < l.expires_at)
            .map(|l| l.keys.clone());
        let source = match (&self.source, &state.jwks_uri) {
            (RemoteSource::Jwks(url), _) | (RemoteSource::Discovery(_), Some(url)) => {
                url.to_string()
            }
            (RemoteSource::Discovery(issuer), None) => format!("discovery of {issuer}"),
        };
        KeySetStatus {
            issuer,
            source,
            keys_loaded: keys.as_ref().map_or(0, |k| k.keys.len()),
            kids: keys.map(|k| k.kids()).unwrap_or_default(),
            last_refresh: state.last_success,
            last_error: state.last_error.clone(),
            consecutive_failures: state.failures,
        }
    }

    fn refresh_in_background(self: &Arc<Self>) {
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        // Never wait for the state lock on the request path: if another
        // caller holds it, that caller is already deciding about a fetch.
        let Ok(mut state) = self.state.try_lock() else {
            return;
        };
        // Starting the fetch is enough: it runs in its own task (or one is in
        // flight already), and nobody here needs to wait for its result.
        let _ = self.start_fetch_locked(&mut state, Span::none());
    }

    /// How long until the next fetch attempt is allowed (zero if now).
    pub(crate) fn next_attempt_in(&self) -> Duration {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match state.last_attempt {
            Some(last) => self
                .wait_after(state.failures)
                .saturating_sub(last.elapsed()),
            None => Duration::ZERO,
        }
    }

    /// Fetches the key set now, or joins the fetch in flight. Rate-limited by
    /// the cooldown.
    pub(crate) async fn refresh(self: &Arc<Self>) -> Result<Arc<KeySet>, RefreshError> {
        self.start_fetch()?.await.map_err(RefreshError::Failed)
    }

    fn start_fetch(self: &Arc<Self>) -> Result<SharedFetch, RefreshError> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        self.start_fetch_locked(&mut state, Span::current())
    }

    /// Starts a fetch, or joins the one in flight. `span`: where its events
    /// belong (the caller's, when it waits for the result; none for a
    /// background refresh, which must not keep a request's span open).
    fn start_fetch_locked(
        self: &Arc<Self>,
        state: &mut State,
        span: Span,
    ) -> Result<SharedFetch, RefreshError> {
        if let Some(inflight) = &state.inflight {
            return Ok(inflight.clone());
        }
        let now = Instant::now();
        if let Some(last) = state.last_attempt {
            let wait = self.wait_after(state.failures);
            let since = now.saturating_duration_since(last);
            if since < wait {
                return Err(RefreshError::CoolingDown(wait - since));
            }
        }
        state.last_attempt = Some(now);
        let this = self.clone();
        let fetch = async move {
            // If this task never completes (its runtime shuts down, or it
            // panics), the guard still clears `inflight`, so that a later
            // caller can start a new fetch instead of joining a dead one.
            let mut interrupted = Interrupted {
                remote: Some(this.clone()),
            };
            let result = this.fetch_and_store().await;
            interrupted.remote = None;
            result
        };
        let shared = if tokio::runtime::Handle::try_current().is_ok() {
            // In its own task, so that callers going away do not cancel it.
            let task = tokio::spawn(fetch.instrument(span));
            async move {
                task.await
                    .unwrap_or_else(|_| Err(FetchError::new("the key fetch was interrupted")))
            }
            .boxed()
            .shared()
        } else {
            fetch.boxed().shared()
        };
        state.inflight = Some(shared.clone());
        Ok(shared)
    }

    async fn fetch_and_store(self: Arc<Self>) -> Result<Arc<KeySet>, FetchError> {
        let started = Instant::now();
        let result = self.fetch().await;
        let took = started.elapsed();
        telemetry::key_fetch(result.is_ok(), took);
        tracing::debug!(
            source = %self.source,
            result = telemetry::fetch_result(result.is_ok()),
            seconds = took.as_secs_f64(),
            "key set fetch"
        );
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.inflight = None;
        match &result {
            Ok((keys, max_age)) => {
                let interval = max_age
                    .map(|age| age.clamp(self.cfg.min_refresh, self.cfg.max_refresh))
                    .unwrap_or(self.cfg.refresh_interval);
                let now = Instant::now();
                let previous = self.current.swap(Some(Arc::new(Loaded {
                    keys: keys.clone(),
                    refresh_at: later(now, interval),
                    expires_at: later(later(now, interval), self.cfg.max_stale),
                })));
                if state.failures > 0 {
                    tracing::info!(source = %self.source, failures = state.failures, "key set fetch recovered");
                }
                state.failures = 0;
                state.last_error = None;
                state.last_success = Some(std::time::SystemTime::now());
                let kids = keys.kids();
                match previous {
                    Some(prev) if prev.keys.kids() != kids => {
                        tracing::info!(source = %self.source, ?kids, "key set rotated")
                    }
                    Some(_) => tracing::debug!(source = %self.source, "key set refreshed"),
                    None => tracing::info!(source = %self.source, ?kids, "key set loaded"),
                }
            }
            Err(e) => {
                // One warning per incident; repeats go to DEBUG.
                if state.failures == 0 {
                    tracing::warn!(source = %self.source, error = %e, "key set fetch failed; keeping the last good keys, if any");
                } else {
                    tracing::debug!(source = %self.source, error = %e, failures = state.failures + 1, "key set fetch failed again");
                }
                state.failures = state.failures.saturating_add(1);
                state.last_error = Some(e.message.clone());
            }
        }
        result.map(|(keys, _)| keys)
    }

    async fn fetch(&self) -> Result<(Arc<KeySet>, Option<Duration>), FetchError> {
        let url = match &self.source {
            RemoteSource::Jwks(url) => url.clone(),
            RemoteSource::Discovery(issuer) => {
                // After a failed fetch, discover the `jwks_uri` again, in
                // case the issuer moved it.
                let known = {
                    let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
                    if state.failures > 0 {
                        None
                    } else {
                        state.jwks_uri.clone()
                    }
                };
                match known {
                    Some(url) => url,
                    None => {
                        let url = super::discovery::jwks_uri(&self.fetcher, issuer).await?;
                        self.state
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .jwks_uri = Some(url.clone());
                        url
                    }
                }
            }
        };
        let doc = self.fetcher.get(&url).await?;
        let keys = self
            .rules
            .jwks(&doc.body, url.as_str())
            .map_err(|e| FetchError::new(format!("{url}: {e}")))?;
        Ok((Arc::new(keys), doc.max_age))
    }
}
