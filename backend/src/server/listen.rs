//! The accept loop: the router over hyper's HTTP/1.1, with what `axum::serve`
//! leaves out for a server a hostile caller can reach. A request's headers must
//! arrive within [`HEADER_READ_TIMEOUT`] (a client trickling them a byte a
//! minute would otherwise hold its connection for ever), and at most
//! [`MAX_CONNECTIONS`] are open at once (past it a new one is closed at once,
//! and the open ones go on), so callers cannot exhaust the file descriptors.
//! One client may hold [`CONNECTIONS_PER_CLIENT`] of them, so it cannot shut
//! the others out; each request carries its [`Client`] for the shares of the
//! other limits.

use super::client::{Client, Shares};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// Connections open at once. Each costs a file descriptor and a few KB.
pub const MAX_CONNECTIONS: usize = 1024;

/// Connections one client may hold: a quarter, so a class behind one school
/// address (a browser opens about 6 a server) still fits, and one caller
/// cannot take them all.
pub const CONNECTIONS_PER_CLIENT: usize = MAX_CONNECTIONS / 4;

/// File descriptors kept beyond the connections: the registry, the datasets,
/// the workers' pipes, the outgoing archive requests.
const OTHER_FILES: u64 = 256;

/// Connections to admit: [`MAX_CONNECTIONS`], or fewer where the process may
/// not open that many files beside the rest. The soft limit is raised to the
/// hard one first (often 1,024 soft on Linux, with a much higher hard limit).
// rlim_t is u64 here, not on every target.
#[allow(clippy::unnecessary_cast)]
fn connection_cap() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write and read the one struct given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return MAX_CONNECTIONS;
    }
    let wanted = (MAX_CONNECTIONS as u64 + OTHER_FILES).min(limit.rlim_max as u64);
    if (limit.rlim_cur as u64) < wanted {
        let raised = libc::rlimit {
            rlim_cur: wanted as libc::rlim_t,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit.rlim_cur = raised.rlim_cur;
        }
    }
    let files = limit.rlim_cur as u64;
    usize::try_from(files.saturating_sub(OTHER_FILES))
        .unwrap_or(MAX_CONNECTIONS)
        .clamp(16, MAX_CONNECTIONS)
}

/// How long a request's headers may take to arrive, from the moment the
/// connection waits for them (an idle keep-alive connection too).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// [`HEADER_READ_TIMEOUT`], or `COSMICAI_HEADER_READ_TIMEOUT_S` (for the tests,
/// which cannot wait 30 s).
fn header_read_timeout() -> Duration {
    std::env::var("COSMICAI_HEADER_READ_TIMEOUT_S")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map_or(HEADER_READ_TIMEOUT, Duration::from_secs_f64)
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets the
/// open connections finish (the caller bounds how long).
pub async fn serve(
    listener: TcpListener,
    trusted_proxies: Vec<std::net::IpAddr>,
    router: Router,
    shutdown: impl Future<Output = ()>,
) {
    let cap = connection_cap();
    if cap < MAX_CONNECTIONS {
        crate::say!(
            "serving at most {cap} connections at once (the process may open too few files for {MAX_CONNECTIONS}; raise `ulimit -n`)"
        );
    }
    let open = Arc::new(Semaphore::new(cap));
    // At least 8 (a browser opens about 6 to one server), at most half.
    let per_client = Shares::new(CONNECTIONS_PER_CLIENT.min(cap / 4).max(8).min(cap / 2));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                // An IPv4 peer of a dual-stack listener comes as ::ffff:a.b.c.d.
                Ok((stream, peer)) => (stream, peer.ip().to_canonical()),
                // Out of file descriptors, say: wait for some to close rather
                // than spin (as axum's loop does).
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // A trusted proxy carries many users' connections: it holds no share.
        let trusted = trusted_proxies.contains(&peer);
        let share = match trusted {
            true => None,
            false => match per_client.take(Client::of(peer)) {
                Some(share) => Some(share),
                None => {
                    drop(stream);
                    continue;
                }
            },
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(header_read_timeout());
        let connection = graceful.watch(http.serve_connection(
            TokioIo::new(stream),
            TowerToHyperService::new(router.clone().map_request(
                move |mut request: hyper::Request<hyper::body::Incoming>| {
                    let lines: Vec<&str> = request
                        .headers()
                        .get_all("x-forwarded-for")
                        .iter()
                        .filter_map(|v| v.to_str().ok())
                        .collect();
                    let client = Client::of_request(peer, trusted, lines.into_iter());
                    request.extensions_mut().insert(client);
                    request
                },
            )),
        ));
        tokio::spawn(async move {
            let _ = connection.await;
            drop((permit, share));
        });
    }
    // Closed first: a new connection is refused at once, not left waiting
    // in the backlog while the open ones finish.
    drop(listener);
    graceful.shutdown().await;
}
