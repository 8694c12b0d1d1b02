//! Aggregates: per station and bucket (an hour, day, week or month on the
//! clock of `tz`, by default each station's own), how many hourly readings
//! there are against how many the bucket can hold, and per pollutant the
//! mean, minimum, maximum and 95th percentile.
//!
//! The range is half-open, `[from, to)`, and by default each station's own
//! data. Buckets are written for the part of the range a station has data
//! in, empty ones included (an outage shows as coverage 0); a bucket is
//! `complete` only when it lies wholly inside both the range and the data.
//!
//! Rows are read one station at a time, in time order, from the covering
//! primary key, and folded into buckets as they arrive: memory holds one
//! bucket, whatever the range.

pub mod buckets;
pub mod tally;

use futures_util::{Stream, TryStreamExt};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::Serialize;
use time::{OffsetDateTime, PrimitiveDateTime};

use self::buckets::{Bucket, Interval, local_rfc3339};
use self::tally::{Stats, Tally, round};
use crate::encode::{CsvRow, Format, Record, offered};
use crate::error::ApiError;
use crate::measurement::{POLLUTANTS, PerPollutant};
use crate::params::{self, InvalidParam, Params, show};
use crate::query::{canonical_stations, check_range};
use crate::store::Snapshot;

/// The parameters `/air_quality/aggregates` accepts.
pub const PARAMETERS: &[&str] = &["interval", "from", "to", "id_entity", "tz", "format"];

/// Most buckets one answer may hold, over all its stations.
pub const MAX_BUCKETS: i64 = 100_000;

/// A validated request for aggregates.
#[derive(Debug, Clone)]
pub struct AggregateQuery {
    pub interval: Interval,
    pub from: Option<PrimitiveDateTime>,
    pub to: Option<PrimitiveDateTime>,
    pub stations: Vec<String>,
    /// The zone every bucket is computed in; `None`: each station's own.
    pub tz: Option<Zone>,
    /// The `format` parameter, if given.
    pub format: Option<Format>,
}

/// An IANA time zone and its name.
#[derive(Debug, Clone)]
pub struct Zone {
    pub name: String,
    pub tz: TimeZone,
}

impl Zone {
    fn named(name: &str) -> Result<Self, String> {
        TimeZone::get(name)
            .map(|tz| Self {
                name: name.to_owned(),
                tz,
            })
            .map_err(|_| "expected an IANA time zone name, e.g. Europe/Madrid or UTC".to_owned())
    }
}

impl AggregateQuery {
    pub fn parse(raw: Option<&str>) -> Result<Self, Vec<InvalidParam>> {
        let mut params = Params::parse(raw, PARAMETERS);
        let interval = params.require("interval", Interval::parse);
        let query = Self {
            interval: interval.unwrap_or(Interval::Day),
            from: params.get("from", params::instant),
            to: params.get("to", params::instant),
            stations: params
                .get("id_entity", params::stations)
                .unwrap_or_default(),
            tz: params.get("tz", Zone::named),
            format: params.get("format", |v| Format::parse_among(v, offered::<Summary>())),
        };
        check_range(&mut params, query.from, query.to);
        params.finish(query)
    }

    /// One text per distinct answer.
    pub fn canonical(&self) -> String {
        let show_opt = |t: Option<PrimitiveDateTime>| t.map(show).unwrap_or_default();
        format!(
            "interval={}&from={}&to={}&id_entity={}&tz={}",
            self.interval.as_str(),
            show_opt(self.from),
            show_opt(self.to),
            canonical_stations(&self.stations),
            self.tz.as_ref().map_or("", |z| z.name.as_str()),
        )
    }
}

/// One station's part of an answer: where its buckets start and end.
#[derive(Debug, Clone)]
pub struct StationRange {
    pub id_entity: String,
    pub zone: Zone,
    /// Where buckets are written: the range met with the station's data. A
    /// bucket is complete when it lies inside.
    pub start: Timestamp,
    pub end: Timestamp,
}

/// One row of a station: its time and readings (the station is known).
#[derive(Debug, Clone, sqlx::FromRow)]
struct Reading {
    time_instant: PrimitiveDateTime,
    so2: Option<f64>,
    no2: Option<f64>,
    co: Option<f64>,
    o3: Option<f64>,
    pm10: Option<f64>,
    pm2_5: Option<f64>,
}

