//! Contract cases for the rep directory under concurrency: racing pool moves and deletes of
//! the same reps must leave each rep in exactly one pool (or none), reachable by id.
use std::sync::Arc;

use super::{claim_context, context, rep, t0};
use crate::domain::rep::Rep;
use crate::store::{Claim, Store};

fn rep_in(id: &str, pool: &str) -> Rep {
    let mut r = rep(id, 1);
    r.pool = pool.into();
    r
}

pub async fn racing_pool_moves_leave_each_rep_in_one_pool(store: Arc<dyn Store>) {
    let pools = ["a", "b", "c"];
    let ids: Vec<String> = (0..8).map(|i| format!("r{i}")).collect();
    for id in &ids {
        store.upsert_rep(rep_in(id, "a"), t0()).await.unwrap();
    }
    // Six racing calls per rep: moves to b, c, a, b, c and, for every other rep, a delete.
    let mut tasks = Vec::new();
    for (n, id) in ids.iter().enumerate() {
        for (k, pool) in pools.iter().cycle().skip(1).take(6).enumerate() {
            let (store, id, pool) = (store.clone(), id.clone(), pool.to_string());
            let delete = n % 2 == 0 && k == 3;
            tasks.push(tokio::spawn(async move {
                // Refusals are fine (a lease held too long, a rep deleted meanwhile); what is
                // checked is the state left behind.
                if delete {
                    let _ = store.delete_rep(&id).await;
                } else {
                    let _ = store.upsert_rep(rep_in(&id, &pool), t0()).await;
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let statuses = store.rep_statuses(None, t0()).await.unwrap();
    let snapshot = store.reps().await.unwrap();
    for id in &ids {
        let homes: Vec<_> = statuses.iter().filter(|s| &s.rep.id == id).collect();
        assert!(homes.len() <= 1, "{id} lives in {} pools", homes.len());
        let by_id = store.rep(id, t0()).await.unwrap();
        assert_eq!(by_id.is_some(), homes.len() == 1, "{id}: by id vs listing");
        if let Some(s) = &by_id {
            assert_eq!(s.rep.pool, homes[0].rep.pool, "{id}");
        }
        let listed = snapshot.iter().filter(|r| &r.id == id).count();
        assert_eq!(listed, homes.len(), "{id} in the routing snapshot");
    }
    // Every rep can still be changed: all into pool b, capacity 1 each.
    for id in &ids {
        store.upsert_rep(rep_in(id, "b"), t0()).await.unwrap();
    }
    // One slot each: pool b takes exactly 8 leads, pools a and c none.
    let mut assigned = 0;
    for (i, pool) in ["b", "a", "c"].iter().cycle().take(30).enumerate() {
        let mut ctx = context(&format!("l{i}"), 0.5);
        ctx.needs.pool = pool.to_string();
        if let Claim::Assigned { assignment, .. } = claim_context(&*store, ctx, t0()).await.unwrap()
        {
            assert_eq!(
                *pool, "b",
                "a lead of pool {pool} went to {}",
                assignment.rep_id
            );
            assigned += 1;
        }
    }
    assert_eq!(assigned, ids.len());
    for id in &ids {
        store.set_active(id, false, t0()).await.unwrap();
        assert_eq!(store.rep(id, t0()).await.unwrap().unwrap().load, 1);
    }
}
