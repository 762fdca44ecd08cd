//! The Redis store after a decision: offers (accept, decline, expire), first touch (contacted,
//! SLA breach), deadlines, the event stream and inbox/queue listings. Every change is one
//! EVALSHA of step.lua (queue TTL expiry: close.lua), which appends its event in the same step.
use jiff::Timestamp;

use crate::domain::assignment::{Assignment, Outcome};
use crate::domain::event::{Event, EventKind, EventPage};
use crate::error::{Error, Result};
use crate::store::{
    Due, DueKind, ListItem, ListPage, ListQuery, Listed, Release, Released, millis,
};

use super::reply::{CloseReply, Record, Step, num};
use super::{RedisStore, classify};
use crate::store::CapacityStore;

impl RedisStore {
    /// Runs one step.lua op on a lead; None when the lead is unknown.
    async fn step_op(
        &self,
        op: &str,
        lead_id: &str,
        rep_id: &str,
        reason: &str,
        now: Timestamp,
    ) -> Result<(String, Step)> {
        let (pool, _, group) = self.find_known(lead_id).await?;
        let mut inv = self.step.prepare_invoke();
        for k in self.pool(&pool).step(lead_id, &group) {
            inv.key(k);
        }
        let v: Vec<String> = inv
            .arg(op)
            .arg(lead_id)
            .arg(rep_id)
            .arg(millis(now))
            .arg(reason)
            .arg(self.retention.count)
            .arg(self.retention.age_ms)
            .arg(self.today(now))
            .invoke_async(&mut self.conn())
            .await
            .map_err(classify)?;
        self.tick();
        match Step::decode(v) {
            Step::Missing => Err(Error::not_found("lead", lead_id)),
            Step::Refused {
                state,
                holder,
                ended,
                why,
            } => Err(refused(lead_id, rep_id, &state, &holder, &ended, &why)),
            step => Ok((pool, step)),
        }
    }

    pub(super) async fn accept_offer(
        &self,
        lead_id: &str,
        rep_id: &str,
        now: Timestamp,
    ) -> Result<Assignment> {
        match self.step_op("accept", lead_id, rep_id, "", now).await? {
            (pool, Step::Done(rec)) => Ok(rec.assignment(lead_id, &pool)),
            (_, other) => Err(Error::Internal(format!("accept answered {other:?}"))),
        }
    }

    pub(super) async fn end_offer(
        &self,
        lead_id: &str,
        rep_id: &str,
        why: Release,
        now: Timestamp,
    ) -> Result<Released> {
        let (op, reason) = match &why {
            Release::Declined(r) => ("decline", r.as_str()),
            Release::Expired => ("expire", "no answer in time"),
        };
        match self.step_op(op, lead_id, rep_id, reason, now).await? {
            (pool, Step::Released) => Ok(Released {
                rep_id: rep_id.to_string(),
                drained: self.drain_pool(&pool, now).await?,
            }),
            (_, Step::Skip) => Err(Error::FailedPrecondition(format!(
                "the offer of lead {lead_id:?} has not expired"
            ))),
            (_, other) => Err(Error::Internal(format!("{op} answered {other:?}"))),
        }
    }

    pub(super) async fn mark_contacted(
        &self,
        lead_id: &str,
        rep_id: &str,
        now: Timestamp,
    ) -> Result<Assignment> {
        match self.step_op("contacted", lead_id, rep_id, "", now).await? {
            (pool, Step::Done(rec)) => Ok(rec.assignment(lead_id, &pool)),
            (_, other) => Err(Error::Internal(format!("contacted answered {other:?}"))),
        }
    }

