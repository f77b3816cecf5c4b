//! Who may call the API, and how much at once.
//!
//! - The bearer token guards every endpoint that starts, stops or costs work
//!   (runs, sweeps, estimates). Off loopback there is always one; on loopback
//!   only when given (`--token`, for a server behind a reverse proxy). It is
//!   compared in constant time and must be long enough to resist guessing.
//! - The Host check refuses requests whose `Host` is not this server's name, so
//!   a web page cannot reach a loopback server through DNS rebinding; and a
//!   server with no token takes no guarded request that a browser made for a
//!   page of another site (cross-site request forgery).
//! - [`Slots`] admit a bounded number of runs, sweeps and event streams at once;
//!   past the bound the answer is 429 with `Retry-After`, not a slower host.
//! - The [`MemoryBudget`] is shared by every local run and sweep: each holds
//!   its ranks-at-once × `memory_mb`, so runs side by side cannot promise the
//!   host more memory than it has; a run that finds less free runs fewer ranks
//!   at once, and one that finds not even one rank's worth is refused (429).

use super::AppState;
use super::client::{Client, Held, Shares};
use super::error::Error;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The shortest token accepted: 16 characters of a random hex token are 64 bits.
pub const MIN_TOKEN_LEN: usize = 16;

/// A token, checked for length; `what` names where it came from.
pub fn checked_token(token: &str, what: &str) -> anyhow::Result<String> {
    let token = token.trim();
    if token.len() < MIN_TOKEN_LEN {
        anyhow::bail!(
            "{what}: a token must have at least {MIN_TOKEN_LEN} characters, this one has {}",
            token.len()
        );
    }
    Ok(token.to_string())
}

/// Equal, in time that depends on the lengths only, not on where they differ.
fn same_token(given: &[u8], expected: &[u8]) -> bool {
    if given.len() != expected.len() {
        return false;
    }
    let diff = given
        .iter()
        .zip(expected)
        .fold(0u8, |diff, (a, b)| diff | (a ^ b));
    std::hint::black_box(diff) == 0
}

/// Endpoints that start, stop or cost work need the token, when there is one.
pub async fn require_token(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(token) = &state.access.token else {
        let authority = request.uri().authority().map(|a| a.as_str());
        if let Some(why) = from_another_site(request.headers(), authority) {
            return Error(
                StatusCode::FORBIDDEN,
                format!(
                    "a page of another site may not call this endpoint ({why}); to call it \
                     from elsewhere, start the server with --token"
                ),
            )
            .into_response();
        }
        return next.run(request).await;
    };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        // The scheme is case-insensitive (RFC 9110, 11.1).
        .and_then(|v| {
            v.get(..7)
                .filter(|s| s.eq_ignore_ascii_case("bearer "))
                .map(|_| &v[7..])
        });
    if !given.is_some_and(|g| same_token(g.as_bytes(), token.as_bytes())) {
        return Error(
            StatusCode::UNAUTHORIZED,
            "this endpoint needs Authorization: Bearer TOKEN (printed by cosmicai serve, or COSMICAI_TOKEN)".into(),
        )
        .into_response();
    }
    next.run(request).await
}

/// Why a request comes from a page of another site, if it does. Without a
/// token, a page anywhere on the web could make the user's browser post to a
/// loopback server: a request with no body, or a form's, needs no CORS
/// preflight, and the Host check passes. Browsers say where a request comes
/// from (`Sec-Fetch-Site`, `Origin`); the CLI and scripts send neither.
fn from_another_site(headers: &axum::http::HeaderMap, authority: Option<&str>) -> Option<String> {
    let text = |name: &str| headers.get(name).map(|v| v.to_str().unwrap_or("?"));
    // The browser's own word, which no page can change, decides where it is
    // given (`none`: the address bar, a bookmark); a proxy that rewrites Host
    // leaves it right where comparing Origin with Host would not be.
    if let Some(site) = text("sec-fetch-site") {
        let ours = site.eq_ignore_ascii_case("same-origin") || site.eq_ignore_ascii_case("none");
        return (!ours).then(|| format!("Sec-Fetch-Site: {site}"));
    }
    let origin = text("origin")?;
    // Older browsers: the origin's host and port must be those this request was
    // sent to (Host, or the URI's authority in HTTP/2).
    let host = text("host").or(authority).unwrap_or_default();
    let authority = origin
        .split_once("://")
        .map_or("", |(_, rest)| rest)
        .trim_end_matches('/');
    (!authority.eq_ignore_ascii_case(host)).then(|| format!("Origin: {origin}"))
}