impl Reading {
    fn values(&self) -> [Option<f64>; 6] {
        [self.so2, self.no2, self.co, self.o3, self.pm10, self.pm2_5]
    }
}

/// Why an aggregate cannot be answered.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// More buckets than [`MAX_BUCKETS`].
    #[error("{0} buckets")]
    TooManyBuckets(i64),
    /// A station's zone the bundled time-zone database does not know.
    #[error("station {station} has the unknown time zone {zone}")]
    UnknownZone { station: String, zone: String },
}

#[derive(Debug, sqlx::FromRow)]
struct Span {
    id_entity: String,
    timezone: String,
    first: Option<PrimitiveDateTime>,
    last: Option<PrimitiveDateTime>,
}

/// The stations of `query` with data in its range, and where their buckets go.
pub async fn plan(
    snapshot: &mut Snapshot,
    query: &AggregateQuery,
) -> Result<Vec<StationRange>, PlanError> {
    let spans: Vec<Span> = sqlx::query_as(
        "SELECT s.id_entity, s.timezone, p.first_time AS first, p.last_time AS last \
           FROM stations s LEFT JOIN air_quality_spans p ON p.id_entity = s.id_entity \
          WHERE cardinality($1::text[]) = 0 OR s.id_entity = ANY($1) \
          ORDER BY s.id_entity",
    )
    .bind(&query.stations)
    .fetch_all(snapshot.connection())
    .await?;
    let mut ranges = Vec::new();
    let mut buckets = 0;
    for span in spans {
        let (Some(first), Some(last)) = (span.first, span.last) else {
            continue;
        };
        let zone = match &query.tz {
            Some(zone) => zone.clone(),
            None => Zone::named(&span.timezone).map_err(|_| PlanError::UnknownZone {
                station: span.id_entity.clone(),
                zone: span.timezone.clone(),
            })?,
        };
        // Readings are hourly: the data covers whole hours.
        let data_start = floor_hour(timestamp(first));
        let data_end = floor_hour(timestamp(last)) + jiff::SignedDuration::from_hours(1);
        let from = query.from.map(timestamp).unwrap_or(data_start);
        let to = query.to.map(timestamp).unwrap_or(data_end);
        let (start, end) = (from.max(data_start), to.min(data_end));
        if start >= end {
            continue;
        }
        buckets += end.duration_since(start).as_secs() / query.interval.min_seconds() + 2;
        ranges.push(StationRange {
            id_entity: span.id_entity,
            zone,
            start,
            end,
        });
    }
    if buckets > MAX_BUCKETS {
        return Err(PlanError::TooManyBuckets(buckets));
    }
    Ok(ranges)
}

/// The buckets, one record each, station after station, read as the
/// caller consumes them.
pub fn stream(
    snapshot: Snapshot,
    interval: Interval,
    ranges: Vec<StationRange>,
) -> impl Stream<Item = Result<Summary, ApiError>> + Send + 'static {
    let internal = |error: jiff::Error| ApiError::Internal(error.to_string());
    async_stream::try_stream! {
        let mut snapshot = snapshot;
        for range in &ranges {
            let mut folder = Folder::new(range, interval).map_err(internal)?;
            let mut rows = sqlx::query_as::<_, Reading>(
                "SELECT time_instant, so2, no2, co, o3, pm10, pm2_5 \
                   FROM air_quality_measurements \
                  WHERE id_entity = $1 AND time_instant >= $2 AND time_instant < $3 \
                  ORDER BY time_instant",
            )
            .bind(&range.id_entity)
            .bind(primitive(range.start))
            .bind(primitive(range.end))
            .fetch(snapshot.connection());
            while let Some(row) = rows.try_next().await? {
                for bucket in folder.add(&row).map_err(internal)? {
                    yield bucket;
                }
            }
            drop(rows);
            for bucket in folder.finish().map_err(internal)? {
                yield bucket;
            }
        }
        snapshot.finish().await;
    }
}

