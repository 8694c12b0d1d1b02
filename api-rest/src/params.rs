//! Strict query strings: every parameter known to the endpoint, none given
//! twice, each value validated, and every problem reported at once, each
//! naming the parameter, the value given and what is wrong with it. A
//! misspelled parameter is an error, never silently ignored.
//!
//! The value parsers shared by several endpoints live here too.

use serde::Serialize;
use time::format_description::well_known::Iso8601;
use time::{Date, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// Most stations one request may name.
pub const MAX_STATIONS: usize = 100;
/// `id_entity` is `varchar(50)`.
const MAX_STATION_LEN: usize = 50;

/// One rejected parameter, as listed in the 400 response's `invalid_params`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct InvalidParam {
    pub name: String,
    pub value: String,
    pub reason: String,
}

impl InvalidParam {
    pub fn new(name: &str, value: &str, reason: impl Into<String>) -> Self {
        Self {
            name: name.to_owned(),
            value: value.to_owned(),
            reason: reason.into(),
        }
    }
}

/// A query string being read: the accepted parameters' values, and the
/// problems found so far.
#[derive(Debug)]
pub struct Params {
    given: Vec<(String, String)>,
    errors: Vec<InvalidParam>,
}

impl Params {
    /// Splits `raw` (without `?`); unknown and repeated parameters are
    /// problems already.
    pub fn parse(raw: Option<&str>, accepted: &[&str]) -> Self {
        let mut given: Vec<(String, String)> = Vec::new();
        let mut errors = Vec::new();
        for (name, value) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            if !accepted.contains(&name.as_ref()) {
                let reason = format!("unknown parameter; accepted: {}", accepted.join(", "));
                errors.push(InvalidParam::new(&name, &value, reason));
            } else if given.iter().any(|(seen, _)| *seen == name) {
                errors.push(InvalidParam::new(&name, &value, "given more than once"));
            } else {
                given.push((name.into_owned(), value.into_owned()));
            }
        }
        Self { given, errors }
    }

    /// The value of `name` read by `parse`, if given; a bad value is a problem.
    pub fn get<T>(
        &mut self,
        name: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let value = self.given.iter().find(|(n, _)| n == name).map(|(_, v)| v)?;
        match parse(value) {
            Ok(parsed) => Some(parsed),
            Err(reason) => {
                self.errors.push(InvalidParam::new(name, value, reason));
                None
            }
        }
    }

    /// The value of a parameter that must be given.
    pub fn require<T>(
        &mut self,
        name: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        if !self.given.iter().any(|(n, _)| n == name) {
            self.errors
                .push(InvalidParam::new(name, "", "required parameter is missing"));
            return None;
        }
        self.get(name, parse)
    }

    /// Whether `name` was given at all (valid or not).
    pub fn has(&self, name: &str) -> bool {
        self.given.iter().any(|(n, _)| n == name)
    }

    /// A problem found across parameters (e.g. `from` after `to`).
    pub fn reject(&mut self, name: &str, value: &str, reason: impl Into<String>) {
        self.errors.push(InvalidParam::new(name, value, reason));
    }

    /// `value`, unless a problem was found.
    pub fn finish<T>(self, value: T) -> Result<T, Vec<InvalidParam>> {
        if self.errors.is_empty() {
            Ok(value)
        } else {
            Err(self.errors)
        }
    }
}

/// `id_entity`: one station id or a comma-separated list of them.
pub fn stations(value: &str) -> Result<Vec<String>, String> {
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
        if !is_station_id(station) {
            return Err("a station id has only letters, digits, '_', '-', '.' and ':'".into());
        }
    }
    Ok(stations)
}

/// Whether `text` could be a station id (its characters, not its existence).
pub fn is_station_id(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= MAX_STATION_LEN
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'))
}

/// An ISO 8601 date (`2016-10-01`, midnight UTC) or date-time, with or without an
/// offset (`2016-10-01T08:00:00`, `...Z`, `...+02:00`); without one it is UTC.
pub fn instant(value: &str) -> Result<PrimitiveDateTime, String> {
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

/// An instant written back as RFC 3339 UTC, for messages and canonical forms.
pub fn show(t: PrimitiveDateTime) -> String {
    t.assume_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// `bbox=minLon,minLat,maxLon,maxLat` (RFC 7946 order). A box whose west edge
/// is east of its east edge crosses the antimeridian.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoundingBox {
    pub min_lon: f64,
    pub min_lat: f64,
    pub max_lon: f64,
    pub max_lat: f64,
}

pub fn bbox(value: &str) -> Result<BoundingBox, String> {
    const EXPECTED: &str = "expected minLon,minLat,maxLon,maxLat in degrees";
    let numbers = numbers(value, 4).ok_or(EXPECTED)?;
    let [min_lon, min_lat, max_lon, max_lat] = [numbers[0], numbers[1], numbers[2], numbers[3]];
    if ![min_lon, max_lon]
        .iter()
        .all(|l| (-180.0..=180.0).contains(l))
    {
        return Err("longitudes are from -180 to 180".into());
    }
    if ![min_lat, max_lat]
        .iter()
        .all(|l| (-90.0..=90.0).contains(l))
    {
        return Err("latitudes are from -90 to 90".into());
    }
    if min_lat > max_lat {
        return Err("minLat is north of maxLat".into());
    }
    Ok(BoundingBox {
        min_lon,
        min_lat,
        max_lon,
        max_lat,
    })
}

/// `near=lat,lon`, with `radius_km`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Near {
    pub latitude: f64,
    pub longitude: f64,
    pub radius_km: f64,
}

/// Half of the Earth's circumference: no radius needs to be larger.
pub const MAX_RADIUS_KM: f64 = 20_038.0;

