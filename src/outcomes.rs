//! Recorded outcomes as a training CSV: what `leadrouter export-outcomes` writes.
use std::collections::BTreeSet;
use std::path::Path;

use crate::domain::assignment::{Outcome, OutcomeRecord};
use crate::domain::lead::AttrValue;
use crate::training::Table;

/// Metadata columns start with `_`; `train` never infers features from such columns.
pub const META_COLUMNS: [&str; 10] = [
    "_lead_id",
    "_rep_id",
    "_closed_at",
    "_probability",
    "_segment",
    "_model_version",
    "_pool",
    "_assigned_at",
    "_contacted_at",
    "_value",
];

/// An instant (ms) as RFC 3339, empty when unknown.
fn time(ms: Option<i64>) -> String {
    ms.and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn cell(v: &AttrValue) -> String {
    match v {
        AttrValue::String(s) => text(s),
        // Numbers stay numbers (a leading minus is a sign, not a formula).
        AttrValue::Number(x) => x.to_string(),
        AttrValue::Bool(b) => b.to_string(),
    }
}

/// A text cell a spreadsheet will not run as a formula: one starting with `=`, `+`, `-`, `@`,
/// a tab or a carriage return gets a leading `'` (OWASP's advice for CSV injection).
fn text(s: &str) -> String {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_string()
    }
}

/// One row per outcome: metadata, `outcome` (won/lost/disqualified[/returned]) and every lead
/// attribute seen, in sorted column order, cells exactly as `write_csv` writes them (and as
/// training reads them back: trimmed). RETURNED is not a sales result, so it is left out unless
/// asked for; EXPIRED never counts. Rows come oldest close first.
pub fn table(records: &[OutcomeRecord], include_returned: bool) -> Table {
    let mut rows: Vec<&OutcomeRecord> = records
        .iter()
        .filter(|r| r.outcome != Outcome::Expired)
        .filter(|r| include_returned || r.outcome != Outcome::Returned)
        .collect();
    rows.sort_by_key(|r| r.closed_at_ms);
    let attrs: BTreeSet<&str> = rows
        .iter()
        .flat_map(|r| r.context.lead.attributes.keys().map(String::as_str))
        .collect();
    let headers: Vec<String> = META_COLUMNS
        .iter()
        .copied()
        .chain(["outcome"])
        .chain(attrs.iter().copied())
        .map(text)
        .collect();
    let rows = rows
        .iter()
        .map(|r| {
            let mut rec = vec![
                text(&r.context.lead.id),
                text(&r.rep_id),
                time(Some(r.closed_at_ms)),
                r.context.probability.to_string(),
                text(&r.context.segment),
                text(&r.context.model_version),
                text(&r.context.needs.pool),
                time(r.assigned_at_ms),
                time(r.contacted_at_ms),
                r.value.map(|v| v.to_string()).unwrap_or_default(),
                r.outcome.as_str().to_string(),
            ];
            rec.extend(attrs.iter().map(|a| {
                r.context
                    .lead
                    .attributes
                    .get(*a)
                    .map(cell)
                    .unwrap_or_default()
            }));
            rec.into_iter().map(|c| c.trim().to_string()).collect()
        })
        .collect();
    Table { headers, rows }
}

/// Writes `table(records, include_returned)` as CSV; returns the number of rows written.
pub fn write_csv(
    records: &[OutcomeRecord],
    out: &Path,
    include_returned: bool,
) -> Result<usize, String> {
    write_table(&table(records, include_returned), out)
}

/// CSV bytes of `rows`, after `header` when given (ExportOutcomes' chunks).
pub fn csv_bytes(header: Option<&[String]>, rows: &[Vec<String>]) -> Result<Vec<u8>, String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    if let Some(h) = header {
        w.write_record(h).map_err(|e| e.to_string())?;
    }
    for row in rows {
        w.write_record(row).map_err(|e| e.to_string())?;
    }
    w.into_inner().map_err(|e| e.to_string())
}

pub fn write_table(t: &Table, out: &Path) -> Result<usize, String> {
    let mut w =
        csv::Writer::from_path(out).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    w.write_record(&t.headers).map_err(|e| e.to_string())?;
    for row in &t.rows {
        w.write_record(row).map_err(|e| e.to_string())?;
    }
    w.flush().map_err(|e| e.to_string())?;
    Ok(t.rows.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::contract::context;

    #[test]
    fn formulas_are_neutralised_and_numbers_kept() {
        let mut ctx = context("=cmd|' /C calc'!A0", 0.5);
        let attrs = &mut ctx.lead.attributes;
        attrs.insert(
            "link".into(),
            AttrValue::String("=HYPERLINK(\"http://x\")".into()),
        );
        attrs.insert("plus".into(), AttrValue::String("+1+2".into()));
        attrs.insert("at".into(), AttrValue::String("@SUM(A1)".into()));
        attrs.insert("tab".into(), AttrValue::String("\tx".into()));
        attrs.insert("rate".into(), AttrValue::Number(-1.8));
        attrs.insert("job".into(), AttrValue::String("admin.".into()));
        let rec = OutcomeRecord {
            context: ctx,
            rep_id: "-rep".into(),
            outcome: Outcome::Won,
            closed_at_ms: 0,
            assigned_at_ms: Some(-1000),
            contacted_at_ms: None,
            value: Some(1200.5),
        };
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("o.csv");
        assert_eq!(write_csv(&[rec], &out, false).unwrap(), 1);
        let mut r = csv::Reader::from_path(&out).unwrap();
        let header = r.headers().unwrap().clone();
        let row = r.records().next().unwrap().unwrap();
        let get = |name: &str| row[header.iter().position(|h| h == name).unwrap()].to_string();
        assert_eq!(get("_lead_id"), "'=cmd|' /C calc'!A0");
        assert_eq!(get("_rep_id"), "'-rep");
        assert_eq!(get("link"), "'=HYPERLINK(\"http://x\")");
        assert_eq!(get("plus"), "'+1+2");
        assert_eq!(get("at"), "'@SUM(A1)");
        assert_eq!(get("tab"), "'\tx");
        assert_eq!(get("rate"), "-1.8");
        assert_eq!(get("job"), "admin.");
        // Times as RFC 3339 (none: empty), the value as a number.
        assert_eq!(get("_assigned_at"), "1969-12-31T23:59:59Z");
        assert_eq!(get("_contacted_at"), "");
        assert_eq!(get("_value"), "1200.5");
    }
}