/// One bucket of one station.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Summary {
    pub id_entity: String,
    /// The zone the bucket is on the clock of.
    pub tz: String,
    /// RFC 3339 with the zone's offset.
    pub start: String,
    pub end: String,
    /// Whether it lies wholly inside both the range and the data.
    pub complete: bool,
    /// Rows in the bucket.
    pub count: u64,
    /// Hourly readings the bucket can hold.
    pub expected: i64,
    /// Hours with a reading / `expected`, four decimals.
    pub coverage: f64,
    /// Per pollutant, null where it has no value in the bucket.
    #[schema(schema_with = stats_schema)]
    pub pollutants: PerPollutant<Stats>,
}

fn stats_schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    <PerPollutant<Stats> as utoipa::PartialSchema>::schema()
}

impl Record for Summary {
    /// The bucket, then per pollutant `so2_count`, `so2_mean`, `so2_min`,
    /// `so2_max`, `so2_p95` (units as in JSON: µg/m³, CO mg/m³).
    fn csv_header(row: &mut CsvRow<'_>) {
        row.names(&[
            "id_entity",
            "tz",
            "start",
            "end",
            "complete",
            "count",
            "expected",
            "coverage",
        ]);
        for pollutant in POLLUTANTS {
            for figure in ["count", "mean", "min", "max", "p95"] {
                row.text(&format!("{pollutant}_{figure}"));
            }
        }
        row.end();
    }

    fn csv_row(&self, row: &mut CsvRow<'_>) {
        row.text(&self.id_entity);
        row.text(&self.tz);
        row.text(&self.start);
        row.text(&self.end);
        row.boolean(self.complete);
        row.integer(self.count);
        row.integer(self.expected);
        row.number(self.coverage);
        for (_, stats) in self.pollutants.iter() {
            row.opt_integer(stats.map(|s| s.count));
            row.opt_number(stats.map(|s| s.mean));
            row.opt_number(stats.map(|s| s.min));
            row.opt_number(stats.map(|s| s.max));
            row.opt_number(stats.map(|s| s.p95));
        }
        row.end();
    }
}

/// Folds one station's rows, in time order, into its buckets.
struct Folder<'a> {
    range: &'a StationRange,
    interval: Interval,
    bucket: Bucket,
    tally: Tally,
}

impl<'a> Folder<'a> {
    fn new(range: &'a StationRange, interval: Interval) -> Result<Self, jiff::Error> {
        Ok(Self {
            range,
            interval,
            bucket: Bucket::containing(range.start, interval, &range.zone.tz)?,
            tally: Tally::default(),
        })
    }

    /// Adds a row; returns the buckets it closes.
    fn add(&mut self, row: &Reading) -> Result<Vec<Summary>, jiff::Error> {
        let instant = timestamp(row.time_instant);
        let mut closed = Vec::new();
        while instant >= self.bucket.end {
            closed.push(self.close()?);
        }
        self.tally
            .add(instant.as_second().div_euclid(3_600), row.values());
        Ok(closed)
    }

    /// The buckets left up to the end of the range.
    fn finish(mut self) -> Result<Vec<Summary>, jiff::Error> {
        let mut closed = Vec::new();
        while self.bucket.start < self.range.end {
            closed.push(self.close()?);
        }
        Ok(closed)
    }

    /// The current bucket's summary; the next one becomes current.
    fn close(&mut self) -> Result<Summary, jiff::Error> {
        let tally = std::mem::take(&mut self.tally);
        let value = summary(self.range, &self.bucket, tally);
        self.bucket = self.bucket.next(self.interval, &self.range.zone.tz)?;
        Ok(value)
    }
}

fn summary(range: &StationRange, bucket: &Bucket, mut tally: Tally) -> Summary {
    let tz = &range.zone.tz;
    let expected = bucket.hours();
    let coverage = if expected > 0 {
        round(tally.hours as f64 / expected as f64)
    } else {
        0.0
    };
    let mut pollutants = PerPollutant::default();
    for (pollutant, stats) in tally.stats() {
        if let Some(stats) = stats {
            pollutants.set(pollutant, stats);
        }
    }
    Summary {
        id_entity: range.id_entity.clone(),
        tz: range.zone.name.clone(),
        start: local_rfc3339(bucket.start, tz),
        end: local_rfc3339(bucket.end, tz),
        complete: bucket.within(range.start, range.end),
        count: tally.rows,
        expected,
        coverage,
        pollutants,
    }
}

