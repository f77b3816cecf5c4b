//! Writing results to stdout without panicking when the reader goes away
//! (`cosmicai inspect DIR --json | head` must not crash).

use std::io::{ErrorKind, Write};

/// Writes `text` to stdout; a closed pipe is not an error.
pub fn emit(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// `eprintln!` that a closed stderr leaves alone: `cosmicai run ... 2>&1 | head`
/// must not panic once `head` has gone (the run goes on, unheard).
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// Appends a formatted line to a report being built.
#[macro_export]
macro_rules! line {
    ($out:expr, $($arg:tt)*) => {{
        use std::fmt::Write as _;
        let _ = writeln!($out, $($arg)*);
    }};
}
