//! One row of `air_quality_measurements` and its JSON form.

use serde::{Serialize, Serializer};
use time::PrimitiveDateTime;
use time::format_description::well_known::Rfc3339;

/// A measurement as stored; `None` is an empty reading (JSON `null`).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, Serialize)]
pub struct Measurement {
    /// Stored without a zone and read as UTC; written as RFC 3339 with `Z`.
    #[serde(serialize_with = "as_utc_rfc3339")]
    pub time_instant: PrimitiveDateTime,
    pub id_entity: String,
    pub so2: Option<f64>,
    pub no2: Option<f64>,
    pub co: Option<f64>,
    pub o3: Option<f64>,
    pub pm10: Option<f64>,
    pub pm2_5: Option<f64>,
}

/// The columns, in the order of the JSON object and of the table.
pub const COLUMNS: &str = "time_instant, id_entity, so2, no2, co, o3, pm10, pm2_5";

/// The pollutants, in column order.
pub const POLLUTANTS: [&str; 6] = ["so2", "no2", "co", "o3", "pm10", "pm2_5"];

/// The unit of a pollutant's values: µg/m³, except CO in mg/m³.
pub fn unit(pollutant: &str) -> &'static str {
    if pollutant == "co" {
        "mg/m³"
    } else {
        "µg/m³"
    }
}

impl Measurement {
    /// The values in [`POLLUTANTS`] order.
    pub fn values(&self) -> [Option<f64>; 6] {
        [self.so2, self.no2, self.co, self.o3, self.pm10, self.pm2_5]
    }
}

pub(crate) fn as_utc_rfc3339<S: Serializer>(
    t: &PrimitiveDateTime,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let text = t
        .assume_utc()
        .format(&Rfc3339)
        .map_err(serde::ser::Error::custom)?;
    serializer.serialize_str(&text)
}

pub(crate) fn as_utc_rfc3339_opt<S: Serializer>(
    t: &Option<PrimitiveDateTime>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => as_utc_rfc3339(t, serializer),
        None => serializer.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn serializes_iso_8601_utc_and_nulls() {
        let m = Measurement {
            time_instant: datetime!(2016-10-01 00:00:00.004),
            id_entity: "aq_salvia".into(),
            so2: Some(6.801),
            no2: None,
            co: Some(0.6574),
            o3: None,
            pm10: Some(20.1),
            pm2_5: None,
        };
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"time_instant":"2016-10-01T00:00:00.004Z","id_entity":"aq_salvia","so2":6.801,"no2":null,"co":0.6574,"o3":null,"pm10":20.1,"pm2_5":null}"#
        );
    }

    #[test]
    fn whole_seconds_have_no_fraction() {
        let m = Measurement {
            time_instant: datetime!(2016-10-01 13:00),
            id_entity: "x".into(),
            so2: None,
            no2: None,
            co: None,
            o3: None,
            pm10: None,
            pm2_5: None,
        };
        assert!(
            serde_json::to_string(&m)
                .unwrap()
                .contains(r#""2016-10-01T13:00:00Z""#)
        );
    }
}
