//! The `/air_quality` query parameters: parsing and validation.
//!
//! Every problem with the query string is collected (not only the first), each
//! naming the parameter, the value given and what is wrong with it.

use serde::Serialize;
use time::format_description::well_known::Iso8601;
use time::{Date, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// The parameters `/air_quality` accepts.
pub const PARAMETERS: &[&str] = &["id_entity", "from", "to", "order", "limit"];

/// Most stations one request may name.
pub const MAX_STATIONS: usize = 100;
/// `id_entity` is `varchar(50)`.
const MAX_STATION_LEN: usize = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    #[default]
    Asc,
    Desc,
}

/// A validated request for measurements. Times are UTC, `[from, to)`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MeasurementQuery {
    pub stations: Vec<String>,
    pub from: Option<PrimitiveDateTime>,
    pub to: Option<PrimitiveDateTime>,
    pub order: Order,
    pub limit: Option<u64>,
}

/// One rejected parameter, as listed in the 400 response's `invalid_params`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InvalidParam {
    pub name: String,
    pub value: String,
    pub reason: String,
}

impl InvalidParam {
    fn new(name: &str, value: &str, reason: impl Into<String>) -> Self {
        Self {
            name: name.to_owned(),
            value: value.to_owned(),
            reason: reason.into(),
        }
    }
}

impl MeasurementQuery {
    /// Parses a raw query string (without `?`). `max_limit` bounds `limit`.
    pub fn parse(raw: Option<&str>, max_limit: u64) -> Result<Self, Vec<InvalidParam>> {
        let mut query = Self::default();
        let mut errors = Vec::new();
        let mut seen: Vec<String> = Vec::new();

        for (name, value) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            if !PARAMETERS.contains(&name.as_ref()) {
                errors.push(InvalidParam::new(
                    &name,
                    &value,
                    format!("unknown parameter; accepted: {}", PARAMETERS.join(", ")),
                ));
                continue;
            }
            if seen.iter().any(|s| *s == name) {
                errors.push(InvalidParam::new(&name, &value, "given more than once"));
                continue;
            }
            seen.push(name.to_string());
            let result = match name.as_ref() {
                "id_entity" => parse_stations(&value).map(|s| query.stations = s),
                "from" => parse_instant(&value).map(|t| query.from = Some(t)),
                "to" => parse_instant(&value).map(|t| query.to = Some(t)),
                "order" => parse_order(&value).map(|o| query.order = o),
                "limit" => parse_limit(&value, max_limit).map(|l| query.limit = Some(l)),
                _ => Ok(()),
            };
            if let Err(reason) = result {
                errors.push(InvalidParam::new(&name, &value, reason));
            }
        }

        if let (Some(from), Some(to)) = (query.from, query.to)
            && from >= to
        {
            let reason = "the range [from, to) is empty: from must be earlier than to";
            errors.push(InvalidParam::new("from", &show(from), reason));
            errors.push(InvalidParam::new("to", &show(to), reason));
        }
        if errors.is_empty() {
            Ok(query)
        } else {
            Err(errors)
        }
    }
}

impl MeasurementQuery {
    /// One text per distinct result set: stations sorted and deduplicated, every
    /// field spelled out. The ETag is derived from it.
    pub fn canonical(&self) -> String {
        let mut stations = self.stations.clone();
        stations.sort();
        stations.dedup();
        let show_opt = |t: Option<PrimitiveDateTime>| t.map(show).unwrap_or_default();
        format!(
            "id_entity={}&from={}&to={}&order={}&limit={}",
            stations.join(","),
            show_opt(self.from),
            show_opt(self.to),
            match self.order {
                Order::Asc => "asc",
                Order::Desc => "desc",
            },
            self.limit.map(|l| l.to_string()).unwrap_or_default()
        )
    }
}

