//! The latest reading of each pollutant at each station, each with its own
//! time (the newest non-empty values may come from different hours).
//!
//! Read from `air_quality_latest`, which triggers keep in the transaction that
//! changes the measurements: a few rows per station, whatever the table
//! holds, and never out of date.

use serde::Serialize;
use sqlx::{Postgres, QueryBuilder};
use time::PrimitiveDateTime;

use crate::encode::{CsvRow, Location, Record};
use crate::measurement::{POLLUTANTS, PerPollutant, as_utc_rfc3339, unit};
use crate::stations::{STATION_COLUMNS, Station, StationFilter};
use crate::store::Snapshot;

/// A station and its latest readings.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct StationLatest {
    #[serde(flatten)]
    pub station: Station,
    /// Per pollutant, null when it never had a reading.
    #[schema(schema_with = readings_schema)]
    pub readings: PerPollutant<Reading>,
}

fn readings_schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    <PerPollutant<Reading> as utoipa::PartialSchema>::schema()
}

/// The latest non-empty value of one pollutant.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Reading {
    pub value: f64,
    #[schema(value_type = String, example = "µg/m³")]
    pub unit: &'static str,
    #[serde(serialize_with = "as_utc_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub time_instant: PrimitiveDateTime,
}

impl Record for StationLatest {
    const LOCATED: bool = true;

    /// The station, then per pollutant its value and its time (`so2`,
    /// `so2_time_instant`, …); units as in JSON: µg/m³, CO mg/m³.
    fn csv_header(row: &mut CsvRow<'_>) {
        row.names(&Station::CSV_HEADER);
        for pollutant in POLLUTANTS {
            row.text(pollutant);
            row.text(&format!("{pollutant}_time_instant"));
        }
        row.end();
    }

    fn csv_row(&self, row: &mut CsvRow<'_>) {
        self.station.csv_fields(row);
        for (_, reading) in self.readings.iter() {
            row.opt_number(reading.map(|r| r.value));
            row.opt_time(reading.map(|r| r.time_instant));
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
    pollutant: Option<String>,
    time_instant: Option<PrimitiveDateTime>,
    value: Option<f64>,
}

/// The latest readings of the stations `filter` picks, in station order.
pub async fn read(
    snapshot: &mut Snapshot,
    filter: &StationFilter,
) -> Result<Vec<StationLatest>, sqlx::Error> {
    let mut sql: QueryBuilder<Postgres> = QueryBuilder::new(format!(
        "SELECT {STATION_COLUMNS}, l.pollutant, l.time_instant, l.value \
           FROM stations s LEFT JOIN air_quality_latest l ON l.id_entity = s.id_entity"
    ));
    filter.push_where(&mut sql);
    filter.push_order(&mut sql);
    let rows: Vec<Row> = sql
        .build_query_as()
        .fetch_all(snapshot.connection())
        .await?;
    Ok(group(rows))
}

/// One entry per station, every pollutant present (null when it has no reading).
fn group(rows: Vec<Row>) -> Vec<StationLatest> {
    let mut stations: Vec<StationLatest> = Vec::new();
    for row in rows {
        if stations
            .last()
            .is_none_or(|s| s.station.id_entity != row.station.id_entity)
        {
            stations.push(StationLatest {
                station: row.station,
                readings: PerPollutant::default(),
            });
        }
        if let (Some(pollutant), Some(time), Some(value), Some(station)) = (
            row.pollutant,
            row.time_instant,
            row.value,
            stations.last_mut(),
        ) {
            let reading = Reading {
                value,
                unit: unit(&pollutant),
                time_instant: time,
            };
            station.readings.set(&pollutant, reading);
        }
    }
    stations
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn station(id: &str) -> Station {
        Station {
            id_entity: id.into(),
            name: id.into(),
            latitude: 37.0,
            longitude: -3.0,
            elevation_m: None,
            area: "urban".into(),
            station_type: "traffic".into(),
            timezone: "Europe/Madrid".into(),
        }
    }

    #[test]
    fn rows_become_one_entry_per_station_with_every_pollutant() {
        let rows = vec![
            Row {
                station: station("a"),
                pollutant: Some("co".into()),
                time_instant: Some(datetime!(2016-10-01 05:00)),
                value: Some(0.3),
            },
            Row {
                station: station("a"),
                pollutant: Some("no2".into()),
                time_instant: Some(datetime!(2016-10-01 04:00)),
                value: Some(20.0),
            },
            Row {
                station: station("b"),
                pollutant: None,
                time_instant: None,
                value: None,
            },
        ];
        let latest = group(rows);
        assert_eq!(latest.len(), 2);
        let json = serde_json::to_value(&latest[0].readings).unwrap();
        assert_eq!(json.as_object().unwrap().len(), 6);
        assert_eq!(
            json["co"],
            serde_json::json!({"value": 0.3, "unit": "mg/m³", "time_instant": "2016-10-01T05:00:00Z"})
        );
        assert_eq!(json["no2"]["unit"], "µg/m³");
        assert_eq!(json["so2"], serde_json::Value::Null);
        assert!(latest[1].readings.iter().all(|(_, r)| r.is_none()));
    }
}
