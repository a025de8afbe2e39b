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
//! - Fetches have a total timeout, a response size cap, and do not follow
//!   redirects; URLs must be HTTPS except on loopback.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use reqwest::header::{ACCEPT, CACHE_CONTROL, HeaderValue};
use reqwest::{StatusCode, Url};
use tokio::time::Instant;

use super::{KeyRules, KeySet};

/// A failed fetch (discovery or JWKS).
#[derive(Debug, Clone)]
pub(crate) struct FetchError {
    pub(crate) message: String,
    pub(crate) status: Option<StatusCode>,
}

impl FetchError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            status: None,
        }
    }
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Checks that `url` parses and is HTTPS, or HTTP on a loopback host.
pub(crate) fn check_url(url: &str) -> Result<Url, FetchError> {
    let parsed =
        Url::parse(url).map_err(|e| FetchError::new(format!("invalid URL {url:?}: {e}")))?;
    let loopback = parsed.host_str().is_some_and(|host| {
        host.eq_ignore_ascii_case("localhost")
            || host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    });
    match parsed.scheme() {
        "https" => Ok(parsed),
        "http" if loopback => Ok(parsed),
        _ => Err(FetchError::new(format!(
            "{url:?} must be an https URL (http only on loopback)"
        ))),
    }
}

/// A fetched document.
pub(crate) struct Fetched {
    pub(crate) body: Bytes,
    pub(crate) max_age: Option<Duration>,
}

/// HTTP GET with the guard's client, timeout and size cap.
#[derive(Clone)]
pub(crate) struct Fetcher {
    pub(crate) client: reqwest::Client,
    pub(crate) timeout: Duration,
    pub(crate) max_bytes: usize,
}

/// The client used when the app injects none: no redirects, connect timeout.
pub(crate) fn default_client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .user_agent(concat!("tokenguard/", env!("CARGO_PKG_VERSION")))
        .build()
}

fn max_age(value: Option<&HeaderValue>) -> Option<Duration> {
    let value = value?.to_str().ok()?;
    let mut age = None;
    for directive in value.split(',') {
        let directive = directive.trim();
        if directive.eq_ignore_ascii_case("no-store") || directive.eq_ignore_ascii_case("no-cache")
        {
            return Some(Duration::ZERO);
        }
        if let Some((name, v)) = directive.split_once('=')
            && name.trim().eq_ignore_ascii_case("max-age")
        {
            age = v
                .trim()
                .trim_matches('"')
                .parse::<u64>()
                .ok()
                .map(Duration::from_secs);
        }
    }
    age
}

impl Fetcher {
    pub(crate) async fn get(&self, url: &Url) -> Result<Fetched, FetchError> {
        match tokio::time::timeout(self.timeout, self.get_inner(url)).await {
            Ok(result) => result,
            Err(_) => Err(FetchError::new(format!(
                "{url} did not answer within {:?}",
                self.timeout
            ))),
        }
    }

    async fn get_inner(&self, url: &Url) -> Result<Fetched, FetchError> {
        let fail = |e: reqwest::Error| FetchError::new(format!("fetching {url}: {e}"));
        let mut resp = self
            .client
            .get(url.clone())
            .header(ACCEPT, "application/json, application/jwk-set+json")
            .send()
            .await
            .map_err(fail)?;
        let status = resp.status();
        if !status.is_success() {
            let what = if status.is_redirection() {
                " (redirects are not followed)"
            } else {
                ""
            };
            return Err(FetchError {
                message: format!("{url} answered {status}{what}"),
                status: Some(status),
            });
        }
        if resp
            .content_length()
            .is_some_and(|len| len > self.max_bytes as u64)
        {
            return Err(FetchError::new(format!(
                "{url} answered more than {} bytes",
                self.max_bytes
            )));
        }
        let max_age = max_age(resp.headers().get(CACHE_CONTROL));
        let mut body = BytesMut::new();
        while let Some(chunk) = resp.chunk().await.map_err(fail)? {
            if body.len() + chunk.len() > self.max_bytes {
                return Err(FetchError::new(format!(
                    "{url} answered more than {} bytes",
                    self.max_bytes
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Fetched {
            body: body.freeze(),
            max_age,
        })
    }
}

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
    pub(crate) fn status(&self, issuer: Option<String>) -> crate::guard::KeySetStatus {
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
        crate::guard::KeySetStatus {
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
        let _ = self.start_fetch_locked(&mut state);
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
        self.start_fetch_locked(&mut state)
    }

    fn start_fetch_locked(
        self: &Arc<Self>,
        state: &mut State,
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
            let task = tokio::spawn(fetch);
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
        let result = self.fetch().await;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_rules() {
        assert!(check_url("https://id.example.com/jwks").is_ok());
        assert!(check_url("http://127.0.0.1:8080/jwks").is_ok());
        assert!(check_url("http://localhost/jwks").is_ok());
        assert!(check_url("http://[::1]/jwks").is_ok());
        assert!(check_url("http://id.example.com/jwks").is_err());
        assert!(check_url("file:///etc/passwd").is_err());
        assert!(check_url("not a url").is_err());
    }

    #[test]
    fn cache_control() {
        let v = |s: &'static str| max_age(Some(&HeaderValue::from_static(s)));
        assert_eq!(v("public, max-age=600"), Some(Duration::from_secs(600)));
        assert_eq!(v("no-store"), Some(Duration::ZERO));
        assert_eq!(v("public"), None);
        assert_eq!(max_age(None), None);
    }
}
