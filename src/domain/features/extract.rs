//! Turning one record into its dense model row with a fitted spec.
use super::{Cell, FittedKind, FittedSpec, Record, bin_columns, bin_of, transform};
use crate::domain::lead::parse_bool;
use crate::error::Error;

impl FittedSpec {
    /// Writes the dense row of `record` into `out` (length `n_columns`). Allocates nothing for
    /// string and bool cells. A cell of the wrong type is an error naming the attribute.
    /// Fills `out` with the record's model columns; answers which features were clipped to
    /// their training range.
    pub fn extract_into<R: Record + ?Sized>(
        &self,
        record: &R,
        out: &mut [f64],
    ) -> Result<Clipped, Error> {
        let mut clipped = Clipped::default();
        debug_assert_eq!(out.len(), self.n_columns);
        let mut numbuf = NumText::new();
        for (i, f) in self.features.iter().enumerate() {
            let o = self.offsets[i];
            let cell = record.cell(i, &f.name);
            match &f.kind {
                FittedKind::Numeric {
                    log1p,
                    clip,
                    missing,
                    mean,
                    std,
                    range,
                    edges,
                    ..
                } => {
                    let raw = match cell {
                        None | Some(Cell::Str("")) => None,
                        Some(Cell::Num(x)) => Some(x),
                        Some(Cell::Bool(b)) => Some(if b { 1.0 } else { 0.0 }),
                        Some(Cell::Str(s)) => Some(
                            s.trim()
                                .parse::<f64>()
                                .ok()
                                .filter(|x| x.is_finite())
                                .ok_or_else(|| bad_type(&f.name, "a number", s))?,
                        ),
                    };
                    match raw.filter(|x| !missing.contains(x)) {
                        Some(x) => {
                            let x = match range {
                                Some([lo, hi]) if x < *lo || x > *hi => {
                                    clipped.mark(i);
                                    x.clamp(*lo, *hi)
                                }
                                _ => x,
                            };
                            out[o] = (transform(x, *log1p, *clip) - mean) / std;
                            out[o + 1] = 0.0;
                            if !edges.is_empty() {
                                let bins = &mut out[o + 2..=o + 2 + edges.len()];
                                bins.fill(0.0);
                                bins[bin_of(edges, x)] = 1.0;
                            }
                        }
                        None => {
                            out[o] = 0.0;
                            out[o + 1] = 1.0;
                            out[o + 2..o + 2 + bin_columns(edges)].fill(0.0);
                        }
                    }
                }
                FittedKind::Categorical { vocabulary } => {
                    out[o..=o + vocabulary.len()].fill(0.0);
                    let col = match cell {
                        None | Some(Cell::Str("")) => None,
                        Some(Cell::Str(s)) => self.lookup[i].get(s).copied(),
                        Some(Cell::Bool(b)) => self.lookup[i]
                            .get(if b { "true" } else { "false" })
                            .copied(),
                        Some(Cell::Num(x)) => self.lookup[i].get(numbuf.format(x)).copied(),
                    };
                    out[o + col.unwrap_or(vocabulary.len())] = 1.0;
                }
                FittedKind::Bool { mean } => {
                    out[o] = match cell {
                        None | Some(Cell::Str("")) => *mean,
                        Some(Cell::Bool(b)) => f64::from(u8::from(b)),
                        Some(Cell::Num(x)) if x == 0.0 || x == 1.0 => x,
                        Some(Cell::Num(x)) => {
                            return Err(bad_type(&f.name, "a bool", &x.to_string()));
                        }
                        Some(Cell::Str(s)) => f64::from(u8::from(
                            parse_bool(s).ok_or_else(|| bad_type(&f.name, "a bool", s))?,
                        )),
                    };
                }
            }
        }
        Ok(clipped)
    }
}

/// A number's Display text, on the stack when it fits (it nearly always does), so matching a
/// numeric cell against a categorical vocabulary allocates nothing per request.
struct NumText {
    buf: [u8; 40],
    len: usize,
    spill: String,
}

impl NumText {
    fn new() -> NumText {
        NumText {
            buf: [0; 40],
            len: 0,
            spill: String::new(),
        }
    }

    fn format(&mut self, x: f64) -> &str {
        use std::fmt::Write;
        self.len = 0;
        if write!(self, "{x}").is_ok() {
            // Only whole UTF-8 strs are ever copied in, so this cannot fail.
            return std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default();
        }
        self.spill.clear();
        let _ = write!(self.spill, "{x}");
        &self.spill
    }
}

impl std::fmt::Write for NumText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        let dst = self.buf.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

fn bad_type(name: &str, want: &str, got: &str) -> Error {
    let shown: String = got.chars().take(40).collect();
    Error::invalid(
        format!("lead.attributes[{name}]"),
        format!("expected {want}, got {shown:?}"),
    )
}

/// Which features of a record were clipped to their training range, by feature index (the
/// first 64; a spec has a few dozen at most).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Clipped(u64);

impl Clipped {
    fn mark(&mut self, feature: usize) {
        if feature < 64 {
            self.0 |= 1 << feature;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0 == 0
    }

    pub fn contains(&self, feature: usize) -> bool {
        feature < 64 && self.0 & (1 << feature) != 0
    }
}
