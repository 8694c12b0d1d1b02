//! The current Air Quality Index of each station, by the European (EAQI) or
//! the U.S. EPA standard, from its latest 24 hours of readings.
//!
//! The breakpoints are data, not code: one versioned file per standard in
//! `api-rest/standards/`, citing its source, compiled in. Concentrations are
//! µg/m³, CO mg/m³, as measured; the EPA's gases are converted to its ppm
//! and ppb.

mod eaqi;
pub mod epa;

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use sqlx::{Postgres, QueryBuilder};
use time::PrimitiveDateTime;

use crate::encode::{CsvRow, Location, Record};
use crate::measurement::POLLUTANTS;
use crate::params::show;
use crate::stations::{STATION_COLUMNS, Station, StationFilter};
use crate::store::Snapshot;

/// Columns of [`crate::measurement::POLLUTANTS`].
const SO2: usize = 0;
const NO2: usize = 1;
const CO: usize = 2;
const O3: usize = 3;
const PM10: usize = 4;
const PM25: usize = 5;

/// Hours of readings an index is computed from.
const WINDOW_HOURS: usize = 24;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standard {
    Eaqi,
    UsEpa,
}

impl Standard {
    pub fn parse(value: &str) -> Result<Self, String> {
        match value {
            "eaqi" => Ok(Self::Eaqi),
            "us-epa" => Ok(Self::UsEpa),
            _ => Err("expected eaqi or us-epa".into()),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Eaqi => "eaqi",
            Self::UsEpa => "us-epa",
        }
    }

    fn version(self) -> &'static str {
        match self {
            Self::Eaqi => eaqi::version(),
            Self::UsEpa => epa::version(),
        }
    }
}

/// A station's readings in the clock hours (UTC) ending with its latest one.
#[derive(Debug, Clone, Default)]
pub struct Hours {
    /// Index 0 is the reference hour, 1 the hour before, and so on.
    values: [[Option<f64>; 6]; WINDOW_HOURS],
}

impl Hours {
    /// The readings of the hour `hours_ago` before the reference hour.
    pub fn set(&mut self, hours_ago: usize, values: [Option<f64>; 6]) {
        if let Some(slot) = self.values.get_mut(hours_ago) {
            *slot = values;
        }
    }

    fn at(&self, pollutant: usize, hours_ago: usize) -> Option<f64> {
        self.values.get(hours_ago)?[pollutant]
    }

    /// The last `count` hours of a pollutant, newest first.
    fn newest_first(&self, pollutant: usize, count: usize) -> Vec<Option<f64>> {
        (0..count).map(|ago| self.at(pollutant, ago)).collect()
    }

    /// The mean of the last `count` hours, if at least `needed` have a value.
    fn mean(&self, pollutant: usize, count: usize, needed: usize) -> Option<f64> {
        let values: Vec<f64> = self
            .newest_first(pollutant, count)
            .into_iter()
            .flatten()
            .collect();
        (values.len() >= needed).then(|| values.iter().sum::<f64>() / values.len() as f64)
    }
}

/// One pollutant's part of an index.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SubIndex {
    #[serde(skip)]
    pub pollutant: &'static str,
    /// As the standard takes it: averaged, converted, truncated.
    pub concentration: f64,
    pub unit: String,
    /// `1h`, `8h`, `24h` or `nowcast`.
    #[schema(value_type = String, example = "nowcast")]
    pub averaging: &'static str,
    /// The EPA's 0–500 value, or the EAQI level (1–6).
    #[serde(rename = "sub_index")]
    pub index: u32,
    /// The name of the sub-index's category.
    #[schema(value_type = Option<String>)]
    pub category: Option<&'static str>,
}

/// The sub-indices of an index; its JSON is an object keyed by pollutant,
/// naming only the pollutants the standard has and the data allowed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SubIndices(pub Vec<SubIndex>);

impl SubIndices {
    pub fn get(&self, pollutant: &str) -> Option<&SubIndex> {
        self.0.iter().find(|s| s.pollutant == pollutant)
    }
}