pub fn point(value: &str) -> Result<(f64, f64), String> {
    let numbers = numbers(value, 2).ok_or("expected lat,lon in degrees")?;
    let (lat, lon) = (numbers[0], numbers[1]);
    if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
        return Err("lat is from -90 to 90, lon from -180 to 180".into());
    }
    Ok((lat, lon))
}

pub fn radius_km(value: &str) -> Result<f64, String> {
    let reason = || format!("expected a distance in km, more than 0 and at most {MAX_RADIUS_KM}");
    let radius: f64 = value.trim().parse().map_err(|_| reason())?;
    if radius > 0.0 && radius <= MAX_RADIUS_KM {
        Ok(radius)
    } else {
        Err(reason())
    }
}

/// `count` comma-separated finite numbers.
fn numbers(value: &str, count: usize) -> Option<Vec<f64>> {
    let numbers: Vec<f64> = value
        .split(',')
        .map(|n| n.trim().parse::<f64>().ok().filter(|n| n.is_finite()))
        .collect::<Option<_>>()?;
    (numbers.len() == count).then_some(numbers)
}

/// Reads `near` and `radius_km`, which go together.
pub fn near(params: &mut Params) -> Option<Near> {
    let point = params.get("near", point);
    let radius = params.get("radius_km", radius_km);
    match (point, radius) {
        (Some((latitude, longitude)), Some(radius_km)) => Some(Near {
            latitude,
            longitude,
            radius_km,
        }),
        _ => {
            if params.has("near") != params.has("radius_km") {
                let missing = if params.has("near") {
                    "radius_km"
                } else {
                    "near"
                };
                params.reject(missing, "", "near and radius_km go together");
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn problems(raw: &str, accepted: &[&str]) -> Vec<(String, String)> {
        let params = Params::parse(Some(raw), accepted);
        params
            .finish(())
            .unwrap_err()
            .into_iter()
            .map(|e| (e.name, e.value))
            .collect()
    }

    #[test]
    fn unknown_and_repeated_parameters_are_problems_named_with_their_values() {
        assert_eq!(
            problems("statoin=aq_jaen&a=1&a=2", &["a"]),
            [
                ("statoin".into(), "aq_jaen".into()),
                ("a".into(), "2".into())
            ]
        );
    }

    #[test]
    fn a_missing_required_parameter_is_a_problem() {
        let mut params = Params::parse(Some(""), &["interval"]);
        assert_eq!(params.require("interval", |v| Ok(v.to_owned())), None);
        assert_eq!(params.finish(()).unwrap_err()[0].name, "interval");
    }

    #[test]
    fn date_times_with_offsets_are_converted_to_utc() {
        assert_eq!(
            instant("2016-10-01T10:00:00+02:00"),
            Ok(datetime!(2016-10-01 08:00))
        );
        assert_eq!(
            instant("2016-10-01 08:00:00.004"),
            Ok(datetime!(2016-10-01 08:00:00.004))
        );
        assert_eq!(instant("2016-10-01T08:00"), Ok(datetime!(2016-10-01 08:00)));
        assert_eq!(instant("2016-10-01"), Ok(datetime!(2016-10-01 00:00)));
    }

    #[test]
    fn a_date_time_out_of_range_in_utc_is_refused_not_a_panic() {
        assert!(instant("9999-12-31T23:00:00-05:00").is_err());
        assert!(instant("-9999-01-01T00:00:00+05:00").is_err());
        assert_eq!(
            instant("9999-12-31T23:00:00+05:00"),
            Ok(datetime!(9999-12-31 18:00))
        );
    }

    #[test]
    fn boxes_are_lon_lat_in_range_and_may_cross_the_antimeridian() {
        assert_eq!(
            bbox("-4,37,-3.5,37.5"),
            Ok(BoundingBox {
                min_lon: -4.0,
                min_lat: 37.0,
                max_lon: -3.5,
                max_lat: 37.5
            })
        );
        assert!(bbox("170,-10,-170,10").is_ok(), "crosses the antimeridian");
        assert!(bbox("-4,38,-3.5,37").is_err(), "south of north");
        assert!(bbox("-4,37,-3.5").is_err());
        assert!(bbox("-4,37,-3.5,91").is_err());
        assert!(bbox("-4,37,NaN,38").is_err());
        assert!(bbox("-4,37,inf,38").is_err());
    }

    #[test]
    fn near_needs_its_radius_and_both_are_bounded() {
        let read = |raw: &str| {
            let mut params = Params::parse(Some(raw), &["near", "radius_km"]);
            let near = near(&mut params);
            params.finish(near).map_err(|e| e[0].name.clone())
        };
        assert_eq!(
            read("near=37.17,-3.6&radius_km=10"),
            Ok(Some(Near {
                latitude: 37.17,
                longitude: -3.6,
                radius_km: 10.0
            }))
        );
        assert_eq!(read(""), Ok(None));
        assert_eq!(read("near=37.17,-3.6"), Err("radius_km".into()));
        assert_eq!(read("radius_km=3"), Err("near".into()));
        assert_eq!(read("near=97,-3.6&radius_km=3"), Err("near".into()));
        assert_eq!(read("near=37,-3.6&radius_km=0"), Err("radius_km".into()));
        assert_eq!(
            read("near=37,-3.6&radius_km=30000"),
            Err("radius_km".into())
        );
    }

    #[test]
    fn station_lists_are_bounded_and_spelled_like_ids() {
        assert_eq!(stations("a,b"), Ok(vec!["a".into(), "b".into()]));
        assert!(stations("a,,b").is_err());
        assert!(stations("x'y").is_err());
        assert!(stations(&vec!["s"; MAX_STATIONS + 1].join(",")).is_err());
        assert!(stations(&"s".repeat(51)).is_err());
    }
}
