//! One row of `air_quality_measurements`, its JSON and CSV forms, and values
//! kept per pollutant.

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use time::PrimitiveDateTime;
use time::format_description::well_known::Rfc3339;

use crate::encode::{CsvRow, Record};

/// A measurement as stored; `None` is an empty reading (JSON `null`).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, Serialize, utoipa::ToSchema)]
pub struct Measurement {
    /// Stored without a zone and read as UTC; written as RFC 3339 with `Z`.
    #[serde(serialize_with = "as_utc_rfc3339")]
    #[schema(value_type = String, format = DateTime, example = "2016-10-01T00:00:00.018Z")]
    pub time_instant: PrimitiveDateTime,
    #[schema(example = "aq_jaen")]
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

impl Record for Measurement {
    fn csv_header(row: &mut CsvRow<'_>) {
        row.names(&[
            "time_instant",
            "id_entity",
            "so2",
            "no2",
            "co",
            "o3",
            "pm10",
            "pm2_5",
        ]);
        row.end();
    }

    fn csv_row(&self, row: &mut CsvRow<'_>) {
        row.time(self.time_instant);
        row.text(&self.id_entity);
        for value in self.values() {
            row.opt_number(value);
        }
        row.end();
    }
}

/// One value per pollutant, in [`POLLUTANTS`] order. Its JSON is an object
/// naming every pollutant, null where there is no value.
#[derive(Debug, Clone, PartialEq)]
pub struct PerPollutant<T>(pub [Option<T>; 6]);

impl<T> Default for PerPollutant<T> {
    fn default() -> Self {
        Self([None, None, None, None, None, None])
    }
}

impl<T> PerPollutant<T> {
    /// The value of `pollutant`, by name.
    pub fn get(&self, pollutant: &str) -> Option<&T> {
        let index = POLLUTANTS.iter().position(|p| *p == pollutant)?;
        self.0[index].as_ref()
    }

    /// Sets the value of `pollutant`; an unknown name is ignored.
    pub fn set(&mut self, pollutant: &str, value: T) {
        if let Some(index) = POLLUTANTS.iter().position(|p| *p == pollutant) {
            self.0[index] = Some(value);
        }
    }

    /// `(pollutant, value)` in column order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, Option<&T>)> {
        POLLUTANTS
            .iter()
            .copied()
            .zip(self.0.iter().map(Option::as_ref))
    }
}

/// An object with the six pollutants, each a `T` or null.
impl<T: utoipa::ToSchema> utoipa::PartialSchema for PerPollutant<T> {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
        let mut object = ObjectBuilder::new();
        for pollutant in POLLUTANTS {
            let value = OneOfBuilder::new()
                .item(utoipa::openapi::Ref::from_schema_name(T::name()))
                .item(ObjectBuilder::new().schema_type(Type::Null));
            object = object.property(pollutant, value).required(pollutant);
        }
        object.into()
    }
}

impl<T: Serialize> Serialize for PerPollutant<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(POLLUTANTS.len()))?;
        for (pollutant, value) in self.iter() {
            map.serialize_entry(pollutant, &value)?;
        }
        map.end()
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
    fn csv_rows_follow_the_json_fields() {
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
        let csv = crate::encode::single(crate::encode::Format::Csv, &m).unwrap();
        assert_eq!(
            std::str::from_utf8(&csv).unwrap(),
            "time_instant,id_entity,so2,no2,co,o3,pm10,pm2_5\r\n\
             2016-10-01T00:00:00.004Z,aq_salvia,6.801,,0.6574,,20.1,\r\n"
        );
    }

    #[test]
    fn per_pollutant_values_name_every_pollutant() {
        let mut values = PerPollutant::<u32>::default();
        values.set("co", 7);
        values.set("unknown", 9);
        assert_eq!(values.get("co"), Some(&7));
        assert_eq!(
            serde_json::to_string(&values).unwrap(),
            r#"{"so2":null,"no2":null,"co":7,"o3":null,"pm10":null,"pm2_5":null}"#
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