    pub(super) async fn flag_breach(
        &self,
        lead_id: &str,
        now: Timestamp,
    ) -> Result<Option<Assignment>> {
        let ctx = self.context(lead_id).await?;
        let reason = ctx.map_or(String::new(), |c| {
            format!("not contacted within {} s", c.terms.sla_ms as f64 / 1000.0)
        });
        match self.step_op("breach", lead_id, "", &reason, now).await {
            Ok((pool, Step::Done(rec))) => Ok(Some(rec.assignment(lead_id, &pool))),
            Ok(_) | Err(Error::FailedPrecondition(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Closes a lead EXPIRED if close.lua finds it still queued past its TTL.
    pub(super) async fn expire_if_queued(
        &self,
        lead_id: &str,
        now: Timestamp,
    ) -> Result<Option<Assignment>> {
        let (pool, r) = match self
            .run_close(lead_id, Outcome::Expired, None, now, "expire")
            .await
        {
            Ok(x) => x,
            Err(Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        if r.first().map(String::as_str) == Some("skip") {
            return Ok(None);
        }
        match CloseReply::decode(r) {
            CloseReply::Closed {
                record,
                fresh: true,
            } => Ok(Some(record.assignment(lead_id, &pool))),
            CloseReply::Closed { .. } | CloseReply::Missing | CloseReply::Conflict(_) => Ok(None),
            CloseReply::Unknown(other) => {
                Err(Error::Internal(format!("close script answered {other}")))
            }
        }
    }

    pub(super) async fn deadlines(&self, pool: &str, now: Timestamp, limit: usize) -> Result<Due> {
        let raw: Vec<(String, f64)> = redis::cmd("ZRANGE")
            .arg(self.pool(pool).k("due"))
            .arg("-inf")
            .arg("+inf")
            .arg("BYSCORE")
            .arg("LIMIT")
            .arg(0)
            .arg(limit + 1)
            .arg("WITHSCORES")
            .query_async(&mut self.conn())
            .await
            .map_err(classify)?;
        let at = millis(now) as f64;
        let mut due = Due::default();
        for (member, score) in raw {
            if score > at {
                due.next_ms = Some(score as i64);
                break;
            }
            if due.leads.len() == limit {
                break;
            }
            let (kind, id) = member.split_at(member.find(':').map_or(0, |i| i + 1));
            let kind = match kind {
                "o:" => DueKind::Offer,
                "q:" => DueKind::QueueTtl,
                _ => DueKind::Sla,
            };
            due.leads.push((id.to_string(), kind));
        }
        Ok(due)
    }

    pub(super) async fn read_events(
        &self,
        pool: &str,
        after: u64,
        limit: usize,
    ) -> Result<EventPage> {
        let keys = self.pool(pool);
        type Entries = Vec<(String, Vec<(String, String)>)>;
        // XRANGE with COUNT 0 is not "none" on every Redis version: ask for one and drop it.
        let count = limit.max(1);
        let (first, last, entries): (Entries, Option<u64>, Entries) = redis::pipe()
            .cmd("XRANGE")
            .arg(keys.k("events"))
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(1)
            .get(keys.k("evseq"))
            .cmd("XRANGE")
            .arg(keys.k("events"))
            .arg(format!("{}-0", after.saturating_add(1)))
            .arg("+")
            .arg("COUNT")
            .arg(count)
            .query_async(&mut self.conn())
            .await
            .map_err(classify)?;
        let cursor = |id: &str| num::<u64>(id.split('-').next().unwrap_or(""));
        Ok(EventPage {
            oldest: first.first().and_then(|(id, _)| cursor(id)).unwrap_or(0),
            last: last.unwrap_or(0),
            events: entries
                .into_iter()
                .take(limit)
                .filter_map(|(id, fields)| event(pool, cursor(&id)?, &fields))
                .collect(),
        })
    }

    pub(super) async fn list_leads(&self, q: &ListQuery) -> Result<ListPage> {
        let keys = self.pool(&q.pool);
        let wants = |l: Listed| q.states.is_empty() || q.states.contains(&l);
        let mut items = Vec::new();
        if wants(Listed::Offered) || wants(Listed::Open) {
            let (min, max) = match &q.rep_id {
                Some(r) => (format!("[{r}\0"), format!("({r}\u{1}")),
                None => ("-".to_string(), "+".to_string()),
            };
            let members: Vec<String> = redis::cmd("ZRANGEBYLEX")
                .arg(keys.k("held"))
                .arg(min)
                .arg(max)
                .query_async(&mut self.conn())
                .await
                .map_err(classify)?;
            let ids: Vec<&str> = members
                .iter()
                .filter_map(|m| m.split_once('\0').map(|(_, id)| id))
                .collect();
            let mut pipe = redis::pipe();
            for id in &ids {
                pipe.cmd("HMGET").arg(keys.lead(id)).arg(&RECORD_FIELDS);
            }
            let recs: Vec<Vec<Option<String>>> = self.query_pipe(pipe, ids.len()).await?;
            for (id, f) in ids.iter().zip(recs) {
                let rec = Record(f.into_iter().map(Option::unwrap_or_default).collect());
                let listed = match rec.state() {
                    "offered" => Listed::Offered,
                    "open" => Listed::Open,
                    _ => continue,
                };
                if wants(listed) {
                    items.push(ListItem {
                        listed,
                        assignment: rec.assignment(id, &q.pool),
                        position: 0,
                    });
                }
            }
        }
        let held = items.len();
        items.drain(..q.offset.min(held));
        if q.rep_id.is_none() && wants(Listed::Queued) && items.len() <= q.limit {
            let start = q.offset.saturating_sub(held);
            let stop = start + (q.limit + 1 - items.len());
            let members: Vec<String> = self
                .conn_cmd_zrange(&keys.k("queue"), start, stop.saturating_sub(1))
                .await?;
            let mut pipe = redis::pipe();
            for m in &members {
                let id = m.split_once(':').map_or(m.as_str(), |(_, id)| id);
                pipe.cmd("HMGET")
                    .arg(keys.lead(id))
                    .arg(&["prob", "seg", "at"]);
            }
            let recs: Vec<Vec<Option<String>>> = self.query_pipe(pipe, members.len()).await?;
            for (i, (m, f)) in members.iter().zip(recs).enumerate() {
                let id = m.split_once(':').map_or(m.as_str(), |(_, id)| id);
                let g = |k: usize| f.get(k).cloned().flatten().unwrap_or_default();
                items.push(ListItem {
                    listed: Listed::Queued,
                    assignment: Assignment {
                        lead_id: id.to_string(),
                        pool: q.pool.clone(),
                        probability: num(&g(0)).unwrap_or(0.0),
                        segment: g(1),
                        assigned_at_ms: num(&g(2)).unwrap_or(0),
                        ..Assignment::default()
                    },
                    position: u32::try_from(start + i + 1).unwrap_or(u32::MAX),
                });
            }
        }
        let more = items.len() > q.limit;
        items.truncate(q.limit);
        Ok(ListPage { items, more })
    }

    async fn conn_cmd_zrange(&self, key: &str, start: usize, stop: usize) -> Result<Vec<String>> {
        redis::cmd("ZRANGE")
            .arg(key)
            .arg(start)
            .arg(stop)
            .query_async(&mut self.conn())
            .await
            .map_err(classify)
    }
}

/// The fields of a `Record`, in order.
const RECORD_FIELDS: [&str; 10] = [
    "state", "rep", "prob", "seg", "at", "cat", "outcome", "dl", "ct", "br",
];

/// FAILED_PRECONDITION naming why a step on a lead is refused.
fn refused(lead: &str, rep: &str, state: &str, holder: &str, ended: &str, why: &str) -> Error {
    let ended = ended
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix(&format!("{rep}=")));
    let now = match state {
        "queued" => "is queued".to_string(),
        "closed" => "is closed".to_string(),
        "offered" if why == "offered" => format!("is offered to {holder:?}; accept it first"),
        "open" if why == "accepted" => "was accepted; it is no longer an offer".to_string(),
        _ => format!("is with rep {holder:?}"),
    };
    match ended {
        Some(how) if !rep.is_empty() => Error::FailedPrecondition(format!(
            "the offer of lead {lead:?} to rep {rep:?} {how}; the lead {now}"
        )),
        _ => Error::FailedPrecondition(format!("lead {lead:?} {now}")),
    }
}

/// An event from its stream fields (see events.lua).
fn event(pool: &str, cursor: u64, fields: &[(String, String)]) -> Option<Event> {
    let get = |k: &str| {
        fields
            .iter()
            .find(|(f, _)| f == k)
            .map_or("", |(_, v)| v.as_str())
    };
    let kind = EventKind::parse(get("k"))?;
    let state = get("s");
    let assignment = (state != "queued").then(|| {
        let rec = Record(
            [
                state,
                get("h"),
                get("p"),
                get("g"),
                get("a"),
                if state == "closed" { get("t") } else { "" },
                get("o"),
                get("d"),
                "",
                "",
            ]
            .map(str::to_string)
            .to_vec(),
        );
        rec.assignment(get("l"), pool)
    });
    Some(Event {
        cursor,
        pool: pool.to_string(),
        kind,
        lead_id: get("l").to_string(),
        rep_id: get("r").to_string(),
        assignment,
        reason: get("w").to_string(),
        at_ms: num(get("t")).unwrap_or(0),
    })
}
