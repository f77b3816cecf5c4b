//! A Lambda rank's deadline, from when its Infer state was entered, and the
//! RFC 3339 times Step Functions gives.

use crate::StageError;
use cosmicai_engine::pipeline::RANK_STOP_S;

/// When a Lambda rank must stop: [`RANK_STOP_S`] after its Infer state was
/// entered, checked after each batch and before its files are written. Step
/// Functions times the task out at
/// [`EXPRESS_RANK_TIMEOUT_S`](cosmicai_engine::pipeline::EXPRESS_RANK_TIMEOUT_S) and stops the Express
/// child at 5 minutes, but not the Lambda call it made, which would run on to the
/// function's own timeout, holding reserved concurrency and perhaps writing its
/// rank after Summarize has read.
#[derive(Debug, Clone, Copy)]
pub struct RankDeadline {
    entered_epoch_s: f64,
}

impl RankDeadline {
    /// From `$$.State.EnteredTime` (RFC 3339, `Z` or an offset).
    pub fn after(entered_at: &str) -> Result<Self, StageError> {
        epoch_seconds(entered_at)
            .map(|entered_epoch_s| RankDeadline { entered_epoch_s })
            .ok_or_else(|| {
                StageError::invalid(format!("entered_at '{entered_at}' is not an RFC 3339 time"))
            })
    }

    /// Seconds since the rank's Infer state began.
    pub fn used_s(&self) -> f64 {
        aws_smithy_types::DateTime::from(std::time::SystemTime::now()).as_secs_f64()
            - self.entered_epoch_s
    }

    /// An error once the rank has had its time.
    pub fn check(&self) -> Result<(), StageError> {
        let used = self.used_s();
        if used < RANK_STOP_S {
            return Ok(());
        }
        Err(StageError::out_of_time(format!(
            "the rank stopped {used:.0} s after its Infer state began, at the {RANK_STOP_S:.0} s \
             it may use of an Express child execution; it wrote no results. A larger \
             world_size gives each rank fewer files"
        )))
    }
}

/// Seconds from an RFC 3339 time (the execution's start) until now.
pub(crate) fn seconds_since(rfc3339: &str) -> Option<f64> {
    let now = aws_smithy_types::DateTime::from(std::time::SystemTime::now());
    let s = now.as_secs_f64() - epoch_seconds(rfc3339)?;
    (s >= 0.0).then_some(s)
}

/// Seconds since 1970 of an RFC 3339 time.
pub(crate) fn epoch_seconds(rfc3339: &str) -> Option<f64> {
    use aws_smithy_types::date_time::{DateTime, Format};
    // Smithy reads `Z` times; an offset (`+00:00`, as moto writes) is applied by hand.
    let split = rfc3339
        .len()
        .checked_sub(6)
        .and_then(|i| rfc3339.split_at_checked(i));
    let (utc, offset_s) = match split {
        Some((time, offset))
            if (offset.starts_with('+') || offset.starts_with('-'))
                && offset.as_bytes()[3] == b':' =>
        {
            let hours: f64 = offset[1..3].parse().ok()?;
            let minutes: f64 = offset[4..].parse().ok()?;
            let sign = if offset.starts_with('-') { -1.0 } else { 1.0 };
            (format!("{time}Z"), sign * (hours * 3600.0 + minutes * 60.0))
        }
        _ => (rfc3339.to_string(), 0.0),
    };
    let time = DateTime::from_str(&utc, Format::DateTime).ok()?;
    Some(time.as_secs_f64() - offset_s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rank_stops_once_its_express_time_is_used() {
        use aws_smithy_types::date_time::{DateTime, Format};
        let ago = |s: i64| {
            let now = DateTime::from(std::time::SystemTime::now()).secs();
            DateTime::from_secs(now - s).fmt(Format::DateTime).unwrap()
        };
        assert!(RankDeadline::after(&ago(0)).unwrap().check().is_ok());
        assert!(RankDeadline::after(&ago(-60)).unwrap().check().is_ok()); // a clock ahead
        assert!(
            RankDeadline::after(&ago(RANK_STOP_S as i64 - 5))
                .unwrap()
                .check()
                .is_ok()
        );
        let late = RankDeadline::after(&ago(RANK_STOP_S as i64 + 1))
            .unwrap()
            .check()
            .unwrap_err();
        assert_eq!(late.kind, "RankOutOfTime");
        assert!(late.message.contains("it wrote no results"), "{late}");
        // As moto writes it, with an offset.
        let moto = RankDeadline::after("2020-01-01T00:00:00.176423+00:00").unwrap();
        assert_eq!(moto.check().unwrap_err().kind, "RankOutOfTime");
        let bad = RankDeadline::after("soon").unwrap_err();
        assert_eq!(bad.kind, "InvalidRequest");
        assert!(bad.message.contains("entered_at 'soon'"), "{bad}");
    }

    #[test]
    fn rfc3339_start_times_are_read() {
        assert!(seconds_since("2020-01-01T00:00:00Z").is_some_and(|s| s > 1e8));
        let z = seconds_since("2020-01-01T00:00:00Z").unwrap();
        let moto = seconds_since("2020-01-01T00:00:00.176423+00:00").unwrap();
        assert!((z - moto - 0.176423).abs() < 0.01, "{z} {moto}");
        // 02:00 at +02:00 is midnight UTC.
        let east = seconds_since("2020-01-01T02:00:00+02:00").unwrap();
        assert!((z - east).abs() < 0.01, "{z} {east}");
        assert!(seconds_since("yesterday").is_none());
        assert!(seconds_since("2020-01-01T00:00:00Zéé").is_none());
        assert!(seconds_since("2999-01-01T00:00:00Z").is_none());
    }
}
