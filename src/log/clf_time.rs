//! `10/Oct/2000:13:55:36 +0000`, the time format of nginx's and Apache's access logs.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::calendar::civil_from_days;

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Formats `time` in UTC as nginx's `$time_local` would on a UTC machine.
pub(crate) fn format(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{day:02}/{}/{year}:{:02}:{:02}:{:02} +0000",
        MONTHS[(month - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
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
}
