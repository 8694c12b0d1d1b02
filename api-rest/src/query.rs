//! The `/air_quality` query parameters: parsing and validation (strict: see
//! [`crate::params`]).

use time::PrimitiveDateTime;

use crate::encode::{Format, offered};
use crate::measurement::Measurement;
use crate::page::Cursor;
use crate::params::{self, InvalidParam, Params, show};

/// The parameters `/air_quality` accepts.
pub const PARAMETERS: &[&str] = &[
    "id_entity",
    "from",
    "to",
    "order",
    "limit",
    "cursor",
    "format",
];

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
    /// The key of the last row of the previous page (`cursor`).
    pub after: Option<RowKey>,
    /// The `format` parameter, if given.
    pub format: Option<Format>,
}

/// What rows are ordered by, unique together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowKey {
    pub time_instant: PrimitiveDateTime,
    pub id_entity: String,
}

impl RowKey {
    /// The cursor after this row, for a query whose filters are `filters`.
    pub fn cursor(&self, filters: &str) -> Cursor {
        Cursor::new(
            vec![show(self.time_instant), self.id_entity.clone()],
            filters,
        )
    }

    fn from_cursor(cursor: &Cursor) -> Result<Self, String> {
        let not_ours = "not a cursor from this API: use the Link of a previous page";
        match cursor.key.as_slice() {
            [time, id] if params::is_station_id(id) => Ok(Self {
                time_instant: params::instant(time).map_err(|_| not_ours)?,
                id_entity: id.clone(),
            }),
            _ => Err(not_ours.into()),
        }
    }
}

impl MeasurementQuery {
    /// Parses a raw query string (without `?`). `max_limit` bounds `limit`.
    pub fn parse(raw: Option<&str>, max_limit: u64) -> Result<Self, Vec<InvalidParam>> {
        let mut params = Params::parse(raw, PARAMETERS);
        let mut query = Self {
            stations: params
                .get("id_entity", params::stations)
                .unwrap_or_default(),
            from: params.get("from", params::instant),
            to: params.get("to", params::instant),
            order: params.get("order", parse_order).unwrap_or_default(),
            limit: params.get("limit", |v| parse_limit(v, max_limit)),
            after: None,
            format: params.get("format", |v| {
                Format::parse_among(v, offered::<Measurement>())
            }),
        };
        check_range(&mut params, query.from, query.to);
        let filters = query.filters();
        query.after = params.get("cursor", |v| {
            RowKey::from_cursor(&Cursor::decode(v, &filters, 2)?)
        });
        params.finish(query)
    }

    /// What picks and orders the rows, spelled out: the query a cursor
    /// belongs to (the page size may change from page to page).
    pub fn filters(&self) -> String {
        let show_opt = |t: Option<PrimitiveDateTime>| t.map(show).unwrap_or_default();
        format!(
            "id_entity={}&from={}&to={}&order={}",
            canonical_stations(&self.stations),
            show_opt(self.from),
            show_opt(self.to),
            match self.order {
                Order::Asc => "asc",
                Order::Desc => "desc",
            },
        )
    }

    /// One text per distinct result set: stations sorted and deduplicated, every
    /// field spelled out. The ETag is derived from it.
    pub fn canonical(&self) -> String {
        let after = self
            .after
            .as_ref()
            .map(|k| format!("{}/{}", show(k.time_instant), k.id_entity))
            .unwrap_or_default();
        format!(
            "{}&limit={}&after={after}",
            self.filters(),
            self.limit.map(|l| l.to_string()).unwrap_or_default()
        )
    }
}

/// A station list as one text: sorted, without repeats.
pub fn canonical_stations(stations: &[String]) -> String {
    let mut stations = stations.to_vec();
    stations.sort();
    stations.dedup();
    stations.join(",")
}

/// `[from, to)` must not be empty; both ends are named when it is.
pub fn check_range(
    params: &mut Params,
    from: Option<PrimitiveDateTime>,
    to: Option<PrimitiveDateTime>,
) {
    if let (Some(from), Some(to)) = (from, to)
        && from >= to
    {
        let reason = "the range [from, to) is empty: from must be earlier than to";
        params.reject("from", &show(from), reason);
        params.reject("to", &show(to), reason);
    }
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
    fn a_date_time_out_of_range_in_utc_names_the_parameter() {
        assert_eq!(
            rejected("from=9999-12-31T23:00:00-05:00"),
            [("from".into(), "9999-12-31T23:00:00-05:00".into())]
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
    fn a_cursor_reads_back_for_the_same_filters_only() {
        let key = RowKey {
            time_instant: datetime!(2016-10-01 00:00:00.004),
            id_entity: "aq_jaen".into(),
        };
        let first = parse("id_entity=aq_jaen&limit=2").unwrap();
        let cursor = key.cursor(&first.filters()).encode();
        let next = parse(&format!("id_entity=aq_jaen&limit=5&cursor={cursor}")).unwrap();
        assert_eq!(next.after, Some(key));
        assert_ne!(next.canonical(), first.canonical());
        assert_eq!(
            rejected(&format!("id_entity=aq_salvia&cursor={cursor}")),
            [("cursor".into(), cursor.clone())]
        );
        assert_eq!(
            rejected(&format!("order=desc&cursor={cursor}")),
            [("cursor".into(), cursor)]
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        assert_eq!(parse("limit=0&order=x&foo=1").unwrap_err().len(), 3);
    }
}