/// Who may call: the token, and the names this server answers to.
pub struct Access {
    pub token: Option<String>,
    /// Host names (without port) requests may carry; `None` accepts any.
    hosts: Option<Vec<String>>,
}

impl Access {
    /// A loopback server answers to its loopback names and `allowed`; one on a
    /// public or wildcard address to `allowed` only when given (its token
    /// guards it; its names are the proxy's or DNS's business).
    pub fn new(token: Option<String>, addr: SocketAddr, allowed: &[String]) -> Access {
        let hosts = if addr.ip().is_loopback() {
            let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "[::1]"]
                .into_iter()
                .map(String::from)
                .collect();
            hosts.push(match addr {
                SocketAddr::V4(a) => a.ip().to_string(),
                SocketAddr::V6(a) => format!("[{}]", a.ip()),
            });
            hosts.extend(allowed.iter().map(|h| h.to_ascii_lowercase()));
            Some(hosts)
        } else if allowed.is_empty() {
            None
        } else {
            Some(allowed.iter().map(|h| h.to_ascii_lowercase()).collect())
        };
        Access { token, hosts }
    }

    fn host_allowed(&self, host: Option<&str>) -> bool {
        let Some(hosts) = &self.hosts else {
            return true;
        };
        let Some(host) = host else {
            return false;
        };
        let host = host.to_ascii_lowercase();
        // The name without its port; an IPv6 literal keeps its brackets.
        let name = match host.rfind(':') {
            Some(i) if !host[i..].contains(']') => &host[..i],
            _ => host.as_str(),
        };
        // `localhost.` is `localhost` (a fully qualified name).
        let name = name.strip_suffix('.').unwrap_or(name);
        hosts.iter().any(|h| h == name)
    }
}

/// Refuses requests for another host name (DNS rebinding).
pub async fn check_host(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()));
    if !state.access.host_allowed(host) {
        return Error(
            StatusCode::MISDIRECTED_REQUEST,
            format!(
                "Host {:?} is not a name of this server (start it with --allowed-host NAME to answer to it)",
                host.unwrap_or("")
            ),
        )
        .into_response();
    }
    next.run(request).await
}

/// A reply body that holds `slot` until the client has taken all of it, gone,
/// or let `deadline` pass. Sent in pieces, each its own copy, so what the
/// server still holds for a slow client is the rest of `bytes` plus a few
/// pieces, while the slot counts it. At the deadline the rest and the slot are
/// let go together, whether or not the client is reading (one that never reads
/// never polls the body again), and the body's next poll ends the reply with
/// an error, so hyper closes the connection short of Content-Length and the
/// client cannot take a cut reply for a whole one.
pub fn held_body(
    bytes: impl AsRef<[u8]> + Send + 'static,
    slot: Slot,
    deadline: std::time::Duration,
) -> axum::body::Body {
    const PIECE: usize = 64 << 10;
    let held = Arc::new(Mutex::new(Some((bytes, slot))));
    let expiry = Arc::downgrade(&held);
    let timer = AbortOnDrop::spawn(async move {
        tokio::time::sleep(deadline).await;
        if let Some(held) = expiry.upgrade() {
            held.lock().unwrap_or_else(|e| e.into_inner()).take();
        }
    });
    let pieces = futures_util::stream::unfold(Some((held, 0)), move |state| async move {
        let (held, at) = state?;
        let piece = {
            let kept = held.lock().unwrap_or_else(|e| e.into_inner());
            match kept.as_ref() {
                None => Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("the reply was not taken within {} s", deadline.as_secs()),
                )),
                Some((bytes, _)) if at >= bytes.as_ref().len() => return None,
                Some((bytes, _)) => {
                    let bytes = bytes.as_ref();
                    let end = bytes.len().min(at + PIECE);
                    Ok((axum::body::Bytes::copy_from_slice(&bytes[at..end]), end))
                }
            }
        };
        Some(match piece {
            Ok((piece, end)) => (Ok(piece), Some((held, end))),
            Err(e) => (Err(e), None),
        })
    });
    // The timer goes with the body: a reply taken (or dropped) leaves no task
    // sleeping out its deadline.
    use futures_util::StreamExt;
    axum::body::Body::from_stream(pieces.map(move |piece| {
        let _timer = &timer;
        piece
    }))
}

