//! Time buckets on a zone's clock, as instants: an hour, a day, an ISO week
//! (from Monday) or a calendar month. When the clocks change, a day lasts 23
//! or 25 hours, and [`Bucket::hours`] says so.
//!
//! An hour bucket follows the instant's own offset, so the repeated hour of a
//! night when clocks go back is two buckets, each of one hour; days, weeks
//! and months start at the zone's midnight (or its first instant, when
//! midnight does not exist that day).

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Span, Timestamp};

/// How long each bucket is, on the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interval {
    Hour,
    Day,
    Week,
    Month,
}

impl Interval {
    pub fn parse(value: &str) -> Result<Self, String> {
        match value {
            "hour" => Ok(Self::Hour),
            "day" => Ok(Self::Day),
            "week" => Ok(Self::Week),
            "month" => Ok(Self::Month),
            _ => Err("expected hour, day, week or month".into()),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hour => "hour",
            Self::Day => "day",
            Self::Week => "week",
            Self::Month => "month",
        }
    }

    /// The shortest such a bucket can be, to bound how many a range holds.
    pub fn min_seconds(self) -> i64 {
        match self {
            Self::Hour => 3_600,
            Self::Day => 22 * 3_600,
            Self::Week => 6 * 24 * 3_600,
            Self::Month => 27 * 24 * 3_600,
        }
    }
}

/// `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    pub start: Timestamp,
    pub end: Timestamp,
}

impl Bucket {
    /// The bucket of `interval` that holds `instant`, on the clock of `tz`.
    pub fn containing(
        instant: Timestamp,
        interval: Interval,
        tz: &TimeZone,
    ) -> Result<Self, jiff::Error> {
        let local = instant.to_zoned(tz.clone());
        if interval == Interval::Hour {
            let into_hour = SignedDuration::new(
                i64::from(local.minute()) * 60 + i64::from(local.second()),
                local.subsec_nanosecond(),
            );
            let start = instant.checked_sub(into_hour)?;
            return Ok(Self {
                start,
                end: start.checked_add(SignedDuration::from_hours(1))?,
            });
        }
        let date = local.date();
        let (first, next) = match interval {
            Interval::Day => (date, date.tomorrow()?),
            Interval::Week => {
                let monday =
                    date.checked_sub(Span::new().days(date.weekday().to_monday_zero_offset()))?;
                (monday, monday.checked_add(Span::new().days(7))?)
            }
            _ => {
                let first = date.first_of_month();
                (first, first.checked_add(Span::new().months(1))?)
            }
        };
        Ok(Self {
            start: start_of(first, tz)?,
            end: start_of(next, tz)?,
        })
    }

    /// The bucket that follows this one.
    pub fn next(&self, interval: Interval, tz: &TimeZone) -> Result<Self, jiff::Error> {
        Self::containing(self.end, interval, tz)
    }

    /// Its length in whole hours: the hourly readings it can hold.
    pub fn hours(&self) -> i64 {
        let seconds = self.end.duration_since(self.start).as_secs();
        (seconds + 1_800) / 3_600
    }

    /// Whether it lies wholly inside `[start, end)`.
    pub fn within(&self, start: Timestamp, end: Timestamp) -> bool {
        self.start >= start && self.end <= end
    }
}

/// The first instant of `date` in `tz`.
fn start_of(date: Date, tz: &TimeZone) -> Result<Timestamp, jiff::Error> {
    Ok(date.to_zoned(tz.clone())?.timestamp())
}

