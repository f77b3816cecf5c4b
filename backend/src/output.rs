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

/// `error` and its causes, as `{error:#}` gives them, less a cause whose text
/// the message before it ends with (an I/O error named in its context's
/// message and again as its source: "x: Not a directory: Not a directory").
pub fn chain(error: &anyhow::Error) -> String {
    let mut said = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if said.ends_with(&text) {
            continue;
        }
        if !said.is_empty() {
            said.push_str(": ");
        }
        said.push_str(&text);
    }
    said
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

#[cfg(test)]
mod tests {
    #[test]
    fn a_cause_the_message_already_says_is_said_once() {
        let io = std::io::Error::other("Not a directory");
        let e = anyhow::Error::new(io).context("r/payload.json: Not a directory");
        assert_eq!(super::chain(&e), "r/payload.json: Not a directory");
        let e = anyhow::anyhow!("disk full").context("writing r/0.json");
        assert_eq!(super::chain(&e), "writing r/0.json: disk full");
        // A short cause said inside the message (not at its end) is kept.
        let e = anyhow::anyhow!("0").context("rank 0 failed");
        assert_eq!(super::chain(&e), "rank 0 failed: 0");
    }
}