/// A task aborted when this is dropped: a timer that belongs to a reply or a
/// stream ends with it, instead of sleeping out its time after the reply is gone.
pub struct AbortOnDrop(tokio::task::AbortHandle);

impl AbortOnDrop {
    pub fn spawn(task: impl std::future::Future<Output = ()> + Send + 'static) -> AbortOnDrop {
        AbortOnDrop(tokio::spawn(task).abort_handle())
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A bounded number of things (runs, streams, replies) at once, and of those
/// a bounded share for any one client, where one is given.
pub struct Slots {
    used: AtomicUsize,
    cap: usize,
    per_client: Option<Arc<Shares>>,
}

/// One admitted thing; its slot (and its client's share) frees when it is dropped.
pub struct Slot {
    slots: Arc<Slots>,
    _share: Option<Held>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.used.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Slots {
    pub fn new(cap: usize) -> Arc<Slots> {
        Arc::new(Slots {
            used: AtomicUsize::new(0),
            cap,
            per_client: None,
        })
    }

    /// `cap` at once, at most `share` of them for one client.
    pub fn shared(cap: usize, share: usize) -> Arc<Slots> {
        Arc::new(Slots {
            used: AtomicUsize::new(0),
            cap,
            per_client: Some(Shares::new(share.min(cap))),
        })
    }

    /// A slot, or `None` when all `cap` are taken.
    pub fn take(self: &Arc<Self>) -> Option<Slot> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used < self.cap).then_some(used + 1)
            })
            .ok()
            .map(|_| Slot {
                slots: self.clone(),
                _share: None,
            })
    }

    /// A slot for `client`: `None` when all are taken, or when the client
    /// holds its share (a request with no client, from a test's router, has
    /// only the cap).
    pub fn take_for(self: &Arc<Self>, client: Option<Client>) -> Option<Slot> {
        let share = match (&self.per_client, client) {
            (Some(shares), Some(client)) => Some(shares.take(client)?),
            _ => None,
        };
        let mut slot = self.take()?;
        slot._share = share;
        Some(slot)
    }

    pub fn cap(&self) -> usize {
        self.cap
    }

    /// The 429 when [`Slots::take_for`] finds none: names both bounds.
    pub fn busy(&self, what: &str) -> Error {
        match &self.per_client {
            Some(shares) => Error(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "{what}: this server admits {} at once, at most {} for one client; try again later",
                    self.cap,
                    shares.share()
                ),
            ),
            None => busy(what, self.cap),
        }
    }
}

/// Memory, in MB, that the local runs admitted at once may hold together.
pub struct MemoryBudget {
    total_mb: u64,
    held_mb: Mutex<u64>,
}

/// Memory held for one run's ranks; it frees when dropped.
pub struct Reservation {
    budget: Arc<MemoryBudget>,
    mb: u64,
    ranks: usize,
}

impl Reservation {
    /// Ranks the run may have at once.
    pub fn ranks(&self) -> usize {
        self.ranks
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut held = self
            .budget
            .held_mb
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *held = held.saturating_sub(self.mb);
    }
}

impl MemoryBudget {
    pub fn new(total_mb: u64) -> Arc<MemoryBudget> {
        Arc::new(MemoryBudget {
            total_mb,
            held_mb: Mutex::new(0),
        })
    }