/// An object keyed by pollutant.
impl utoipa::PartialSchema for SubIndices {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::ToSchema;
        utoipa::openapi::schema::ObjectBuilder::new()
            .additional_properties(Some(utoipa::openapi::Ref::from_schema_name(
                SubIndex::name(),
            )))
            .into()
    }
}

impl Serialize for SubIndices {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for sub in &self.0 {
            map.serialize_entry(sub.pollutant, sub)?;
        }
        map.end()
    }
}

/// A category of a standard: its name and the color it is shown in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Category {
    #[schema(value_type = String, example = "Good")]
    pub name: &'static str,
    #[schema(value_type = String, example = "#50f0e6")]
    pub color: &'static str,
}

/// A station's index.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct StationIndex {
    #[serde(flatten)]
    pub station: Station,
    #[schema(value_type = String, example = "eaqi")]
    pub standard: &'static str,
    #[schema(value_type = String)]
    pub standard_version: &'static str,
    /// The reference hour: the one of the station's latest reading.
    pub time_instant: Option<String>,
    pub index: Option<u32>,
    pub category: Option<Category>,
    #[schema(value_type = Option<String>)]
    pub dominant: Option<&'static str>,
    #[schema(schema_with = <SubIndices as utoipa::PartialSchema>::schema)]
    pub pollutants: SubIndices,
    /// Why there is no index, when there is none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The index of a station of `station_type` from its last hours.
pub fn compute(
    standard: Standard,
    station: Station,
    reference: Option<PrimitiveDateTime>,
    hours: &Hours,
) -> StationIndex {
    let mut subs = match standard {
        Standard::Eaqi => eaqi::sub_indices(hours),
        Standard::UsEpa => epa::sub_indices(hours),
    };
    for sub in &mut subs {
        sub.category = category(standard, sub.index).map(|c| c.name);
    }
    let mut reason = None;
    if reference.is_none() {
        reason = Some("no readings".to_owned());
    } else if subs.is_empty() {
        reason = Some("not enough recent readings".to_owned());
    } else if standard == Standard::Eaqi
        && let Err(missing) = eaqi::enough(&station.station_type, &subs)
    {
        reason = Some(missing);
    }
    // The worst sub-index; ties go to the first in the standard's order.
    let worst = subs
        .iter()
        .fold(None::<&SubIndex>, |worst, s| match worst {
            Some(w) if w.index >= s.index => Some(w),
            _ => Some(s),
        })
        .filter(|_| reason.is_none());
    let (index, dominant) = (worst.map(|w| w.index), worst.map(|w| w.pollutant));
    StationIndex {
        station,
        standard: standard.as_str(),
        standard_version: standard.version(),
        time_instant: reference.map(show),
        index,
        category: index.and_then(|i| category(standard, i)),
        dominant,
        pollutants: SubIndices(subs),
        reason,
    }
}

/// The category of an index value.
fn category(standard: Standard, index: u32) -> Option<Category> {
    let (name, color) = match standard {
        Standard::Eaqi => eaqi::level(index).map(|l| (&l.name, &l.color))?,
        Standard::UsEpa => epa::category(index).map(|c| (&c.name, &c.color))?,
    };
    Some(Category { name, color })
}

impl Record for StationIndex {
    const LOCATED: bool = true;

    /// The station, the index, then per pollutant (all six, empty where the
    /// standard or the data has none) `so2_concentration`, `so2_unit`,
    /// `so2_averaging`, `so2_sub_index`.
    fn csv_header(row: &mut CsvRow<'_>) {
        row.names(&Station::CSV_HEADER);
        row.names(&[
            "standard",
            "standard_version",
            "time_instant",
            "index",
            "category",
            "color",
            "dominant",
            "reason",
        ]);
        for pollutant in POLLUTANTS {
            for part in ["concentration", "unit", "averaging", "sub_index"] {
                row.text(&format!("{pollutant}_{part}"));
            }
        }
        row.end();
    }

