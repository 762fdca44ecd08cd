//! The Redis store's `ReportLedger`: counters read bucket by bucket (the scripts keep them),
//! imported leads and unroutable counts through import.lua, targets in one global hash.
use async_trait::async_trait;
use jiff::Timestamp;
use redis::AsyncCommands;

use crate::domain::assignment::{HistoryLead, Imported, Outcome};
use crate::domain::event::EventKind;
use crate::domain::ledger::{
    Bucket, Cell, Delta, Grain, Holding, LedgerCell, Metric, Stage, Tick, m, month_of_day, tally,
};
use crate::domain::target::Target;
use crate::error::{Error, Result};
use crate::store::ledger::{ReportLedger, report_day};
use crate::store::millis;

use super::conn::classify;
use super::{RedisStore, keys};

/// Leads per import.lua call: large enough that their counters mostly share fields, small
/// enough that one call stays a few milliseconds of Redis time.
const IMPORT_BATCH: usize = 200;

impl RedisStore {
    /// Every cell of one pool's buckets.
    async fn pool_cells(
        &self,
        pool: &str,
        grain: Grain,
        from: i32,
        to: i32,
    ) -> Result<Vec<LedgerCell>> {
        let base = self.pool(pool).report();
        let buckets: Vec<String> = match grain {
            Grain::Now => vec!["now".into()],
            Grain::Day | Grain::Month => {
                let index = if grain == Grain::Day {
                    "days"
                } else {
                    "months"
                };
                let bound = |x: i32, open: &str| match x {
                    i32::MIN | i32::MAX => open.to_string(),
                    x => x.to_string(),
                };
                self.conn()
                    .zrangebyscore(
                        format!("{base}{index}"),
                        bound(from, "-inf"),
                        bound(to, "+inf"),
                    )
                    .await
                    .map_err(classify)?
            }
        };
        let mut pipe = redis::pipe();
        for b in &buckets {
            pipe.cmd("HGETALL").arg(format!("{base}{b}"));
        }
        let hashes: Vec<Vec<(String, f64)>> = self.query_pipe(pipe, buckets.len()).await?;
        let mut out = Vec::new();
        for (b, fields) in buckets.iter().zip(hashes) {
            let bucket = Bucket::parse(b)
                .ok_or_else(|| Error::Internal(format!("report bucket {b:?} of {pool:?}")))?;
            let mut cells: std::collections::BTreeMap<(String, String), Cell> = Default::default();
            for (field, v) in fields {
                let mut parts = field.splitn(3, '\u{1f}');
                let (Some(metric), Some(rep), Some(seg)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    continue;
                };
                let Ok(metric) = metric.parse::<Metric>() else {
                    continue;
                };
                cells
                    .entry((rep.to_string(), seg.to_string()))
                    .or_default()
                    .add(metric, v);
            }
            out.extend(cells.into_iter().map(|((rep, segment), cell)| LedgerCell {
                pool: pool.to_string(),
                bucket,
                rep,
                segment,
                cell,
            }));
        }
        Ok(out)
    }

    /// import.lua for leads of one pool (records, held members and their counter changes)
    /// plus changes applied regardless.
    fn import_invocation(
        &self,
        pool: &str,
        leads: &[(String, serde_json::Value)],
        extra: &[Delta],
    ) -> redis::ScriptInvocation<'_> {
        let keys = self.pool(pool);
        let mut inv = self.import.prepare_invoke();
        inv.key(keys.k("held")).key(keys.report());
        for (id, _) in leads {
            inv.key(keys.lead(id));
        }
        let entries: Vec<&serde_json::Value> = leads.iter().map(|(_, v)| v).collect();
        inv.arg(serde_json::to_string(&entries).unwrap_or_default())
            .arg(serde_json::to_string(&deltas_json(extra)).unwrap_or_default());
        inv
    }
}

/// Counter changes as import.lua reads them: [bucket, field, change] (the change as text, so
/// it reaches Lua exactly).
fn deltas_json(deltas: &[Delta]) -> Vec<[String; 3]> {
    deltas
        .iter()
        .map(|d| {
            [
                d.bucket.key(),
                format!("{}\u{1f}{}\u{1f}{}", d.metric, d.rep, d.segment),
                d.delta.to_string(),
            ]
        })
        .collect()
}