    /// `per_rank_mb` for as many of `ranks` as are free, at least `least`; the
    /// 429 naming what is held when not even `least` fit.
    pub fn reserve(
        self: &Arc<Self>,
        per_rank_mb: u32,
        least: usize,
        ranks: usize,
    ) -> Result<Reservation, Error> {
        let per_rank = u64::from(per_rank_mb.max(1));
        let mut held = self.held_mb.lock().unwrap_or_else(|e| e.into_inner());
        let free = self.total_mb.saturating_sub(*held);
        let fit = usize::try_from(free / per_rank)
            .unwrap_or(usize::MAX)
            .min(ranks);
        if fit < least.max(1) {
            return Err(Error(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "memory: {} rank(s) of {per_rank_mb} MB need {} MB, and {free} MB of this server's {} MB budget are free ({} MB held by running runs); try again later",
                    least.max(1),
                    least.max(1) as u64 * per_rank,
                    self.total_mb,
                    *held
                ),
            ));
        }
        let mb = fit as u64 * per_rank;
        *held += mb;
        Ok(Reservation {
            budget: self.clone(),
            mb,
            ranks: fit,
        })
    }
}

/// The 429 for a full set of slots; `Retry-After` is added by [`Error`].
pub fn busy(what: &str, cap: usize) -> Error {
    Error(
        StatusCode::TOO_MANY_REQUESTS,
        format!(
            "{cap} {what} already running, the most this server admits at once; try again later"
        ),
    )
}

