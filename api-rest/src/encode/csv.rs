//! One CSV row (RFC 4180): fields separated by commas, quoted when they hold
//! a comma, a quote or a line break, the row ended by CRLF.

use bytes::{BufMut, BytesMut};
use time::PrimitiveDateTime;

use crate::params::show;

/// A row being written into an answer's buffer.
#[derive(Debug)]
pub struct CsvRow<'a> {
    out: &'a mut BytesMut,
    first: bool,
}

impl<'a> CsvRow<'a> {
    pub(super) fn new(out: &'a mut BytesMut) -> Self {
        Self { out, first: true }
    }

    /// Column names, as fields of a header row.
    pub fn names(&mut self, names: &[&str]) {
        for name in names {
            self.text(name);
        }
    }

    pub fn text(&mut self, value: &str) {
        self.separate();
        if value.contains([',', '"', '\r', '\n']) {
            self.out.put_u8(b'"');
            for part in value.split_inclusive('"') {
                self.out.put_slice(part.as_bytes());
                if part.ends_with('"') {
                    self.out.put_u8(b'"');
                }
            }
            self.out.put_u8(b'"');
        } else {
            self.out.put_slice(value.as_bytes());
        }
    }

    pub fn opt_text(&mut self, value: Option<&str>) {
        match value {
            Some(value) => self.text(value),
            None => self.empty(),
        }
    }

    /// The shortest text that reads back as the same number; empty for NaN
    /// and infinities (JSON writes them as null).
    pub fn number(&mut self, value: f64) {
        if value.is_finite() {
            self.display(value);
        } else {
            self.empty();
        }
    }

    pub fn opt_number(&mut self, value: Option<f64>) {
        match value {
            Some(value) => self.number(value),
            None => self.empty(),
        }
    }

    pub fn integer(&mut self, value: impl itoa::Integer) {
        self.separate();
        self.out
            .put_slice(itoa::Buffer::new().format(value).as_bytes());
    }

    pub fn opt_integer(&mut self, value: Option<impl itoa::Integer>) {
        match value {
            Some(value) => self.integer(value),
            None => self.empty(),
        }
    }

    pub fn boolean(&mut self, value: bool) {
        self.display(value);
    }

    /// A stored time (UTC) in RFC 3339 with `Z`, as in JSON.
    pub fn time(&mut self, value: PrimitiveDateTime) {
        self.text(&show(value));
    }

    pub fn opt_time(&mut self, value: Option<PrimitiveDateTime>) {
        match value {
            Some(value) => self.time(value),
            None => self.empty(),
        }
    }

    /// A null.
    pub fn empty(&mut self) {
        self.separate();
    }

    /// Ends the row.
    pub fn end(&mut self) {
        self.out.put_slice(b"\r\n");
        self.first = true;
    }

    fn display(&mut self, value: impl std::fmt::Display) {
        use std::fmt::Write as _;
        self.separate();
        let mut text = String::new();
        let _ = write!(text, "{value}");
        self.out.put_slice(text.as_bytes());
    }

    fn separate(&mut self) {
        if !self.first {
            self.out.put_u8(b',');
        }
        self.first = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(write: impl FnOnce(&mut CsvRow<'_>)) -> String {
        let mut out = BytesMut::new();
        let mut row = CsvRow::new(&mut out);
        write(&mut row);
        row.end();
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn fields_with_commas_quotes_or_line_breaks_are_quoted() {
        assert_eq!(row(|r| r.text("plain")), "plain\r\n");
        assert_eq!(row(|r| r.text("a,b")), "\"a,b\"\r\n");
        assert_eq!(row(|r| r.text("say \"hi\"")), "\"say \"\"hi\"\"\"\r\n");
        assert_eq!(row(|r| r.text("two\nlines")), "\"two\nlines\"\r\n");
        assert_eq!(row(|r| r.text("\"")), "\"\"\"\"\r\n");
    }

    #[test]
    fn nulls_and_non_finite_numbers_are_empty_fields() {
        assert_eq!(
            row(|r| {
                r.opt_number(None);
                r.number(f64::NAN);
                r.opt_text(None);
                r.number(0.6574);
            }),
            ",,,0.6574\r\n"
        );
    }

    #[test]
    fn numbers_times_and_booleans_read_back_as_written() {
        let text = row(|r| {
            r.number(20.1);
            r.number(25.0);
            r.integer(-7_i64);
            r.boolean(true);
            r.time(time::macros::datetime!(2016-10-01 00:00:00.004));
        });
        assert_eq!(text, "20.1,25,-7,true,2016-10-01T00:00:00.004Z\r\n");
    }
}