/// A stored time (UTC) as an instant.
fn timestamp(t: PrimitiveDateTime) -> Timestamp {
    let utc = t.assume_utc();
    Timestamp::new(
        utc.unix_timestamp(),
        i32::try_from(utc.nanosecond()).unwrap_or(0),
    )
    .unwrap_or(Timestamp::UNIX_EPOCH)
}

/// An instant as a stored time (UTC).
fn primitive(t: Timestamp) -> PrimitiveDateTime {
    let utc = OffsetDateTime::from_unix_timestamp_nanos(t.as_nanosecond())
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    PrimitiveDateTime::new(utc.date(), utc.time())
}

fn floor_hour(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second().div_euclid(3_600) * 3_600).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn range(start: &str, end: &str, zone: &str) -> StationRange {
        let (start, end): (Timestamp, Timestamp) = (start.parse().unwrap(), end.parse().unwrap());
        StationRange {
            id_entity: "aq_jaen".into(),
            zone: Zone::named(zone).unwrap(),
            start,
            end,
        }
    }

    fn row(t: PrimitiveDateTime, no2: f64) -> Reading {
        Reading {
            time_instant: t,
            so2: None,
            no2: Some(no2),
            co: None,
            o3: None,
            pm10: None,
            pm2_5: None,
        }
    }

    #[test]
    fn rows_fold_into_days_of_the_zone_with_empty_days_and_edges_marked() {
        // 2016-10-29 09:00 Madrid to 2016-11-01 00:00 Madrid; the 30th has 25 hours.
        let range = range(
            "2016-10-29T07:00:00Z",
            "2016-10-31T23:00:00Z",
            "Europe/Madrid",
        );
        let mut folder = Folder::new(&range, Interval::Day).unwrap();
        let mut out = Vec::new();
        // Every hour of the 30th (Madrid), nothing on the 31st.
        let mut t = datetime!(2016-10-29 22:00);
        while t < datetime!(2016-10-30 23:00) {
            out.extend(folder.add(&row(t, 10.0)).unwrap());
            t += time::Duration::HOUR;
        }
        out.extend(folder.finish().unwrap());
        let out: Vec<serde_json::Value> = out
            .iter()
            .map(|s| serde_json::to_value(s).unwrap())
            .collect();
        assert_eq!(out.len(), 3);
        assert_eq!(out[0]["start"], "2016-10-29T00:00:00+02:00");
        assert_eq!(out[0]["complete"], false, "starts before the range");
        assert_eq!(out[0]["count"], 0);
        assert_eq!(out[1]["start"], "2016-10-30T00:00:00+02:00");
        assert_eq!(
            (out[1]["count"].clone(), out[1]["expected"].clone()),
            (serde_json::json!(25), serde_json::json!(25))
        );
        assert_eq!(out[1]["coverage"], 1.0);
        assert_eq!(out[1]["complete"], true);
        assert_eq!(out[1]["pollutants"]["no2"]["mean"], 10.0);
        assert_eq!(out[1]["pollutants"]["so2"], serde_json::Value::Null);
        assert_eq!(out[2]["count"], 0, "an outage shows");
        assert_eq!(out[2]["coverage"], 0.0);
        assert_eq!(out[2]["complete"], true);
    }

    #[test]
    fn the_interval_is_required_and_the_zone_must_exist() {
        let names = |raw: &str| -> Vec<String> {
            AggregateQuery::parse(Some(raw))
                .unwrap_err()
                .into_iter()
                .map(|e| e.name)
                .collect()
        };
        assert_eq!(names("from=2016-10-01"), ["interval"]);
        assert_eq!(names("interval=fortnight"), ["interval"]);
        assert_eq!(names("interval=day&tz=Mars/Olympus"), ["tz"]);
        assert_eq!(
            names("interval=day&from=2016-10-02&to=2016-10-01"),
            ["from", "to"]
        );
        assert!(AggregateQuery::parse(Some("interval=week&tz=UTC")).is_ok());
    }

    #[test]
    fn instants_round_trip_between_the_two_time_libraries() {
        let t = datetime!(2016-10-30 01:00:00.018);
        assert_eq!(primitive(timestamp(t)), t);
        assert_eq!(
            floor_hour(timestamp(t)),
            "2016-10-30T01:00:00Z".parse::<Timestamp>().unwrap()
        );
    }
}
