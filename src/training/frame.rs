//! A training CSV read once, typed and columnar (issue 16): no `String` per cell. Columns with
//! few distinct values keep their exact text as dictionary codes; columns of many distinct
//! numbers become `f64`s, with the odd non-number cell kept as text beside them.
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use crate::domain::features::{self, Cell, FeatureDef, FeatureSpec, Record};

use super::{TrainError, TrainResult};

/// Distinct values a column keeps as text before it is tried as numbers. Low enough that a
/// column of measurements turns numeric early; high enough that every categorical column of
/// the bundled data sets (and so the shipped model, byte for byte) stays exact text.
const DICT_MAX: usize = 4096;

type Dict = HashMap<Box<str>, u32, foldhash::fast::RandomState>;

/// Elements per chunk of a column.
const CHUNK: usize = 1 << 16;

/// A column's values in fixed-size chunks: growing never copies, so reading a big file
/// leaves no freed buffers behind (with doubling Vecs the allocator kept ~150 MB of them
/// resident at 10^6 x 40).
pub struct Chunked<T> {
    chunks: Vec<Vec<T>>,
    len: usize,
}

impl<T: Copy> Chunked<T> {
    fn new() -> Self {
        Chunked {
            chunks: Vec::new(),
            len: 0,
        }
    }

    fn push(&mut self, x: T) {
        if self.len.is_multiple_of(CHUNK) {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        if let Some(last) = self.chunks.last_mut() {
            last.push(x);
        }
        self.len += 1;
    }

    pub fn get(&self, i: usize) -> T {
        self.chunks[i / CHUNK][i % CHUNK]
    }

    fn iter(&self) -> impl Iterator<Item = T> + '_ {
        self.chunks.iter().flatten().copied()
    }
}

/// One column.
pub enum Column {
    /// Row `r` is `values[codes[r]]`.
    Text {
        codes: Chunked<u32>,
        values: Vec<Box<str>>,
    },
    /// Row `r` is `values[r]`, or, where that is NaN, the text `text[r]` (a cell that is not a
    /// finite number: empty, "unknown", "inf").
    Number {
        values: Chunked<f64>,
        text: BTreeMap<u32, Box<str>>,
    },
}

impl Column {
    pub fn cell(&self, r: usize) -> Cell<'_> {
        match self {
            Column::Text { codes, values } => Cell::Str(&values[codes.get(r) as usize]),
            Column::Number { values, text } => match values.get(r) {
                x if x.is_nan() => Cell::Str(text.get(&(r as u32)).map_or("", |s| s)),
                x => Cell::Num(x),
            },
        }
    }

    /// The cell as text (numbers in their shortest form).
    pub fn text(&self, r: usize) -> Cow<'_, str> {
        match self.cell(r) {
            Cell::Str(s) => Cow::Borrowed(s),
            Cell::Num(x) => Cow::Owned(x.to_string()),
            Cell::Bool(b) => Cow::Owned(b.to_string()),
        }
    }

    /// Every distinct text value (a number column answers with its non-number cells only:
    /// all that kind inference needs to see besides "there are numbers").
    fn distinct_text(&self) -> Vec<&str> {
        match self {
            Column::Text { values, .. } => values.iter().map(|s| &**s).collect(),
            Column::Number { text, .. } => text.values().map(|s| &**s).collect(),
        }
    }
}

/// A CSV's header and typed columns.
pub struct Frame {
    pub headers: Vec<String>,
    pub columns: Vec<Column>,
    pub rows: usize,
    /// SHA-256 (hex) of the file's bytes as stored, hashed as they were read.
    pub fingerprint: String,
}

/// Hashes what passes through it: the file is read once for its rows and its fingerprint.
struct Hashing<R> {
    inner: R,
    hash: std::rc::Rc<std::cell::RefCell<sha2::Sha256>>,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        sha2::Digest::update(&mut *self.hash.borrow_mut(), &buf[..n]);
        Ok(n)
    }
}

impl Frame {
    pub fn column(&self, name: &str) -> Option<usize> {
        self.headers.iter().position(|h| h == name)
    }

    /// The spec `infer_spec` would infer from the same data as a table: every column but the
    /// label, the excluded ones and metadata (`_`) columns, kind by `features::infer_kind`.
    pub fn infer_spec(&self, label: &str, exclude: &[String]) -> FeatureSpec {
        let features = self
            .headers
            .iter()
            .zip(&self.columns)
            .filter(|(h, _)| {
                h.as_str() != label && !h.starts_with('_') && !exclude.iter().any(|e| e == *h)
            })
            .map(|(h, c)| {
                // Kind inference asks "is every value a bool word / a number?": the distinct
                // values answer as all rows would; a number column adds one number.
                let mut values = c.distinct_text();
                if matches!(c, Column::Number { .. }) {
                    values.push("0");
                }
                FeatureDef {
                    name: h.clone(),
                    kind: features::infer_kind(values.into_iter()),
                }
            })
            .collect();
        FeatureSpec { features }
    }
}

