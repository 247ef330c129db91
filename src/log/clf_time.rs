//! `10/Oct/2000:13:55:36 +0000`, the time format of nginx's and Apache's access logs.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::calendar::civil_from_days;

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Formats `time` in UTC as nginx's `$time_local` would on a UTC machine.
#[cfg(test)]
pub(crate) fn format(time: SystemTime) -> String {
    let mut out = Vec::new();
    write(&mut out, time);
    String::from_utf8(out).unwrap_or_default()
}

/// Appends `time` in UTC as nginx's `$time_local` would on a UTC machine. The text of the
/// current second is kept per thread: a busy log formats the date once a second.
pub(crate) fn write(out: &mut Vec<u8>, time: SystemTime) {
    use std::cell::RefCell;
    thread_local! {
        static LAST: RefCell<(u64, [u8; 26])> = const { RefCell::new((u64::MAX, [0; 26])) };
    }
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        if last.0 != secs {
            let (days, rem) = (secs / 86_400, secs % 86_400);
            let (year, month, day) = civil_from_days(days as i64);
            let mut text = [0u8; 26];
            let mut cursor = &mut text[..];
            let _ = std::io::Write::write_fmt(
                &mut cursor,
                format_args!(
                    "{day:02}/{}/{year:04}:{:02}:{:02}:{:02} +0000",
                    MONTHS[(month - 1) as usize],
                    rem / 3600,
                    rem % 3600 / 60,
                    rem % 60
                ),
            );
            *last = (secs, text);
        }
        out.extend_from_slice(&last.1);
    });
}

/// Appends `time` in UTC as RFC 3339 with microseconds (`2026-12-04T19:59:24.324224Z`), as
/// `tracing-subscriber` writes its timestamps.
pub(crate) fn write_rfc3339(out: &mut Vec<u8>, time: SystemTime) {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    let _ = std::io::Write::write_fmt(
        out,
        format_args!(
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60,
            since.subsec_micros()
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_like_nginx() {
        let t = UNIX_EPOCH + Duration::from_secs(971_185_336);
        assert_eq!(format(t), "10/Oct/2000:13:42:16 +0000");
        assert_eq!(format(UNIX_EPOCH), "01/Jan/1970:00:00:00 +0000");
        let leap = UNIX_EPOCH + Duration::from_secs(1_709_164_800); // 2024-02-29
        assert_eq!(format(leap), "29/Feb/2024:00:00:00 +0000");
    }

    #[test]
    fn rfc3339_has_microseconds_and_utc() {
        let t = UNIX_EPOCH + Duration::from_micros(971_185_336_000_042);
        let mut out = Vec::new();
        write_rfc3339(&mut out, t);
        assert_eq!(out, b"2000-10-10T13:42:16.000042Z");
    }
}
