//! Ctrl-C (SIGINT) or SIGTERM during a run or sweep. The first stops it as a
//! cancel does: running ranks are killed (on AWS, the execution is stopped),
//! queued ones never start, what finished is summarized and the registry row
//! is closed, cancelled; the command then exits 130. A second signal exits at once, also 130 (the workers follow,
//! by `PR_SET_PDEATHSIG`). Workers lead process groups of their own, so a
//! terminal's Ctrl-C reaches only the coordinator, which decides.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    if INTERRUPTED.swap(true, Ordering::SeqCst) {
        // SAFETY: `_exit` is async-signal-safe.
        unsafe { libc::_exit(130) };
    }
}

/// From now on SIGINT and SIGTERM set `cancel` (and [`interrupted`]). A signal
/// this process was started ignoring (`nohup`, a script's background job) stays
/// ignored: a Ctrl-C meant for the script does not stop the run.
pub fn cancel_on_signal(cancel: Arc<AtomicBool>) {
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: sigaction with a null new action only reads the disposition;
        // the handler only touches an atomic and calls `_exit`.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(signal, std::ptr::null(), &mut old) == 0
                && old.sa_sigaction == libc::SIG_IGN
            {
                continue;
            }
            libc::signal(signal, handler);
        }
    }
    // Passed on from a thread: a signal handler may not touch an Arc or print.
    std::thread::spawn(move || {
        while !INTERRUPTED.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
        }
        cancel.store(true, Ordering::SeqCst);
        crate::say!(
            "interrupted: stopping the running ranks; what finished is summarized (again to stop at once)"
        );
    });
}

/// Whether a signal stopped the run.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}