/// RFC 3339 with the zone's offset at that instant (`2016-10-30T00:00:00+02:00`).
pub fn local_rfc3339(instant: Timestamp, tz: &TimeZone) -> String {
    let offset = tz.to_offset(instant);
    instant.display_with_offset(offset).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn madrid() -> TimeZone {
        TimeZone::get("Europe/Madrid").unwrap()
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn bucket(instant: &str, interval: Interval, tz: &TimeZone) -> (String, String, i64) {
        let b = Bucket::containing(at(instant), interval, tz).unwrap();
        (
            local_rfc3339(b.start, tz),
            local_rfc3339(b.end, tz),
            b.hours(),
        )
    }

    #[test]
    fn the_day_clocks_go_back_has_25_hours_and_the_day_they_go_forward_23() {
        assert_eq!(
            bucket("2016-10-30T12:00:00Z", Interval::Day, &madrid()),
            (
                "2016-10-30T00:00:00+02:00".into(),
                "2016-10-31T00:00:00+01:00".into(),
                25
            )
        );
        assert_eq!(
            bucket("2016-03-27T12:00:00Z", Interval::Day, &madrid()),
            (
                "2016-03-27T00:00:00+01:00".into(),
                "2016-03-28T00:00:00+02:00".into(),
                23
            )
        );
        assert_eq!(
            bucket("2016-10-29T12:00:00Z", Interval::Day, &madrid()).2,
            24
        );
    }

    #[test]
    fn a_day_is_the_zones_day_not_utcs() {
        // 23:30 UTC on the 1st is 01:30 on the 2nd in Madrid.
        assert_eq!(
            bucket("2016-10-01T23:30:00Z", Interval::Day, &madrid()).0,
            "2016-10-02T00:00:00+02:00"
        );
        assert_eq!(
            bucket("2016-10-01T23:30:00Z", Interval::Day, &TimeZone::UTC).0,
            "2016-10-01T00:00:00+00:00"
        );
    }

    #[test]
    fn the_repeated_hour_is_two_hour_buckets() {
        let first =
            Bucket::containing(at("2016-10-30T00:30:00Z"), Interval::Hour, &madrid()).unwrap();
        let second = first.next(Interval::Hour, &madrid()).unwrap();
        assert_eq!(
            local_rfc3339(first.start, &madrid()),
            "2016-10-30T02:00:00+02:00"
        );
        assert_eq!(
            local_rfc3339(second.start, &madrid()),
            "2016-10-30T02:00:00+01:00"
        );
        assert_eq!((first.hours(), second.hours()), (1, 1));
        assert_eq!(first.end, second.start);
    }

    #[test]
    fn hours_follow_half_hour_offsets() {
        let kolkata = TimeZone::get("Asia/Kolkata").unwrap();
        assert_eq!(
            bucket("2016-10-01T10:10:00Z", Interval::Hour, &kolkata).0,
            "2016-10-01T15:00:00+05:30"
        );
    }

    #[test]
    fn weeks_start_on_monday_and_months_on_the_first() {
        // 2016-10-30 is a Sunday.
        let (start, end, hours) = bucket("2016-10-30T12:00:00Z", Interval::Week, &madrid());
        assert_eq!(start, "2016-10-24T00:00:00+02:00");
        assert_eq!(end, "2016-10-31T00:00:00+01:00");
        assert_eq!(hours, 169);
        let (start, end, hours) = bucket("2016-10-30T12:00:00Z", Interval::Month, &madrid());
        assert_eq!(start, "2016-10-01T00:00:00+02:00");
        assert_eq!(end, "2016-11-01T00:00:00+01:00");
        assert_eq!(hours, 31 * 24 + 1);
    }

    #[test]
    fn a_midnight_that_does_not_exist_starts_the_day_at_its_first_instant() {
        // Santiago de Chile moved its clocks forward at midnight on 2016-08-14.
        let santiago = TimeZone::get("America/Santiago").unwrap();
        let (start, _, hours) = bucket("2016-08-14T12:00:00Z", Interval::Day, &santiago);
        assert_eq!(start, "2016-08-14T01:00:00-03:00");
        assert_eq!(hours, 23);
    }

    #[test]
    fn consecutive_buckets_tile_the_timeline() {
        let tz = madrid();
        for interval in [
            Interval::Hour,
            Interval::Day,
            Interval::Week,
            Interval::Month,
        ] {
            let mut b = Bucket::containing(at("2016-01-01T00:00:00Z"), interval, &tz).unwrap();
            for _ in 0..400 {
                let next = b.next(interval, &tz).unwrap();
                assert_eq!(b.end, next.start);
                assert!(next.end.duration_since(next.start).as_secs() >= interval.min_seconds());
                b = next;
            }
        }
    }
}