/// The counters of an imported lead, as the memory store records them (no queue wait).
fn import_deltas(h: &HistoryLead, at: i64, day: impl Fn(i64) -> i32 + Copy) -> Vec<Delta> {
    let ctx = &h.context;
    let tick = |kind, outcome: Option<Outcome>, before, after, new, at_ms| Tick {
        kind,
        rep: h.rep_id.clone(),
        segment: ctx.segment.clone(),
        probability: ctx.probability,
        expected_value: ctx.expected_value,
        outcome: outcome.map(|o| o.as_str().to_string()),
        value: h.value,
        before,
        after,
        new,
        held_since_ms: at,
        at_ms,
    };
    let holding = || Holding {
        rep: h.rep_id.clone(),
        since_ms: at,
    };
    let mut out = tally(
        &tick(EventKind::Assigned, None, None, Some(holding()), true, at),
        day,
    );
    if let Some((o, closed_at)) = h.closed {
        out.extend(tally(
            &tick(
                EventKind::Closed,
                Some(o),
                Some(holding()),
                None,
                false,
                closed_at,
            ),
            day,
        ));
    }
    let wait = m::HIST + Stage::QueueWait as u16 * m::HIST_BUCKETS;
    out.retain(|d| !(wait..wait + m::HIST_BUCKETS).contains(&d.metric));
    out
}

#[async_trait]
impl ReportLedger for RedisStore {
    async fn ledger(
        &self,
        pool: Option<&str>,
        grain: Grain,
        from: i32,
        to: i32,
    ) -> Result<Vec<LedgerCell>> {
        let pools = match pool {
            Some(p) => vec![p.to_string()],
            None => self.pools().await?,
        };
        let mut out = Vec::new();
        for p in pools {
            out.extend(self.pool_cells(&p, grain, from, to).await?);
        }
        Ok(out)
    }

    async fn note_unroutable(&self, pool: &str, segment: &str, now: Timestamp) -> Result<()> {
        self.register_pool(pool).await?;
        let day = report_day(millis(now), &self.zone);
        let deltas: Vec<Delta> = [Bucket::Day(day), Bucket::Month(month_of_day(day))]
            .map(|bucket| Delta {
                bucket,
                rep: String::new(),
                segment: segment.to_string(),
                metric: m::UNROUTABLE,
                delta: 1.0,
            })
            .to_vec();
        let _: Vec<i64> = self
            .import_invocation(pool, &[], &deltas)
            .invoke_async(&mut self.conn())
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn import_history(&self, leads: Vec<HistoryLead>) -> Result<Imported> {
        let zone = self.zone.clone();
        let day = |ms: i64| report_day(ms, &zone);
        let mut out = Imported::default();
        // One script call per pool and chunk: records, held members and summed counters.
        let mut by_pool: std::collections::BTreeMap<String, Vec<(String, serde_json::Value)>> =
            Default::default();
        for h in &leads {
            let Some(at) = h.assigned_at_ms.or(h.closed.map(|c| c.1)) else {
                out.skipped += 1;
                continue;
            };
            let ctx = &h.context;
            let ctx_json = serde_json::to_string(ctx)
                .map_err(|e| Error::Internal(format!("lead context: {e}")))?;
            let mut rec = serde_json::json!({
                "state": "open",
                "rep": h.rep_id,
                "prob": ctx.probability.to_string(),
                "seg": ctx.segment,
                "at": at.to_string(),
                "ad": day(at).to_string(),
                "ev": ctx.expected_value.to_string(),
                "ctx": ctx_json,
                "grp": keys::group_id(&ctx.needs.required_skills),
                "imp": "1",
            });
            let mut held = format!("{}\0{}", h.rep_id, ctx.lead.id);
            if let Some((o, closed_at)) = h.closed {
                rec["state"] = "closed".into();
                rec["cat"] = closed_at.to_string().into();
                rec["outcome"] = super::reply::outcome_str(o).into();
                held.clear();
            }
            let entry = serde_json::json!({
                "rec": rec,
                "held": held,
                "d": deltas_json(&import_deltas(h, at, day)),
            });
            by_pool
                .entry(ctx.needs.pool.clone())
                .or_default()
                .push((ctx.lead.id.clone(), entry));
        }
        for (pool, entries) in by_pool {
            self.register_pool(&pool).await?;
            for chunk in entries.chunks(IMPORT_BATCH) {
                let wrote: Vec<i64> = self
                    .import_invocation(&pool, chunk, &[])
                    .invoke_async(&mut self.conn())
                    .await
                    .map_err(classify)?;
                let n = wrote.iter().filter(|w| **w == 1).count() as u64;
                out.imported += n;
                out.skipped += wrote.len() as u64 - n;
            }
        }
        self.tick();
        Ok(out)
    }

    async fn set_target(&self, target: Target) -> Result<()> {
        let key = self.global("targets");
        let mut c = self.conn();
        if target.value > 0.0 {
            let _: i64 = c
                .hset(key, target.key(), target.value.to_string())
                .await
                .map_err(classify)?;
        } else {
            let _: i64 = c.hdel(key, target.key()).await.map_err(classify)?;
        }
        Ok(())
    }

    async fn targets(&self) -> Result<Vec<Target>> {
        let all: Vec<(String, f64)> = self
            .conn()
            .hgetall(self.global("targets"))
            .await
            .map_err(classify)?;
        let mut out: Vec<Target> = all
            .into_iter()
            .filter_map(|(k, v)| Target::from_key(&k, v))
            .collect();
        out.sort_by_key(Target::key);
        Ok(out)
    }
}