/// Row `row` of a frame through a feature-to-column map.
pub struct FrameRow<'a> {
    pub frame: &'a Frame,
    pub columns: &'a [usize],
    pub row: usize,
}

impl Record for FrameRow<'_> {
    fn cell(&self, index: usize, _name: &str) -> Option<Cell<'_>> {
        let c = *self.columns.get(index)?;
        Some(self.frame.columns.get(c)?.cell(self.row))
    }
}

enum Builder {
    Text {
        dict: Dict,
        values: Vec<Box<str>>,
        codes: Chunked<u32>,
        /// Tried as numbers once and found text: stays text.
        settled: bool,
    },
    Number {
        values: Chunked<f64>,
        text: BTreeMap<u32, Box<str>>,
    },
}

fn finite(s: &str) -> Option<f64> {
    s.parse::<f64>().ok().filter(|x| x.is_finite())
}

impl Builder {
    fn new() -> Builder {
        Builder::Text {
            dict: Dict::default(),
            values: Vec::new(),
            codes: Chunked::new(),
            settled: false,
        }
    }

    fn push(&mut self, cell: &str) {
        match self {
            Builder::Number { values, text } => match finite(cell) {
                Some(x) => values.push(x),
                None => {
                    text.insert(values.len as u32, cell.into());
                    values.push(f64::NAN);
                }
            },
            Builder::Text {
                dict,
                values,
                codes,
                settled,
            } => {
                let code = match dict.get(cell) {
                    Some(&c) => c,
                    None => {
                        let c = values.len() as u32;
                        dict.insert(cell.into(), c);
                        values.push(cell.into());
                        c
                    }
                };
                codes.push(code);
                if !*settled && values.len() > DICT_MAX {
                    *settled = true;
                    if let Some(numbers) = as_numbers(values, codes) {
                        *self = numbers;
                    }
                }
            }
        }
    }

    fn finish(self) -> Column {
        match self {
            Builder::Text { values, codes, .. } => Column::Text { codes, values },
            Builder::Number { values, text } => Column::Number { values, text },
        }
    }
}

/// The column as numbers, when every distinct non-empty value is a finite number.
fn as_numbers(values: &[Box<str>], codes: &Chunked<u32>) -> Option<Builder> {
    let parsed: Vec<Option<f64>> = values.iter().map(|v| finite(v)).collect();
    if values
        .iter()
        .zip(&parsed)
        .any(|(v, p)| p.is_none() && !v.is_empty())
    {
        return None;
    }
    let mut text = BTreeMap::new();
    let mut numbers = Chunked::new();
    for (r, c) in codes.iter().enumerate() {
        numbers.push(match parsed[c as usize] {
            Some(x) => x,
            None => {
                text.insert(r as u32, values[c as usize].clone());
                f64::NAN
            }
        });
    }
    Some(Builder::Number {
        values: numbers,
        text,
    })
}

/// Reads `path` (gzip when it ends in .gz) in one streaming pass. Without a delimiter, picks
/// `;` or `,` by which one splits the header into more fields.
pub fn read(path: &Path, delimiter: Option<u8>) -> TrainResult<Frame> {
    let io = |source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    };
    let hash = std::rc::Rc::default();
    let file = Hashing {
        inner: std::fs::File::open(path).map_err(io)?,
        hash: std::rc::Rc::clone(&hash),
    };
    let input: Box<dyn Read> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(file)))
    } else {
        Box::new(file)
    };
    let mut input = BufReader::with_capacity(1 << 20, input);
    let delimiter = match delimiter {
        Some(d) => d,
        None => sniff(input.fill_buf().map_err(io)?),
    };
    let name = path.display().to_string();
    let (mut frame, mut rest) = parse(input, delimiter, &name).map_err(TrainError::Data)?;
    // Whatever the parser left unread (nothing, or a gzip trailer) still counts.
    std::io::copy(&mut rest, &mut std::io::sink()).map_err(io)?;
    drop(rest);
    let hash =
        std::rc::Rc::try_unwrap(hash).map_or_else(|h| h.borrow().clone(), |h| h.into_inner());
    frame.fingerprint = sha2::Digest::finalize(hash)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(frame)
}

