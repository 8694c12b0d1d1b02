//! Stations: what the `stations` table holds, how a request picks some
//! (`id_entity`, `bbox`, `near` + `radius_km`), and their columns and place
//! in every format, shared by every endpoint that answers per station.

use serde::Serialize;
use sqlx::{Postgres, QueryBuilder};
use time::PrimitiveDateTime;

use crate::encode::{CsvRow, Location, Record};
use crate::measurement::as_utc_rfc3339_opt;
use crate::params::{self, BoundingBox, Near, Params};
use crate::query::canonical_stations;
use crate::store::Snapshot;

/// The mean radius of the Earth (IUGG), for great-circle distances.
const EARTH_RADIUS_KM: f64 = 6371.0088;

/// One row of `stations`.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, Serialize, utoipa::ToSchema)]
pub struct Station {
    pub id_entity: String,
    pub name: String,
    pub latitude: f64,
    pub longitude: f64,
    pub elevation_m: Option<f64>,
    pub area: String,
    pub station_type: String,
    /// IANA time zone.
    pub timezone: String,
}

/// The columns of [`Station`], for `s`, the stations table.
pub const STATION_COLUMNS: &str = "s.id_entity, s.name, s.latitude, s.longitude, s.elevation_m, s.area, s.station_type, s.timezone";

impl Station {
    /// The CSV names of a station's columns.
    pub const CSV_HEADER: [&str; 8] = [
        "id_entity",
        "name",
        "latitude",
        "longitude",
        "elevation_m",
        "area",
        "station_type",
        "timezone",
    ];

    /// The station's CSV fields, in [`Station::CSV_HEADER`] order.
    pub fn csv_fields(&self, row: &mut CsvRow<'_>) {
        row.text(&self.id_entity);
        row.text(&self.name);
        row.number(self.latitude);
        row.number(self.longitude);
        row.opt_number(self.elevation_m);
        row.text(&self.area);
        row.text(&self.station_type);
        row.text(&self.timezone);
    }

    /// Where it is, for GeoJSON.
    pub fn location(&self) -> Location<'_> {
        Location {
            id: &self.id_entity,
            longitude: self.longitude,
            latitude: self.latitude,
        }
    }
}

/// A station as `/stations` lists it: with the span of its measurements and,
/// for `near`, its distance.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, Serialize, utoipa::ToSchema)]
pub struct StationListing {
    #[sqlx(flatten)]
    #[serde(flatten)]
    pub station: Station,
    #[serde(serialize_with = "as_utc_rfc3339_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub first_measurement: Option<PrimitiveDateTime>,
    #[serde(serialize_with = "as_utc_rfc3339_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_measurement: Option<PrimitiveDateTime>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distance_km: Option<f64>,
}

impl Record for StationListing {
    const LOCATED: bool = true;

    fn csv_header(row: &mut CsvRow<'_>) {
        row.names(&Station::CSV_HEADER);
        row.names(&["first_measurement", "last_measurement", "distance_km"]);
        row.end();
    }

    fn csv_row(&self, row: &mut CsvRow<'_>) {
        self.station.csv_fields(row);
        row.opt_time(self.first_measurement);
        row.opt_time(self.last_measurement);
        row.opt_number(self.distance_km);
        row.end();
    }

    fn location(&self) -> Option<Location<'_>> {
        Some(self.station.location())
    }
}

/// Which stations a request is about; empty means all.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StationFilter {
    pub ids: Vec<String>,
    pub bbox: Option<BoundingBox>,
    pub near: Option<Near>,
}

impl StationFilter {
    /// Reads `id_entity`, `bbox`, and `near` with `radius_km`.
    pub fn read(params: &mut Params) -> Self {
        Self {
            ids: params
                .get("id_entity", params::stations)
                .unwrap_or_default(),
            bbox: params.get("bbox", params::bbox),
            near: params::near(params),
        }
    }

    /// The parameters [`StationFilter::read`] takes.
    pub const PARAMETERS: &[&str] = &["id_entity", "bbox", "near", "radius_km"];

    /// One text per distinct filter.
    pub fn canonical(&self) -> String {
        format!(
            "id_entity={}&bbox={:?}&near={:?}",
            canonical_stations(&self.ids),
            self.bbox,
            self.near
        )
    }

