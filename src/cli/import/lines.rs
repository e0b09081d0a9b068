//! Reading an import file: capped lines, the format (given, by extension or
//! sniffed), JSON objects and CSV records turned into an event's fields.

use std::io::{self, BufRead};
use std::path::Path;

use serde_json::Value;

use super::super::events::{EventFields, FieldError};
use super::super::UsageError;

/// Longest line accepted, in bytes without its line end.
pub const MAX_LINE: usize = 64 * 1024;
/// The fields a line may have, named as the command line's flags.
const FIELDS: [&str; 12] = [
    "kind",
    "sku",
    "qty",
    "id",
    "location",
    "ref",
    "policy",
    "reason",
    "reservation",
    "to",
    "from",
    "transfer",
];
/// The fields every line needs (a CSV header must name them all).
const REQUIRED: [&str; 4] = ["kind", "sku", "qty", "id"];

/// An input format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object per line.
    Jsonl,
    /// Comma-separated values with a header row, one record per line.
    Csv,
}

impl Format {
    /// The format a file's extension names, if any.
    pub fn of_path(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "csv" => Some(Format::Csv),
            "jsonl" | "json" | "ndjson" => Some(Format::Jsonl),
            _ => None,
        }
    }
}

/// An id as shown in a report (an over-long one is cut).
pub(super) fn shown(id: &str) -> String {
    id.chars().take(80).collect()
}

/// A line's fields, in the order of [`FIELDS`]; an empty CSV cell is absent.
#[derive(Default)]
pub(super) struct Values([Option<String>; FIELDS.len()]);

impl Values {
    /// The field `name`, if the line has it.
    fn get(&self, name: &str) -> Option<&str> {
        let i = FIELDS.iter().position(|f| *f == name)?;
        self.0[i].as_deref()
    }

    /// The `id` field as shown in a report.
    pub(super) fn id(&self) -> Option<String> {
        self.get("id").map(shown)
    }

    /// The event's fields; every field of [`REQUIRED`] must be there.
    pub(super) fn fields(&self) -> Result<EventFields<'_>, FieldError> {
        let need = |name: &'static str| self.get(name).ok_or(FieldError::Missing(name));
        Ok(EventFields {
            kind: need("kind")?,
            sku: need("sku")?,
            qty: need("qty")?,
            id: Some(need("id")?),
            location: self.get("location"),
            reference: self.get("ref"),
            policy: self.get("policy"),
            reason: self.get("reason"),
            reservation: self.get("reservation"),
            to: self.get("to"),
            from: self.get("from"),
            transfer: self.get("transfer"),
        })
    }
}

/// What one line holds.
pub(super) enum Parsed {
    /// A blank line or the CSV header.
    Skip,
    /// An event's fields.
    Values(Box<Values>),
    /// A line that cannot be read: its id if known, and why.
    Bad(Option<String>, String),
}

/// Parses lines of one file; learns its format (unless given) and its CSV header
/// from its first non-blank line.
pub(super) struct Parser {
    /// The file's format, once given or learnt.
    pub(super) format: Option<Format>,
    /// For each CSV column, its index in [`FIELDS`].
    pub(super) columns: Option<Vec<usize>>,
}

impl Parser {
    /// Parses one line; a bad CSV header fails the whole file.
    pub(super) fn parse(&mut self, text: &str) -> Result<Parsed, UsageError> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(Parsed::Skip);
        }
        let format = *self.format.get_or_insert(if text.starts_with('{') {
            Format::Jsonl
        } else {
            Format::Csv
        });
        if format == Format::Jsonl {
            return Ok(json_line(text));
        }
        let Some(columns) = &self.columns else {
            self.columns = Some(csv_header(text)?);
            return Ok(Parsed::Skip);
        };
        let record = match csv_record(text) {
            Ok(r) => r,
            Err(reason) => return Ok(Parsed::Bad(None, reason)),
        };
        let mut values = Values::default();
        for (cell, field) in record.iter().zip(columns) {
            if !cell.is_empty() {
                values.0[*field] = Some(cell.to_string());
            }
        }
        if record.len() != columns.len() {
            let reason = format!(
                "{} fields, but the header names {}",
                record.len(),
                columns.len()
            );
            return Ok(Parsed::Bad(values.id(), reason));
        }
        Ok(Parsed::Values(Box::new(values)))
    }
}

