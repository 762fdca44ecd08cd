//! Recorded outcomes as a training CSV: what `leadrouter export-outcomes` writes.
use std::collections::BTreeSet;
use std::path::Path;

use crate::domain::assignment::{Outcome, OutcomeRecord};
use crate::domain::lead::AttrValue;

/// Metadata columns start with `_`; `train` never infers features from such columns.
pub const META_COLUMNS: [&str; 6] = [
    "_lead_id",
    "_rep_id",
    "_closed_at",
    "_probability",
    "_segment",
    "_model_version",
];

fn cell(v: &AttrValue) -> String {
    match v {
        AttrValue::String(s) => s.clone(),
        AttrValue::Number(x) => x.to_string(),
        AttrValue::Bool(b) => b.to_string(),
    }
}

/// Writes one row per outcome: metadata, `outcome` (won/lost/disqualified[/returned]) and every
/// lead attribute seen, in sorted column order. RETURNED is not a sales result, so it is left
/// out unless asked for. Returns the number of rows written.
pub fn write_csv(
    records: &[OutcomeRecord],
    out: &Path,
    include_returned: bool,
) -> Result<usize, String> {
    let rows: Vec<&OutcomeRecord> = records
        .iter()
        .filter(|r| include_returned || r.outcome != Outcome::Returned)
        .collect();
    let attrs: BTreeSet<&str> = rows
        .iter()
        .flat_map(|r| r.context.lead.attributes.keys().map(String::as_str))
        .collect();
    let mut w =
        csv::Writer::from_path(out).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    let header: Vec<&str> = META_COLUMNS
        .iter()
        .copied()
        .chain(["outcome"])
        .chain(attrs.iter().copied())
        .collect();
    w.write_record(&header).map_err(|e| e.to_string())?;
    for r in &rows {
        let closed = jiff::Timestamp::from_millisecond(r.closed_at_ms)
            .map(|t| t.to_string())
            .unwrap_or_default();
        let mut rec = vec![
            r.context.lead.id.clone(),
            r.rep_id.clone(),
            closed,
            r.context.probability.to_string(),
            r.context.segment.clone(),
            r.context.model_version.clone(),
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
        w.write_record(&rec).map_err(|e| e.to_string())?;
    }
    w.flush().map_err(|e| e.to_string())?;
    Ok(rows.len())
}