    /// `WHERE …` on `s` (the stations table), every value bound.
    pub fn push_where(&self, sql: &mut QueryBuilder<Postgres>) {
        sql.push(" WHERE true");
        if !self.ids.is_empty() {
            sql.push(" AND s.id_entity = ANY(")
                .push_bind(self.ids.clone())
                .push(")");
        }
        if let Some(b) = self.bbox {
            sql.push(" AND s.latitude BETWEEN ")
                .push_bind(b.min_lat)
                .push(" AND ")
                .push_bind(b.max_lat);
            // West of east: an ordinary box; else it crosses the antimeridian.
            let joiner = if b.min_lon <= b.max_lon {
                " AND "
            } else {
                " OR "
            };
            sql.push(" AND (s.longitude >= ")
                .push_bind(b.min_lon)
                .push(joiner)
                .push("s.longitude <= ")
                .push_bind(b.max_lon)
                .push(")");
        }
        if let Some(near) = self.near {
            sql.push(" AND ");
            push_distance(sql, near);
            sql.push(" <= ").push_bind(near.radius_km);
        }
    }

    /// The `ORDER BY` of a listing: nearest first for `near`, else by id.
    pub fn push_order(&self, sql: &mut QueryBuilder<Postgres>) {
        match self.near {
            Some(near) => {
                sql.push(" ORDER BY ");
                push_distance(sql, near);
                sql.push(", s.id_entity");
            }
            None => {
                sql.push(" ORDER BY s.id_entity");
            }
        }
    }
}

/// The great-circle distance in km from `near` to station `s` (haversine).
pub fn push_distance(sql: &mut QueryBuilder<Postgres>, near: Near) {
    sql.push("(2 * ")
        .push_bind(EARTH_RADIUS_KM)
        .push(" * asin(least(1, sqrt(power(sin(radians(s.latitude - ")
        .push_bind(near.latitude)
        .push(") / 2), 2) + cos(radians(")
        .push_bind(near.latitude)
        .push(")) * cos(radians(s.latitude)) * power(sin(radians(s.longitude - ")
        .push_bind(near.longitude)
        .push(") / 2), 2)))))");
}

/// The stations `filter` picks, with the span of their measurements (kept
/// per station by the triggers, in `air_quality_spans`).
pub async fn list(
    snapshot: &mut Snapshot,
    filter: &StationFilter,
) -> Result<Vec<StationListing>, sqlx::Error> {
    let mut sql = QueryBuilder::new(format!(
        "SELECT {STATION_COLUMNS}, \
           (SELECT p.first_time FROM air_quality_spans p \
             WHERE p.id_entity = s.id_entity) AS first_measurement, \
           (SELECT p.last_time FROM air_quality_spans p \
             WHERE p.id_entity = s.id_entity) AS last_measurement, "
    ));
    match filter.near {
        Some(near) => {
            sql.push("round(");
            push_distance(&mut sql, near);
            sql.push("::numeric, 3)::float8");
        }
        None => {
            sql.push("NULL::float8");
        }
    }
    sql.push(" AS distance_km FROM stations s");
    filter.push_where(&mut sql);
    filter.push_order(&mut sql);
    sql.build_query_as().fetch_all(snapshot.connection()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_bound_and_a_box_across_the_antimeridian_is_an_or() {
        let filter = StationFilter {
            ids: vec!["aq_jaen".into()],
            bbox: Some(BoundingBox {
                min_lon: 170.0,
                min_lat: -10.0,
                max_lon: -170.0,
                max_lat: 10.0,
            }),
            near: None,
        };
        let mut sql = QueryBuilder::new("SELECT 1 FROM stations s");
        filter.push_where(&mut sql);
        let sql = sql.into_string();
        assert!(sql.contains("s.id_entity = ANY($1)"), "{sql}");
        assert!(
            sql.contains("(s.longitude >= $4 OR s.longitude <= $5)"),
            "{sql}"
        );
        assert!(!sql.contains("aq_jaen"));
    }

    #[test]
    fn equal_filters_have_one_canonical_form() {
        let a = StationFilter {
            ids: vec!["b".into(), "a".into()],
            ..StationFilter::default()
        };
        let b = StationFilter {
            ids: vec!["a".into(), "b".into(), "a".into()],
            ..StationFilter::default()
        };
        assert_eq!(a.canonical(), b.canonical());
    }
}