/// A token for a server listening beyond loopback with none given: 24 bytes
/// from the kernel's random source, in hex.
pub fn random_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 24];
    use std::io::Read;
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_only_when_equal() {
        assert!(same_token(b"0123456789abcdef", b"0123456789abcdef"));
        assert!(!same_token(b"0123456789abcdeF", b"0123456789abcdef"));
        assert!(!same_token(b"0123456789abcde", b"0123456789abcdef"));
        assert!(checked_token("short", "--token").is_err());
    }

    #[test]
    fn a_request_from_another_sites_page_is_told_apart() {
        let of = |pairs: &[(&'static str, &'static str)]| {
            let mut headers = axum::http::HeaderMap::new();
            for (name, value) in pairs {
                headers.insert(*name, value.parse().unwrap());
            }
            from_another_site(&headers, None)
        };
        let host = ("host", "127.0.0.1:8080");
        // The CLI, curl, a script: no word on where they come from.
        assert_eq!(of(&[host]), None);
        // The explorer itself, and the address bar.
        assert_eq!(of(&[host, ("sec-fetch-site", "same-origin")]), None);
        assert_eq!(of(&[host, ("sec-fetch-site", "none")]), None);
        assert_eq!(of(&[host, ("origin", "http://127.0.0.1:8080")]), None);
        // Behind a proxy that rewrites Host, the browser's word still holds.
        let proxied = [
            host,
            ("sec-fetch-site", "same-origin"),
            ("origin", "https://sky.example"),
        ];
        assert_eq!(of(&proxied), None);
        assert_eq!(
            of(&[("host", "[::1]:8080"), ("origin", "http://[::1]:8080")]),
            None
        );
        // Another site's page, or a sandboxed one.
        for site in ["cross-site", "same-site"] {
            assert!(
                of(&[host, ("sec-fetch-site", site)])
                    .unwrap()
                    .contains(site)
            );
        }
        for origin in [
            "https://evil.example",
            "http://127.0.0.1:3000",
            "null",
            "http://localhost:8080",
        ] {
            assert!(
                of(&[host, ("origin", origin)]).unwrap().contains(origin),
                "{origin}"
            );
        }
    }

    #[test]
    fn a_loopback_server_answers_to_its_own_names_only() {
        let addr: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let access = Access::new(None, addr, &["cosmic.example.org".into()]);
        for ok in [
            "127.0.0.1:8080",
            "localhost:8080",
            "LOCALHOST",
            "localhost.:8080",
            "[::1]:8080",
            "cosmic.example.org",
        ] {
            assert!(access.host_allowed(Some(ok)), "{ok}");
        }
        for bad in ["evil.example:8080", "127.0.0.1.evil.example", ""] {
            assert!(!access.host_allowed(Some(bad)), "{bad}");
        }
        assert!(!access.host_allowed(None));
        let public = Access::new(None, "0.0.0.0:80".parse().unwrap(), &[]);
        assert!(public.host_allowed(Some("anything.example")));
    }

    #[test]
    fn slots_admit_up_to_their_cap_and_free_on_drop() {
        let slots = Slots::new(2);
        let a = slots.take().unwrap();
        let _b = slots.take().unwrap();
        assert!(slots.take().is_none());
        drop(a);
        assert!(slots.take().is_some());
    }

    #[test]
    fn shared_slots_keep_a_share_for_the_other_clients() {
        use crate::server::client::Client;
        let slots = Slots::shared(4, 2);
        let greedy = Some(Client::of("192.0.2.1".parse().unwrap()));
        let other = Some(Client::of("192.0.2.2".parse().unwrap()));
        let held: Vec<Slot> = (0..2).map(|_| slots.take_for(greedy).unwrap()).collect();
        assert!(slots.take_for(greedy).is_none(), "past its share");
        let _theirs = slots.take_for(other).unwrap();
        let _no_client = slots.take_for(None).unwrap();
        // The cap still holds whoever asks.
        assert!(slots.take_for(other).is_none());
        drop(held);
        assert!(slots.take_for(greedy).is_some());
        assert!(slots.busy("replies").0 == StatusCode::TOO_MANY_REQUESTS);
    }

    #[tokio::test]
    async fn a_timer_ends_with_its_owner() {
        let marker = Arc::new(());
        let held = marker.clone();
        let asleep = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sleeping = asleep.clone();
        let timer = AbortOnDrop::spawn(async move {
            sleeping.store(true, Ordering::Relaxed);
            tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
            drop(held);
        });
        for _ in 0..100 {
            if asleep.load(Ordering::Relaxed) {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(asleep.load(Ordering::Relaxed), "the timer ran");
        assert_eq!(Arc::strong_count(&marker), 2, "the timer is sleeping");
        drop(timer);
        for _ in 0..100 {
            if Arc::strong_count(&marker) == 1 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(Arc::strong_count(&marker), 1, "the aborted timer let go");
    }

    #[tokio::test]
    async fn a_held_reply_lets_its_slot_go_at_the_deadline() {
        use futures_util::StreamExt;
        let slots = Slots::new(1);
        let bytes = vec![7u8; 200 << 10];
        let body = held_body(
            bytes.clone(),
            slots.take().unwrap(),
            std::time::Duration::from_secs(60),
        );
        // Taken whole within its deadline: every byte, then the slot is free.
        let taken = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        assert_eq!(taken.as_ref(), bytes.as_slice());
        assert!(slots.take().is_some());

        // A client that takes one piece and stops reading.
        let body = held_body(
            bytes,
            slots.take().unwrap(),
            std::time::Duration::from_millis(50),
        );
        let mut pieces = body.into_data_stream();
        let first = pieces.next().await.unwrap().unwrap();
        assert_eq!(first.len(), 64 << 10);
        assert!(
            slots.take().is_none(),
            "the slot is held while the reply is sent"
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(slots.take().is_some(), "the deadline let the slot go");
        let cut = pieces.next().await.unwrap();
        assert!(cut.is_err(), "a reply cut at its deadline ends in an error");
        assert!(pieces.next().await.is_none());
    }

    #[test]
    fn runs_share_the_memory_budget() {
        let budget = MemoryBudget::new(5000);
        // Wants 4 ranks of 2000 MB: 2 fit.
        let a = budget.reserve(2000, 1, 4).unwrap();
        assert_eq!(a.ranks(), 2);
        // 1000 MB left: not one rank of 2000, but a rank of 1000.
        let refused = budget.reserve(2000, 1, 1).err().unwrap();
        assert_eq!(refused.0, StatusCode::TOO_MANY_REQUESTS);
        assert!(
            refused
                .1
                .contains("1000 MB of this server's 5000 MB budget are free"),
            "{}",
            refused.1
        );
        let b = budget.reserve(1000, 1, 8).unwrap();
        assert_eq!(b.ranks(), 1);
        // All or nothing (a sweep): 2 ranks of 2000 once `a` is gone.
        assert!(budget.reserve(2000, 2, 2).is_err());
        drop(a);
        assert_eq!(budget.reserve(2000, 2, 2).unwrap().ranks(), 2);
    }
}
