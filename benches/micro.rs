//! Criterion micro-benchmarks of the per-lead hot path: extraction + scoring of one lead,
//! batch scoring of 1,024 leads, rep ranking with 35 and 1,000 reps, decision-record building.
//! Run: cargo bench --bench micro
use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use leadrouter::domain::lead::Lead;
use leadrouter::domain::model::{Artifact, Model};
use leadrouter::domain::rep::Rep;
use leadrouter::domain::routing::{self, Needs};

fn root(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn leads(n: usize) -> Vec<Lead> {
    let table = leadrouter::training::data::read(
        &root("data/bank-marketing/bank-additional-full.csv.gz"),
        None,
    )
    .unwrap();
    let step = table.rows.len() / n;
    (0..n)
        .filter_map(|i| table.lead(i * step, format!("l{i}"), &["y", "duration"]))
        .collect()
}

fn reps(n: usize) -> Vec<Rep> {
    let base = leadrouter::app::read_reps(&root("deploy/reps.example.toml")).unwrap();
    (0..n)
        .map(|i| {
            let mut r = base[i % base.len()].clone();
            r.id = format!("{}-{i}", r.id);
            r
        })
        .collect()
}

fn benches(c: &mut Criterion) {
    let bytes = std::fs::read(root("models/bank-default.json")).unwrap();
    let model = Model::new(Artifact::from_json(&bytes).unwrap());
    let spec = &model.artifact().spec;
    let k = spec.n_columns();
    let batch = leads(1024);
    let lead = &batch[7];
    let mut row = vec![0.0; k];
    c.bench_function("extract+score one lead", |b| {
        b.iter(|| {
            spec.extract_into(black_box(lead), &mut row).unwrap();
            black_box(model.predict_row(&row))
        })
    });
    c.bench_function("score+explain one lead", |b| {
        b.iter(|| black_box(model.score_with(black_box(lead), &mut row).unwrap()))
    });
    let mut rows = vec![0.0; k * batch.len()];
    let mut out = vec![0.0; batch.len()];
    c.bench_function(
        "extract+score 1024 leads (one matrix-vector product)",
        |b| {
            b.iter(|| {
                for (l, r) in batch.iter().zip(rows.chunks_mut(k)) {
                    spec.extract_into(l, r).unwrap();
                }
                model.predict_batch(&rows, &mut out);
                black_box(out[0])
            })
        },
    );
    let needs = Needs {
        pool: "default".into(),
        required_skills: vec![],
        preferred: vec![
            ("industry:finance".into(), 1.0),
            ("industry:software".into(), 0.5),
        ],
    };
    let now = jiff::Timestamp::from_second(1_795_795_200).unwrap();
    for n in [35, 1000] {
        let team = reps(n);
        c.bench_function(&format!("rank {n} reps"), |b| {
            b.iter(|| black_box(routing::rank(black_box(&team), &needs, now, &[])))
        });
    }
    let engine_decision = {
        let score = model.score(lead).unwrap();
        let rules = leadrouter::config::Settings::load(None).unwrap().segments;
        let segment = rules.classify(lead, score.probability);
        leadrouter::engine::Decision {
            lead_id: lead.id.clone(),
            score,
            segment,
            required_skills: vec![],
            routing: None,
        }
    };
    // What SubmitLead pays to keep its decision for the console's lead lookup: a 35-rep
    // record, into a ring of 2,000 (compare with "rank 35 reps").
    let kept = {
        let mut d = engine_decision.clone();
        d.routing = Some(leadrouter::engine::RoutingDecision {
            status: leadrouter::engine::RoutingStatus::Queued { position: 3 },
            pool: "default".into(),
            candidates: reps(35)
                .iter()
                .map(|r| routing::CandidateRecord {
                    rep_id: r.id.clone(),
                    match_score: 0.5,
                    verdict: routing::Verdict::AtCapacity,
                    detail: routing::Detail::Load {
                        load: 3,
                        capacity: 3,
                    },
                    load: 3,
                    capacity: 3,
                })
                .collect(),
            replayed: false,
            reason: String::new(),
            omitted: vec![],
        });
        d
    };
    let recent = leadrouter::engine::recent::Recent::new(2000);
    let mut i = 0u64;
    c.bench_function("keep a 35-rep decision for the console", |b| {
        b.iter(|| {
            i += 1;
            let mut d = kept.clone();
            d.lead_id = format!("l{i}");
            recent.keep(black_box(d));
        })
    });
    c.bench_function(
        "clone a 35-rep decision (the line above's own clone)",
        |b| {
            b.iter(|| {
                i += 1;
                let mut d = kept.clone();
                d.lead_id = format!("l{i}");
                black_box(d)
            })
        },
    );
    c.bench_function("build decision record (protobuf)", |b| {
        b.iter(|| {
            black_box(leadrouter::grpc::convert::decision(black_box(
                engine_decision.clone(),
            )))
        })
    });
}

criterion_group!(micro, benches);
criterion_main!(micro);
