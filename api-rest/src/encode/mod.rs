//! Answers in the formats clients load data with, streamed:
//!
//! - JSON: an array, one object per line (the default);
//! - CSV: RFC 4180, a header row, CRLF line ends, an empty field for null;
//! - NDJSON: one JSON object per line;
//! - GeoJSON (RFC 7946): a FeatureCollection, for records with a location.
//!
//! Every record type implements [`Record`]; an endpoint that writes records
//! through an [`Encoder`] answers every format by construction. Memory holds
//! one chunk of about [`CHUNK_BYTES`], whatever the number of records.

mod csv;
mod format;

use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;
use serde_json::Value;

pub use self::csv::CsvRow;
pub use self::format::{Format, Negotiated, negotiate};

/// Bytes gathered before a chunk is handed to the socket.
pub const CHUNK_BYTES: usize = 32 * 1024;

/// A row of an answer: its JSON object, its CSV columns and, where it has
/// one, its place on the map.
pub trait Record: Serialize {
    /// Whether records have a [`Location`], so that GeoJSON is offered.
    const LOCATED: bool = false;

    /// The CSV header: one name per column.
    fn csv_header(row: &mut CsvRow<'_>);

    /// The CSV fields, in the header's order.
    fn csv_row(&self, row: &mut CsvRow<'_>);

    /// The GeoJSON Feature's id and point, for [`Record::LOCATED`] types.
    fn location(&self) -> Option<Location<'_>> {
        None
    }
}

/// Where a record is: a GeoJSON Point and the Feature's id.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Location<'a> {
    pub id: &'a str,
    pub longitude: f64,
    pub latitude: f64,
}

/// The formats records of type `R` can be written in, the default first.
pub fn offered<R: Record>() -> &'static [Format] {
    if R::LOCATED {
        &[Format::Json, Format::GeoJson, Format::Csv, Format::Ndjson]
    } else {
        &[Format::Json, Format::Csv, Format::Ndjson]
    }
}

/// Writes a sequence of records in one format, chunk by chunk.
#[derive(Debug)]
pub struct Encoder {
    format: Format,
    out: BytesMut,
    written: u64,
}

