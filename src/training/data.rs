//! Reading training CSVs (plain or gzip) and their labels.
use std::io::Read;
use std::path::Path;

use crate::domain::lead::{AttrValue, Lead, parse_bool};

/// A whole CSV in memory: header plus rows of trimmed cells.
pub struct Table {
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn column(&self, name: &str) -> Option<usize> {
        self.headers.iter().position(|h| h == name)
    }

    /// Row `row` as a lead a web form would send: every column but `skip`, finite numbers as
    /// numbers and everything else as text (benchmarks and tests score real rows this way).
    pub fn lead(&self, row: usize, id: String, skip: &[&str]) -> Option<Lead> {
        let attributes = self
            .headers
            .iter()
            .zip(self.rows.get(row)?)
            .filter(|(h, _)| !skip.contains(&h.as_str()))
            .map(|(h, v)| {
                let value = match v.parse::<f64>() {
                    Ok(x) if x.is_finite() => AttrValue::Number(x),
                    _ => AttrValue::String(v.clone()),
                };
                (h.clone(), value)
            })
            .collect();
        Some(Lead { id, attributes })
    }
}

/// Reads `path` (gzip when it ends in .gz). Without a delimiter, picks `;` or `,` by which one
/// splits the header into more fields.
pub fn read(path: &Path, delimiter: Option<u8>) -> super::TrainResult<Table> {
    let file = std::fs::File::open(path).map_err(|source| super::TrainError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut text = Vec::new();
    let read = if path.extension().is_some_and(|e| e == "gz") {
        flate2::read::MultiGzDecoder::new(file).read_to_end(&mut text)
    } else {
        std::io::BufReader::new(file).read_to_end(&mut text)
    };
    read.map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(parse(&text, delimiter, &path.display().to_string())?)
}

/// Parses CSV bytes (`name` labels errors).
pub fn parse(text: &[u8], delimiter: Option<u8>, name: &str) -> Result<Table, String> {
    let delimiter = delimiter.unwrap_or_else(|| {
        let first = text.split(|b| *b == b'\n').next().unwrap_or_default();
        let count = |d: u8| first.iter().filter(|b| **b == d).count();
        if count(b';') > count(b',') {
            b';'
        } else {
            b','
        }
    });
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .trim(csv::Trim::All)
        .from_reader(text);
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| format!("{}: bad header: {e}", name))?
        .iter()
        .map(str::to_string)
        .collect();
    let mut rows = Vec::new();
    for (i, rec) in reader.records().enumerate() {
        let rec = rec.map_err(|e| format!("{}: line {}: {e}", name, i + 2))?;
        if rec.len() != headers.len() {
            return Err(format!(
                "{}: line {} has {} fields, the header has {}",
                name,
                i + 2,
                rec.len(),
                headers.len()
            ));
        }
        rows.push(rec.iter().map(str::to_string).collect());
    }
    if rows.is_empty() {
        return Err(format!("{} has no data rows", name));
    }
    Ok(Table { headers, rows })
}

pub struct Labels {
    pub values: Vec<bool>,
    /// The label text that counts as positive.
    pub positive: String,
}

/// Reads the label column as booleans. Without `positive`, a yes/no, true/false or 1/0 column
/// is understood; anything else must name its positive value.
pub fn labels(table: &Table, label: &str, positive: Option<&str>) -> Result<Labels, String> {
    let col = table
        .column(label)
        .ok_or_else(|| missing_label(label, &table.headers))?;
    let mut distinct: Vec<&str> = table.rows.iter().map(|r| r[col].as_str()).collect();
    distinct.sort_unstable();
    distinct.dedup();
    let positive = positive_value(label, &distinct, positive)?;
    let values = table
        .rows
        .iter()
        .map(|r| r[col].eq_ignore_ascii_case(&positive))
        .collect();
    two_classes(label, Labels { values, positive })
}

/// The same for a frame (what `train` reads).
pub fn frame_labels(
    frame: &super::frame::Frame,
    label: &str,
    positive: Option<&str>,
) -> Result<Labels, String> {
    let col = frame
        .column(label)
        .ok_or_else(|| missing_label(label, &frame.headers))?;
    let column = &frame.columns[col];
    let texts: Vec<std::borrow::Cow<str>> = (0..frame.rows).map(|r| column.text(r)).collect();
    let mut distinct: Vec<&str> = texts.iter().map(|t| &**t).collect();
    distinct.sort_unstable();
    distinct.dedup();
    let positive = positive_value(label, &distinct, positive)?;
    let values = texts
        .iter()
        .map(|t| t.eq_ignore_ascii_case(&positive))
        .collect();
    two_classes(label, Labels { values, positive })
}

fn missing_label(label: &str, headers: &[String]) -> String {
    format!(
        "label column {label:?} not found; columns are: {}",
        headers.join(", ")
    )
}

/// The label text that counts as positive: `given`, or the true one of a bool-like column.
fn positive_value(label: &str, distinct: &[&str], given: Option<&str>) -> Result<String, String> {
    if let Some(p) = given {
        return Ok(p.to_string());
    }
    if distinct.len() > 2 || distinct.iter().any(|v| parse_bool(v).is_none()) {
        return Err(format!(
            "label {label:?} has values {:?}; pass --positive VALUE",
            distinct.iter().take(5).collect::<Vec<_>>()
        ));
    }
    Ok(distinct
        .iter()
        .find(|v| parse_bool(v) == Some(true))
        .map_or("true".into(), |v| v.to_string()))
}

fn two_classes(label: &str, labels: Labels) -> Result<Labels, String> {
    let values = &labels.values;
    let pos = values.iter().filter(|v| **v).count();
    if pos == 0 || pos == values.len() {
        return Err(format!(
            "label {label:?} has a single class ({pos} of {} rows are {:?})",
            values.len(),
            labels.positive
        ));
    }
    Ok(labels)
}