fn sniff(head: &[u8]) -> u8 {
    let first = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let count = |d: u8| first.iter().filter(|b| **b == d).count();
    if count(b';') > count(b',') {
        b';'
    } else {
        b','
    }
}

/// The frame (without its fingerprint) and the input, where the parser stopped.
fn parse<R: Read>(input: R, delimiter: u8, name: &str) -> Result<(Frame, R), String> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        // Fields are trimmed as they are pushed (as `Trim::All` would: ASCII whitespace):
        // trimming the record rebuilt it, ~8 % of a big file's read.
        .trim(csv::Trim::Headers)
        .from_reader(input);
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| format!("{name}: bad header: {e}"))?
        .iter()
        .map(str::to_string)
        .collect();
    let mut builders: Vec<Builder> = headers.iter().map(|_| Builder::new()).collect();
    let mut record = csv::StringRecord::new();
    let mut rows = 0usize;
    loop {
        let line = rows + 2;
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(format!("{name}: line {line}: {e}")),
        }
        if record.len() != headers.len() {
            return Err(format!(
                "{name}: line {line} has {} fields, the header has {}",
                record.len(),
                headers.len()
            ));
        }
        if rows >= u32::MAX as usize {
            return Err(format!("{name}: more than {} rows", u32::MAX));
        }
        for (b, cell) in builders.iter_mut().zip(record.iter()) {
            b.push(cell.trim_ascii());
        }
        rows += 1;
    }
    if rows == 0 {
        return Err(format!("{name} has no data rows"));
    }
    let frame = Frame {
        headers,
        columns: builders.into_iter().map(Builder::finish).collect(),
        rows,
        fingerprint: String::new(),
    };
    Ok((frame, reader.into_inner()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::training::data;

    /// Every cell reads back as the table reader's text (numbers as the same number), and the
    /// inferred spec is the table's, across a text, a many-numbers and a mixed column.
    #[test]
    fn reads_what_the_table_reads_and_infers_the_same_spec() {
        let mut csv = String::from("id;amount;city;flag;odd\n");
        for i in 0..(DICT_MAX + 500) {
            // "n/a" early keeps `odd` text; in `amount` it comes after the switch to numbers.
            let odd = if i == 10 {
                "n/a".to_string()
            } else {
                format!("{i}")
            };
            let amount = match i {
                4300 => "n/a".to_string(),
                i if i % 1000 == 7 => String::new(),
                i => format!("{i}.25"),
            };
            let flag = if i % 2 == 0 { "yes" } else { "no" };
            csv.push_str(&format!("l{i};{amount};c{};{flag};{odd}\n", i % 7));
        }
        let table = data::parse(csv.as_bytes(), None, "t").unwrap();
        let frame = parse(csv.as_bytes(), b';', "t").unwrap().0;
        assert_eq!(frame.rows, table.rows.len());
        assert!(matches!(frame.columns[1], Column::Number { .. }));
        assert!(matches!(frame.columns[2], Column::Text { .. }));
        assert!(
            matches!(frame.columns[4], Column::Text { .. }),
            "n/a keeps it text"
        );
        for (r, row) in table.rows.iter().enumerate() {
            for (c, cell) in row.iter().enumerate() {
                match frame.columns[c].cell(r) {
                    Cell::Str(s) => assert_eq!(s, cell),
                    Cell::Num(x) => assert_eq!(Some(x), cell.parse().ok()),
                    Cell::Bool(_) => unreachable!(),
                }
            }
        }
        let want = crate::training::infer_spec(&table, "flag", &[]);
        let got = frame.infer_spec("flag", &[]);
        assert_eq!(
            serde_json::to_string(&got).unwrap(),
            serde_json::to_string(&want).unwrap()
        );
        assert_eq!(sniff(csv.as_bytes()), b';');
        // Read from a file, plain and gzipped: the fingerprint is the stored bytes' hash.
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("t.csv");
        std::fs::write(&plain, &csv).unwrap();
        let gz = dir.path().join("t.csv.gz");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut enc, csv.as_bytes()).unwrap();
        std::fs::write(&gz, enc.finish().unwrap()).unwrap();
        for path in [plain, gz] {
            let f = read(&path, None).unwrap();
            assert_eq!(f.rows, table.rows.len());
            assert_eq!(f.fingerprint, crate::training::fingerprint(&path).unwrap());
        }
    }

    #[test]
    fn ragged_rows_and_empty_files_name_the_line() {
        let err = parse("a,b\n1,2\n3\n".as_bytes(), b',', "f").err().unwrap();
        assert!(err.contains("line 3"), "{err}");
        let err = parse("a,b\n".as_bytes(), b',', "f").err().unwrap();
        assert!(err.contains("no data rows"), "{err}");
    }
}
