//! Span fields as a JSON object, for the JSON log format. tracing-subscriber's
//! own `JsonFields` builds a `serde_json` map for every span; the request span
//! is made for every request, and its fields are read back only when something
//! is logged inside it. This writes the same object directly.

use std::fmt::{self, Write};

use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::FormattedFields;
use tracing_subscriber::fmt::format::Writer;

#[derive(Debug, Default)]
pub(super) struct JsonSpanFields;

impl<'writer> FormatFields<'writer> for JsonSpanFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        writer.write_char('{')?;
        let mut members = Members::new(&mut writer);
        fields.record(&mut members);
        members.result?;
        writer.write_char('}')
    }

    fn add_fields(
        &self,
        current: &'writer mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        let mut added = String::new();
        let mut members = Members::new(&mut added);
        fields.record(&mut members);
        members.result?;
        if added.is_empty() {
            return Ok(());
        }
        let object = &mut current.fields;
        match object.pop() {
            Some('}') if object.len() > 1 => object.push(','),
            Some('}') => {}
            _ => object.push('{'),
        }
        object.push_str(&added);
        object.push('}');
        Ok(())
    }
}

/// Writes `"name":value` members, comma-separated.
struct Members<'a, W: Write> {
    out: &'a mut W,
    first: bool,
    result: fmt::Result,
}

impl<'a, W: Write> Members<'a, W> {
    fn new(out: &'a mut W) -> Self {
        Self {
            out,
            first: true,
            result: Ok(()),
        }
    }

    fn member(&mut self, field: &Field, value: impl FnOnce(&mut W) -> fmt::Result) {
        if self.result.is_err() {
            return;
        }
        let separator = if self.first { "" } else { "," };
        self.first = false;
        self.result = write!(self.out, "{separator}\"")
            .and_then(|()| escaped(self.out, field.name()))
            .and_then(|()| self.out.write_str("\":"))
            .and_then(|()| value(self.out));
    }
}

impl<W: Write> Visit for Members<'_, W> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.member(field, |out| string(out, value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        self.member(field, |out| string(out, &text));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.member(field, |out| write!(out, "{value}"));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.member(field, |out| write!(out, "{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.member(field, |out| write!(out, "{value}"));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if value.is_finite() {
            self.member(field, |out| write!(out, "{value}"));
        } else {
            self.member(field, |out| string(out, &value.to_string()));
        }
    }
}

fn string(out: &mut impl Write, text: &str) -> fmt::Result {
    out.write_char('"')?;
    escaped(out, text)?;
    out.write_char('"')
}

/// The inside of a JSON string.
fn escaped(out: &mut impl Write, text: &str) -> fmt::Result {
    let mut plain = 0;
    for (i, c) in text.char_indices() {
        let escape = match c {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            c if c < ' ' => {
                out.write_str(&text[plain..i])?;
                write!(out, "\\u{:04x}", u32::from(c))?;
                plain = i + 1;
                continue;
            }
            _ => continue,
        };
        out.write_str(&text[plain..i])?;
        out.write_str(escape)?;
        plain = i + 1;
    }
    out.write_str(&text[plain..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    /// The JSON lines logged inside a span with these fields.
    fn logged_inside(record: impl FnOnce()) -> Vec<serde_json::Value> {
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
        let sink = lines.clone();
        let writer = move || Sink(sink.clone());
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .json()
                .with_current_span(true)
                .fmt_fields(JsonSpanFields)
                .with_writer(writer),
        );
        tracing::subscriber::with_default(subscriber, record);
        let text = String::from_utf8(lines.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_inside_a_span_carry_its_fields_as_json() {
        let lines = logged_inside(|| {
            let span = tracing::info_span!(
                "request",
                request_id = "a\"b\\c\u{1}",
                n = 7_u64,
                later = tracing::field::Empty
            );
            let _inside = span.enter();
            tracing::warn!(ok = true, "first");
            span.record("later", -3_i64);
            tracing::warn!("second");
        });
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["span"]["request_id"], "a\"b\\c\u{1}");
        assert_eq!(lines[0]["span"]["n"], 7);
        assert_eq!(lines[0]["span"]["name"], "request");
        assert_eq!(lines[0]["fields"]["ok"], true);
        assert_eq!(lines[1]["span"]["later"], -3);
        assert_eq!(lines[1]["span"]["request_id"], "a\"b\\c\u{1}");
    }
}
