//! Which format an answer is written in: the `format` parameter when given,
//! else the client's `Accept` (RFC 9110 section 12.5.1: the most specific
//! media range naming a format gives its quality; the best quality above 0
//! wins, ties going to the endpoint's order, JSON first).

/// A format an answer can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    GeoJson,
    Csv,
    Ndjson,
}

/// The chosen format, and whether `Accept` chose it (then the answer varies
/// with `Accept`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    pub format: Format,
    pub vary: bool,
}

/// Media ranges read from one `Accept`, at most; the rest are ignored.
const MAX_RANGES: usize = 32;

impl Format {
    /// The value of the `format` parameter naming it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::GeoJson => "geojson",
            Self::Csv => "csv",
            Self::Ndjson => "ndjson",
        }
    }

    /// The `Content-Type` of an answer in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Json => "application/json",
            Self::GeoJson => "application/geo+json",
            Self::Csv => "text/csv; charset=utf-8; header=present",
            Self::Ndjson => "application/x-ndjson",
        }
    }

    /// The media types (lower case) a client may ask for it by.
    fn media_types(self) -> &'static [&'static str] {
        match self {
            Self::Json => &["application/json"],
            Self::GeoJson => &["application/geo+json"],
            Self::Csv => &["text/csv"],
            Self::Ndjson => &["application/x-ndjson", "application/ndjson"],
        }
    }

    /// Reads the `format` parameter: one of `offered`.
    pub fn parse_among(value: &str, offered: &[Self]) -> Result<Self, String> {
        offered
            .iter()
            .copied()
            .find(|format| format.name() == value)
            .ok_or_else(|| {
                let names: Vec<&str> = offered.iter().map(|f| f.name()).collect();
                format!("expected one of {}", names.join(", "))
            })
    }

    /// How specifically `range` (lower case, e.g. `text/*`) names this
    /// format: 3 exactly, 2 by its type, 1 as `*/*`, 0 not at all.
    fn specificity(self, range: &str) -> u8 {
        if self.media_types().contains(&range) {
            return 3;
        }
        match range.strip_suffix("/*") {
            Some("*") => 1,
            Some(kind) if self.media_types()[0].split('/').next() == Some(kind) => 2,
            _ => 0,
        }
    }
}

/// The format of an answer among `offered` (the default first); `None` when
/// `Accept` allows none of them (406).
pub fn negotiate(
    parameter: Option<Format>,
    accept: Option<&str>,
    offered: &[Format],
) -> Option<Negotiated> {
    if let Some(format) = parameter {
        return Some(Negotiated {
            format,
            vary: false,
        });
    }
    let ranges = match accept.map(str::trim) {
        None | Some("") => return offered.first().map(|&format| negotiated(format)),
        Some(accept) => media_ranges(accept),
    };
    let mut best: Option<(Format, f32)> = None;
    for &format in offered {
        let quality = ranges
            .iter()
            .filter_map(|(range, q)| Some((format.specificity(range), *q)).filter(|(s, _)| *s > 0))
            .max_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)))
            .map_or(0.0, |(_, q)| q);
        if quality > 0.0 && best.is_none_or(|(_, q)| quality > q) {
            best = Some((format, quality));
        }
    }
    best.map(|(format, _)| negotiated(format))
}

fn negotiated(format: Format) -> Negotiated {
    Negotiated { format, vary: true }
}

/// `(media range in lower case, quality)` of each range in `Accept`.
fn media_ranges(accept: &str) -> Vec<(String, f32)> {
    accept
        .split(',')
        .take(MAX_RANGES)
        .filter_map(|range| {
            let mut parts = range.split(';').map(str::trim);
            let media = parts
                .next()
                .filter(|m| m.contains('/'))?
                .to_ascii_lowercase();
            let quality = parts
                .filter_map(|p| p.strip_prefix("q=").or_else(|| p.strip_prefix("Q=")))
                .find_map(|q| q.parse::<f32>().ok())
                .map_or(1.0, |q| q.clamp(0.0, 1.0));
            Some((media, quality))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &[Format] = &[Format::Json, Format::Csv, Format::Ndjson];
    const PLACES: &[Format] = &[Format::Json, Format::GeoJson, Format::Csv, Format::Ndjson];

    fn pick(accept: Option<&str>, offered: &[Format]) -> Option<Format> {
        negotiate(None, accept, offered).map(|n| n.format)
    }

    #[test]
    fn no_accept_or_anything_means_json() {
        assert_eq!(pick(None, TABLE), Some(Format::Json));
        assert_eq!(pick(Some(""), TABLE), Some(Format::Json));
        assert_eq!(pick(Some("*/*"), TABLE), Some(Format::Json));
        assert_eq!(pick(Some("application/*"), PLACES), Some(Format::Json));
    }

    #[test]
    fn each_format_is_chosen_by_its_media_type() {
        assert_eq!(pick(Some("text/csv"), TABLE), Some(Format::Csv));
        assert_eq!(pick(Some("text/*"), TABLE), Some(Format::Csv));
        assert_eq!(
            pick(Some("application/x-ndjson"), TABLE),
            Some(Format::Ndjson)
        );
        assert_eq!(
            pick(Some("application/ndjson"), TABLE),
            Some(Format::Ndjson)
        );
        assert_eq!(
            pick(Some("Application/GEO+JSON"), PLACES),
            Some(Format::GeoJson)
        );
    }

    #[test]
    fn qualities_decide_and_the_most_specific_range_gives_the_quality() {
        assert_eq!(
            pick(Some("application/json;q=0.5, text/csv"), TABLE),
            Some(Format::Csv)
        );
        // */* would allow JSON, but application/json;q=0 refuses it.
        assert_eq!(
            pick(Some("application/json;q=0, */*;q=0.1"), TABLE),
            Some(Format::Csv)
        );
        assert_eq!(
            pick(Some("text/html,application/xhtml+xml,*/*;q=0.8"), TABLE),
            Some(Format::Json)
        );
        assert_eq!(
            pick(Some("application/geo+json, application/json;q=0.5"), PLACES),
            Some(Format::GeoJson)
        );
    }

    #[test]
    fn nothing_acceptable_is_none() {
        assert_eq!(pick(Some("text/html"), TABLE), None);
        assert_eq!(pick(Some("application/geo+json"), TABLE), None);
        assert_eq!(pick(Some("application/json;q=0"), TABLE), None);
        assert_eq!(pick(Some("nonsense"), TABLE), None);
    }

    #[test]
    fn the_parameter_wins_and_does_not_vary() {
        let chosen = negotiate(Some(Format::Csv), Some("application/json"), TABLE).unwrap();
        assert_eq!(
            chosen,
            Negotiated {
                format: Format::Csv,
                vary: false
            }
        );
        assert!(negotiate(None, None, TABLE).unwrap().vary);
    }

    #[test]
    fn the_parameter_must_be_one_the_endpoint_offers() {
        assert_eq!(Format::parse_among("csv", TABLE), Ok(Format::Csv));
        assert_eq!(
            Format::parse_among("geojson", TABLE),
            Err("expected one of json, csv, ndjson".into())
        );
    }
}