impl Encoder {
    /// Starts a sequence of `R`: `[`, a FeatureCollection's head, or the CSV
    /// header.
    pub fn start<R: Record>(format: Format) -> Self {
        let mut out = BytesMut::with_capacity(CHUNK_BYTES + 1024);
        match format {
            Format::Json => out.put_slice(b"["),
            Format::GeoJson => out.put_slice(br#"{"type":"FeatureCollection","features":["#),
            Format::Csv => R::csv_header(&mut CsvRow::new(&mut out)),
            Format::Ndjson => {}
        }
        Self {
            format,
            out,
            written: 0,
        }
    }

    /// Adds a record.
    pub fn push<R: Record>(&mut self, record: &R) -> Result<(), serde_json::Error> {
        if matches!(self.format, Format::Json | Format::GeoJson) {
            self.out
                .put_slice(if self.written == 0 { b"\n" } else { b",\n" });
        }
        write_one(self.format, &mut self.out, record)?;
        self.written += 1;
        Ok(())
    }

    /// Records pushed so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// The bytes gathered, once there are at least [`CHUNK_BYTES`] of them.
    pub fn full_chunk(&mut self) -> Option<Bytes> {
        (self.out.len() >= CHUNK_BYTES).then(|| self.out.split().freeze())
    }

    /// The rest, with the closing `]` where the format has one.
    pub fn finish(mut self) -> Bytes {
        match self.format {
            Format::Json => self.out.put_slice(b"\n]\n"),
            Format::GeoJson => self.out.put_slice(b"\n]}\n"),
            Format::Csv | Format::Ndjson => {}
        }
        self.out.freeze()
    }
}

/// One record on its own: a JSON object, a GeoJSON Feature, a CSV header and
/// row, or one NDJSON line.
pub fn single<R: Record>(format: Format, record: &R) -> Result<Bytes, serde_json::Error> {
    let mut out = BytesMut::with_capacity(1024);
    if format == Format::Csv {
        R::csv_header(&mut CsvRow::new(&mut out));
    }
    write_one(format, &mut out, record)?;
    if matches!(format, Format::Json | Format::GeoJson) {
        out.put_slice(b"\n");
    }
    Ok(out.freeze())
}

fn write_one<R: Record>(
    format: Format,
    out: &mut BytesMut,
    record: &R,
) -> Result<(), serde_json::Error> {
    match format {
        Format::Json => serde_json::to_writer(out.writer(), record),
        Format::Ndjson => {
            serde_json::to_writer(out.writer(), record)?;
            out.put_slice(b"\n");
            Ok(())
        }
        Format::Csv => {
            record.csv_row(&mut CsvRow::new(out));
            Ok(())
        }
        Format::GeoJson => serde_json::to_writer(out.writer(), &feature(record)?),
    }
}

/// A record as a GeoJSON Feature: its point (lon, lat: RFC 7946 order) as the
/// geometry, the rest of its object as properties. Without a location the
/// geometry is null, as RFC 7946 allows.
fn feature<R: Record>(record: &R) -> Result<Value, serde_json::Error> {
    let mut properties = match serde_json::to_value(record)? {
        Value::Object(properties) => properties,
        other => return Ok(other),
    };
    let location = record.location();
    let (id, geometry) = match location {
        Some(place) => {
            properties.remove("longitude");
            properties.remove("latitude");
            let point = serde_json::json!({
                "type": "Point", "coordinates": [place.longitude, place.latitude]
            });
            (Value::from(place.id), point)
        }
        None => (Value::Null, Value::Null),
    };
    Ok(serde_json::json!({
        "type": "Feature",
        "id": id,
        "geometry": geometry,
        "properties": properties,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Place {
        id: &'static str,
        name: &'static str,
        latitude: f64,
        longitude: f64,
        level: Option<f64>,
    }

    impl Record for Place {
        const LOCATED: bool = true;
        fn csv_header(row: &mut CsvRow<'_>) {
            row.names(&["id", "name", "latitude", "longitude", "level"]);
            row.end();
        }
        fn csv_row(&self, row: &mut CsvRow<'_>) {
            row.text(self.id);
            row.text(self.name);
            row.number(self.latitude);
            row.number(self.longitude);
            row.opt_number(self.level);
            row.end();
        }
        fn location(&self) -> Option<Location<'_>> {
            Some(Location {
                id: self.id,
                longitude: self.longitude,
                latitude: self.latitude,
            })
        }
    }

    const JAEN: Place = Place {
        id: "aq_jaen",
        name: "Jaén, \"centro\"",
        latitude: 37.779,
        longitude: -3.787,
        level: None,
    };
    const SALVIA: Place = Place {
        id: "aq_salvia",
        name: "Salvia",
        latitude: 37.5,
        longitude: -3.6,
        level: Some(20.5),
    };

    fn all(format: Format, places: &[Place]) -> String {
        let mut encoder = Encoder::start::<Place>(format);
        let mut text = Vec::new();
        for place in places {
            encoder.push(place).unwrap();
            if let Some(chunk) = encoder.full_chunk() {
                text.extend_from_slice(&chunk);
            }
        }
        text.extend_from_slice(&encoder.finish());
        String::from_utf8(text).unwrap()
    }

    #[test]
    fn json_is_an_array_with_one_object_per_line() {
        assert_eq!(all(Format::Json, &[]), "[\n]\n");
        let text = all(Format::Json, &[JAEN, SALVIA]);
        assert!(text.starts_with("[\n{\"id\":\"aq_jaen\""), "{text}");
        assert!(text.ends_with("\"level\":20.5}\n]\n"), "{text}");
        assert_eq!(
            serde_json::from_str::<Value>(&text).unwrap()[1]["id"],
            "aq_salvia"
        );
    }

    #[test]
    fn csv_has_a_header_crlf_quotes_where_needed_and_empty_nulls() {
        assert_eq!(
            all(Format::Csv, &[JAEN, SALVIA]),
            "id,name,latitude,longitude,level\r\n\
             aq_jaen,\"Jaén, \"\"centro\"\"\",37.779,-3.787,\r\n\
             aq_salvia,Salvia,37.5,-3.6,20.5\r\n"
        );
        assert_eq!(
            all(Format::Csv, &[]),
            "id,name,latitude,longitude,level\r\n"
        );
    }

    #[test]
    fn ndjson_is_one_object_per_line_and_nothing_else() {
        let text = all(Format::Ndjson, &[JAEN, SALVIA]);
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["name"], "Jaén, \"centro\"");
        assert!(text.ends_with("}\n"));
        assert_eq!(all(Format::Ndjson, &[]), "");
    }

    #[test]
    fn geojson_features_put_lon_before_lat_and_keep_the_rest_as_properties() {
        let text = all(Format::GeoJson, &[JAEN, SALVIA]);
        let collection: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(collection["type"], "FeatureCollection");
        let jaen = &collection["features"][0];
        assert_eq!(jaen["type"], "Feature");
        assert_eq!(jaen["id"], "aq_jaen");
        assert_eq!(
            jaen["geometry"]["coordinates"],
            serde_json::json!([-3.787, 37.779])
        );
        assert_eq!(
            jaen["properties"],
            serde_json::json!({"id": "aq_jaen", "name": "Jaén, \"centro\"", "level": null})
        );
        let empty: Value = serde_json::from_str(&all(Format::GeoJson, &[])).unwrap();
        assert_eq!(empty["features"], serde_json::json!([]));
    }

    #[test]
    fn a_single_record_is_an_object_a_feature_or_a_header_and_a_row() {
        let one = |format| String::from_utf8(single(format, &SALVIA).unwrap().to_vec()).unwrap();
        assert!(one(Format::Json).starts_with("{\"id\":\"aq_salvia\""));
        assert!(one(Format::GeoJson).starts_with("{\"type\":\"Feature\""));
        assert_eq!(
            one(Format::Csv),
            "id,name,latitude,longitude,level\r\naq_salvia,Salvia,37.5,-3.6,20.5\r\n"
        );
        assert_eq!(one(Format::Ndjson).lines().count(), 1);
    }

    #[test]
    fn chunks_are_cut_once_full_and_nothing_is_lost() {
        let places: Vec<Place> = (0..2_000).map(|_| SALVIA).collect();
        let mut encoder = Encoder::start::<Place>(Format::Ndjson);
        let mut chunks = Vec::new();
        for place in &places {
            encoder.push(place).unwrap();
            chunks.extend(encoder.full_chunk());
        }
        assert!(chunks.len() > 1);
        assert!(chunks.iter().all(|c| c.len() < CHUNK_BYTES + 1024));
        let total: usize = chunks.iter().map(Bytes::len).sum::<usize>() + encoder.finish().len();
        assert_eq!(total, all(Format::Ndjson, &places).len());
    }

    #[test]
    fn geojson_is_offered_only_for_located_records() {
        assert!(offered::<Place>().contains(&Format::GeoJson));
        assert_eq!(offered::<Place>()[0], Format::Json);
    }
}