    fn csv_row(&self, row: &mut CsvRow<'_>) {
        self.station.csv_fields(row);
        row.text(self.standard);
        row.text(self.standard_version);
        row.opt_text(self.time_instant.as_deref());
        row.opt_integer(self.index);
        row.opt_text(self.category.map(|c| c.name));
        row.opt_text(self.category.map(|c| c.color));
        row.opt_text(self.dominant);
        row.opt_text(self.reason.as_deref());
        for pollutant in POLLUTANTS {
            let sub = self.pollutants.get(pollutant);
            row.opt_number(sub.map(|s| s.concentration));
            row.opt_text(sub.map(|s| s.unit.as_str()));
            row.opt_text(sub.map(|s| s.averaging));
            row.opt_integer(sub.map(|s| s.index));
        }
        row.end();
    }

    fn location(&self) -> Option<Location<'_>> {
        Some(self.station.location())
    }
}

#[derive(Debug, sqlx::FromRow)]
struct Row {
    #[sqlx(flatten)]
    station: Station,
    reference: Option<PrimitiveDateTime>,
    time_instant: Option<PrimitiveDateTime>,
    so2: Option<f64>,
    no2: Option<f64>,
    co: Option<f64>,
    o3: Option<f64>,
    pm10: Option<f64>,
    pm2_5: Option<f64>,
}

/// The index of every station `filter` picks: each station's latest hour
/// found by the primary key, then its last 24 hours read from it (both
/// LATERAL, so each is a probe of one station's range, never a join over
/// the table).
pub async fn read(
    snapshot: &mut Snapshot,
    filter: &StationFilter,
    standard: Standard,
) -> Result<Vec<StationIndex>, sqlx::Error> {
    let mut sql: QueryBuilder<Postgres> = QueryBuilder::new(format!(
        "SELECT {STATION_COLUMNS}, r.reference, m.time_instant, m.so2, m.no2, m.co, m.o3, m.pm10, m.pm2_5 \
           FROM stations s \
           CROSS JOIN LATERAL (SELECT date_trunc('hour', max(time_instant)) AS reference \
                                 FROM air_quality_measurements WHERE id_entity = s.id_entity) r \
           LEFT JOIN LATERAL (SELECT time_instant, so2, no2, co, o3, pm10, pm2_5 \
                                FROM air_quality_measurements \
                               WHERE id_entity = s.id_entity \
                                 AND time_instant >= r.reference - interval '{} hours') m ON true",
        WINDOW_HOURS - 1
    ));
    filter.push_where(&mut sql);
    sql.push(" ORDER BY s.id_entity, m.time_instant");
    let rows: Vec<Row> = sql
        .build_query_as()
        .fetch_all(snapshot.connection())
        .await?;
    Ok(group(rows, standard))
}

fn group(rows: Vec<Row>, standard: Standard) -> Vec<StationIndex> {
    let mut stations: Vec<(Station, Option<PrimitiveDateTime>, Hours)> = Vec::new();
    for row in rows {
        if stations
            .last()
            .is_none_or(|(s, _, _)| s.id_entity != row.station.id_entity)
        {
            stations.push((row.station.clone(), row.reference, Hours::default()));
        }
        if let (Some(reference), Some(time), Some((_, _, hours))) =
            (row.reference, row.time_instant, stations.last_mut())
            && let Ok(ago) = usize::try_from(unix_hour(reference) - unix_hour(time))
        {
            hours.set(ago, [row.so2, row.no2, row.co, row.o3, row.pm10, row.pm2_5]);
        }
    }
    stations
        .into_iter()
        .map(|(station, reference, hours)| compute(standard, station, reference, &hours))
        .collect()
}

