//! The accept loop: the router over hyper's HTTP/1.1, with what `axum::serve`
//! leaves out for a server a hostile caller can reach. A request's headers must
//! arrive within [`HEADER_READ_TIMEOUT`] (a client trickling them a byte a
//! minute would otherwise hold its connection for ever), and at most
//! [`MAX_CONNECTIONS`] are open at once (past it a new one is closed at once,
//! and the open ones go on), so callers cannot exhaust the file descriptors.

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Connections open at once. Each costs a file descriptor and a few KB.
pub const MAX_CONNECTIONS: usize = 1024;

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
pub async fn serve(listener: TcpListener, router: Router, shutdown: impl Future<Output = ()>) {
    let open = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                // Out of file descriptors, say: wait for some to close rather
                // than spin (as axum's loop does).
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
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
            TowerToHyperService::new(router.clone()),
        ));
        tokio::spawn(async move {
            let _ = connection.await;
            drop(permit);
        });
    }
    // Closed first: a new connection is refused at once, not left waiting
    // in the backlog while the open ones finish.
    drop(listener);
    graceful.shutdown().await;
}