fn show(t: PrimitiveDateTime) -> String {
    t.assume_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn parse_stations(value: &str) -> Result<Vec<String>, String> {
    let stations: Vec<String> = value.split(',').map(str::to_owned).collect();
    if stations.len() > MAX_STATIONS {
        return Err(format!("at most {MAX_STATIONS} stations per request"));
    }
    for station in &stations {
        if station.is_empty() {
            return Err(
                "expected one station id or a comma-separated list, with no empty item".into(),
            );
        }
        if station.len() > MAX_STATION_LEN {
            return Err(format!(
                "a station id has at most {MAX_STATION_LEN} characters"
            ));
        }
        if !station
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'))
        {
            return Err("a station id has only letters, digits, '_', '-', '.' and ':'".into());
        }
    }
    Ok(stations)
}

/// An ISO 8601 date (`2016-10-01`, midnight UTC) or date-time, with or without an
/// offset (`2016-10-01T08:00:00`, `...Z`, `...+02:00`); without one it is UTC.
pub fn parse_instant(value: &str) -> Result<PrimitiveDateTime, String> {
    const EXPECTED: &str =
        "expected an ISO 8601 date (2016-10-01) or date-time (2016-10-01T08:00:00Z)";
    let value = value.trim();
    if value.len() == 10 {
        return Date::parse(value, &Iso8601::DATE)
            .map(|date| PrimitiveDateTime::new(date, Time::MIDNIGHT))
            .map_err(|_| EXPECTED.to_owned());
    }
    // Many clients write the date-time separator as a space.
    let value = value.replacen(' ', "T", 1);
    if let Ok(instant) = OffsetDateTime::parse(&value, &Iso8601::DEFAULT) {
        // 9999-12-31T23:00:00-05:00 is in year 10000 in UTC: out of range.
        let Some(utc) = instant.checked_to_offset(UtcOffset::UTC) else {
            return Err(
                "the date-time is out of range once converted to UTC (years -9999 to 9999)"
                    .to_owned(),
            );
        };
        return Ok(PrimitiveDateTime::new(utc.date(), utc.time()));
    }
    PrimitiveDateTime::parse(&value, &Iso8601::DEFAULT).map_err(|_| EXPECTED.to_owned())
}

fn parse_order(value: &str) -> Result<Order, String> {
    match value {
        "asc" => Ok(Order::Asc),
        "desc" => Ok(Order::Desc),
        _ => Err("expected asc or desc".into()),
    }
}

fn parse_limit(value: &str, max_limit: u64) -> Result<u64, String> {
    let out_of_range = || format!("expected a whole number from 1 to {max_limit}");
    let limit: u64 = value.parse().map_err(|_| out_of_range())?;
    if (1..=max_limit).contains(&limit) {
        Ok(limit)
    } else {
        Err(out_of_range())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn parse(raw: &str) -> Result<MeasurementQuery, Vec<InvalidParam>> {
        MeasurementQuery::parse(Some(raw), 1000)
    }

    fn rejected(raw: &str) -> Vec<(String, String)> {
        parse(raw)
            .unwrap_err()
            .into_iter()
            .map(|e| (e.name, e.value))
            .collect()
    }

    #[test]
    fn no_parameters_means_everything_in_ascending_order() {
        assert_eq!(
            MeasurementQuery::parse(None, 10),
            Ok(MeasurementQuery::default())
        );
        assert_eq!(parse(""), Ok(MeasurementQuery::default()));
    }

    #[test]
    fn all_parameters_together() {
        let q = parse("id_entity=aq_salvia,aq_jaen&from=2016-10-01&to=2016-10-02T12:30:00Z&order=desc&limit=5")
            .unwrap();
        assert_eq!(q.stations, ["aq_salvia", "aq_jaen"]);
        assert_eq!(q.from, Some(datetime!(2016-10-01 00:00)));
        assert_eq!(q.to, Some(datetime!(2016-10-02 12:30)));
        assert_eq!(q.order, Order::Desc);
        assert_eq!(q.limit, Some(5));
    }

    #[test]
    fn date_times_with_offsets_are_converted_to_utc() {
        assert_eq!(
            parse_instant("2016-10-01T10:00:00+02:00"),
            Ok(datetime!(2016-10-01 08:00))
        );
        assert_eq!(
            parse_instant("2016-10-01 08:00:00.004"),
            Ok(datetime!(2016-10-01 08:00:00.004))
        );
        assert_eq!(
            parse_instant("2016-10-01T08:00"),
            Ok(datetime!(2016-10-01 08:00))
        );
    }

    #[test]
    fn a_date_time_out_of_range_in_utc_is_refused_not_a_panic() {
        assert!(parse_instant("9999-12-31T23:00:00-05:00").is_err());
        assert!(parse_instant("-9999-01-01T00:00:00+05:00").is_err());
        assert_eq!(
            rejected("from=9999-12-31T23:00:00-05:00"),
            [("from".into(), "9999-12-31T23:00:00-05:00".into())]
        );
        assert_eq!(
            parse_instant("9999-12-31T23:00:00+05:00"),
            Ok(datetime!(9999-12-31 18:00))
        );
    }

    #[test]
    fn bad_values_name_the_parameter_and_the_value() {
        assert_eq!(rejected("limit=0"), [("limit".into(), "0".into())]);
        assert_eq!(rejected("limit=1001"), [("limit".into(), "1001".into())]);
        assert_eq!(rejected("limit=ten"), [("limit".into(), "ten".into())]);
        assert_eq!(rejected("order=up"), [("order".into(), "up".into())]);
        assert_eq!(
            rejected("from=yesterday"),
            [("from".into(), "yesterday".into())]
        );
        assert_eq!(
            rejected("to=2016-13-01"),
            [("to".into(), "2016-13-01".into())]
        );
        assert_eq!(
            rejected("id_entity=a,,b"),
            [("id_entity".into(), "a,,b".into())]
        );
        assert_eq!(
            rejected("id_entity="),
            [("id_entity".into(), String::new())]
        );
        assert_eq!(
            rejected("id_entity=x'y"),
            [("id_entity".into(), "x'y".into())]
        );
    }

    #[test]
    fn unknown_and_repeated_parameters_are_rejected() {
        assert_eq!(
            rejected("station=aq_jaen"),
            [("station".into(), "aq_jaen".into())]
        );
        assert_eq!(rejected("limit=1&limit=2"), [("limit".into(), "2".into())]);
    }

    #[test]
    fn an_empty_range_names_both_ends() {
        let names: Vec<String> = parse("from=2016-10-02&to=2016-10-01")
            .unwrap_err()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, ["from", "to"]);
        assert!(parse("from=2016-10-01&to=2016-10-01").is_err());
    }

    #[test]
    fn equivalent_queries_have_one_canonical_form() {
        let a = parse("id_entity=b,a,a&from=2016-10-01&order=asc").unwrap();
        let b = parse("from=2016-10-01T00:00:00Z&id_entity=a,b").unwrap();
        assert_eq!(a.canonical(), b.canonical());
        assert_ne!(a.canonical(), parse("id_entity=a").unwrap().canonical());
        assert_ne!(
            parse("limit=5").unwrap().canonical(),
            parse("limit=6").unwrap().canonical()
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        assert_eq!(parse("limit=0&order=x&foo=1").unwrap_err().len(), 3);
    }
}