/// Hours since the epoch (a stored time is UTC).
fn unix_hour(t: PrimitiveDateTime) -> i64 {
    t.assume_utc().unix_timestamp().div_euclid(3_600)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn station(station_type: &str) -> Station {
        Station {
            id_entity: "aq_x".into(),
            name: "X".into(),
            latitude: 37.0,
            longitude: -3.6,
            elevation_m: None,
            area: "urban".into(),
            station_type: station_type.into(),
            timezone: "Europe/Madrid".into(),
        }
    }

    fn steady(values: [Option<f64>; 6]) -> Hours {
        let mut hours = Hours::default();
        for ago in 0..WINDOW_HOURS {
            hours.set(ago, values);
        }
        hours
    }

    const NOW: Option<PrimitiveDateTime> = Some(time::macros::datetime!(2016-11-30 23:00));

    #[test]
    fn the_epa_index_is_the_worst_sub_index_and_names_its_pollutant() {
        // so2, no2, co (mg/m³), o3, pm10, pm2_5 (µg/m³).
        let hours = steady([
            Some(5.0),
            Some(30.0),
            Some(0.4),
            Some(60.0),
            Some(20.0),
            Some(35.9),
        ]);
        let index = compute(Standard::UsEpa, station("traffic"), NOW, &hours);
        assert_eq!(index.index, Some(102), "PM2.5 35.9 µg/m³");
        assert_eq!(index.dominant, Some("pm2_5"));
        assert_eq!(
            index.category.unwrap().name,
            "Unhealthy for Sensitive Groups"
        );
        assert_eq!(index.pollutants.get("pm2_5").unwrap().averaging, "nowcast");
        assert_eq!(index.pollutants.get("co").unwrap().unit, "ppm");
        assert_eq!(index.pollutants.get("no2").unwrap().unit, "ppb");
        let json = serde_json::to_value(&index).unwrap();
        assert_eq!(json["pollutants"]["pm2_5"]["sub_index"], 102);
        assert_eq!(
            json["pollutants"]["pm2_5"]["category"],
            "Unhealthy for Sensitive Groups"
        );
        assert_eq!(json["category"]["color"], index.category.unwrap().color);
        assert_eq!(index.standard_version, "2024-05-06");
    }

    #[test]
    fn the_eaqi_takes_pm_as_a_24_hour_mean_and_the_rest_hourly() {
        let mut hours = steady([
            Some(5.0),
            Some(30.0),
            Some(0.4),
            Some(60.0),
            Some(20.0),
            Some(8.0),
        ]);
        // A Poor last hour of PM2.5 (30 µg/m³) barely moves its 24-hour mean...
        hours.set(
            0,
            [
                Some(5.0),
                Some(250.0),
                Some(0.4),
                Some(60.0),
                Some(20.0),
                Some(30.0),
            ],
        );
        let index = compute(Standard::Eaqi, station("background"), NOW, &hours);
        assert_eq!(index.pollutants.get("pm2_5").unwrap().index, 1);
        // ...while NO2 is read hourly: 250 µg/m³ is Very poor.
        assert_eq!(index.index, Some(5));
        assert_eq!(index.dominant, Some("no2"));
        assert_eq!(index.category.unwrap().name, "Very poor");
        assert!(
            index.pollutants.get("co").is_none(),
            "CO is not in the EAQI"
        );
    }

    #[test]
    fn missing_readings_leave_no_index_and_say_why() {
        let index = compute(
            Standard::Eaqi,
            station("background"),
            None,
            &Hours::default(),
        );
        assert_eq!(index.index, None);
        assert_eq!(index.reason.as_deref(), Some("no readings"));
        let no_ozone = steady([Some(5.0), Some(30.0), None, None, Some(20.0), Some(8.0)]);
        let index = compute(Standard::Eaqi, station("background"), NOW, &no_ozone);
        assert_eq!(index.index, None);
        assert!(index.reason.unwrap().contains("o3"));
        assert_eq!(
            compute(Standard::Eaqi, station("traffic"), NOW, &no_ozone).index,
            Some(1),
            "traffic stations need no ozone"
        );
    }
}