/// One JSON object's fields: strings, numbers (kept as written) or null.
fn json_line(text: &str) -> Parsed {
    let map: serde_json::Map<String, Value> = match serde_json::from_str(text) {
        Ok(m) => m,
        Err(e) => return Parsed::Bad(None, format!("malformed JSON: {e}")),
    };
    let id = match map.get("id") {
        Some(Value::String(s)) => Some(shown(s)),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let mut values = Values::default();
    for (name, value) in map {
        let Some(i) = FIELDS.iter().position(|f| *f == name) else {
            let reason = format!("unknown field {name:?}; fields are {}", FIELDS.join(", "));
            return Parsed::Bad(id, reason);
        };
        values.0[i] = match value {
            Value::String(s) => Some(s),
            Value::Number(n) => Some(n.to_string()),
            Value::Null => None,
            _ => return Parsed::Bad(id, format!("field {name} must be a string or a number")),
        };
    }
    Parsed::Values(Box::new(values))
}

/// One CSV record on one line (a quoted field may not span lines).
fn csv_record(text: &str) -> Result<csv::StringRecord, String> {
    if text.bytes().filter(|b| *b == b'"').count() % 2 == 1 {
        return Err("unbalanced quotes (a CSV record must be on one line)".into());
    }
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let mut record = csv::StringRecord::new();
    match reader.read_record(&mut record) {
        Ok(_) => Ok(record),
        Err(e) => Err(format!("malformed CSV: {e}")),
    }
}

/// The CSV header: every column a known field, no column twice, the required ones there.
fn csv_header(text: &str) -> Result<Vec<usize>, UsageError> {
    let bad = |m: String| UsageError(format!("CSV header: {m}; nothing was imported"));
    let record = csv_record(text).map_err(bad)?;
    let mut columns = Vec::with_capacity(record.len());
    for name in record.iter() {
        let Some(i) = FIELDS.iter().position(|f| f.eq_ignore_ascii_case(name)) else {
            let known = FIELDS.join(", ");
            return Err(bad(format!("unknown column {name:?}; columns are {known}")));
        };
        if columns.contains(&i) {
            return Err(bad(format!("column {name:?} appears twice")));
        }
        columns.push(i);
    }
    if let Some(missing) = REQUIRED
        .iter()
        .find(|r| !columns.iter().any(|i| FIELDS[*i] == **r))
    {
        return Err(bad(format!("no {missing} column")));
    }
    Ok(columns)
}

/// One line read from the input.
pub(super) enum Line {
    /// The line is in the buffer, without its line end.
    Text,
    /// The line was longer than [`MAX_LINE`]: its length; it was skipped.
    TooLong(usize),
}

/// Reads one line into `buf`, never holding more than [`MAX_LINE`] bytes of it;
/// `None` at the end of the input.
pub(super) fn read_line(input: &mut dyn BufRead, buf: &mut Vec<u8>) -> io::Result<Option<Line>> {
    buf.clear();
    let (mut len, mut any) = (0usize, false);
    loop {
        let chunk = input.fill_buf()?;
        if chunk.is_empty() {
            break;
        }
        any = true;
        let (take, end) = match chunk.iter().position(|b| *b == b'\n') {
            Some(i) => (i, true),
            None => (chunk.len(), false),
        };
        if len + take <= MAX_LINE + 1 {
            buf.extend_from_slice(&chunk[..take]);
        }
        len += take;
        input.consume(take + usize::from(end));
        if end {
            break;
        }
    }
    if !any {
        return Ok(None);
    }
    // A line end of CR LF: drop the CR (from a line held whole).
    if len == buf.len() && buf.last() == Some(&b'\r') {
        buf.pop();
        len -= 1;
    }
    Ok(Some(if len > MAX_LINE {
        Line::TooLong(len)
    } else {
        Line::Text
    }))
}
