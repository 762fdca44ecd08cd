//! LeadService: scoring, explanation, segments, submit, the bulk stream, and bad input.
use leadrouter::grpc::pb;

use crate::helpers::*;

async fn score(app: &TestApp, lead: pb::Lead) -> Result<pb::DecisionRecord, tonic::Status> {
    app.leads()
        .score_lead(pb::ScoreLeadRequest { lead: Some(lead) })
        .await
        .map(|r| r.into_inner().decision.unwrap())
}

/// The issue-13 probe: factors name the value the lead sent, and a lead that sent only
/// `language` (not a model input) gets no factor from the model's missing-value terms.
#[tokio::test]
async fn factors_name_sent_values_and_nothing_unsent() {
    let app = spawn_app().await;
    let good = score(&app, good_lead("g")).await.unwrap().score.unwrap();
    let sent = good_lead("g").attributes;
    for f in good.top_positive.iter().chain(&good.top_negative) {
        let want = match &sent[&f.attribute].kind {
            Some(pb::attribute_value::Kind::StringValue(v)) => v.clone(),
            Some(pb::attribute_value::Kind::NumberValue(x)) => x.to_string(),
            other => panic!("{other:?}"),
        };
        assert_eq!(f.value, want, "{f:?}");
        if f.level.is_empty() {
            assert_eq!(f.text, format!("{} = {want}", f.attribute));
        } else {
            // A binned number: the text names the bin the value fell in.
            assert_eq!(f.text, f.level);
            assert!(f.level.starts_with(&f.attribute), "{f:?}");
        }
    }
    assert!(
        good.top_positive
            .iter()
            .chain(&good.top_negative)
            .any(|f| f.level.starts_with("pdays ") || f.level.starts_with("age ")),
        "the shipped model bins its numeric columns: {good:?}"
    );
    assert!(
        good.top_positive.iter().any(|f| f.text == "month = oct"),
        "{good:?}"
    );
    let bare = score(&app, lead("bare", &[("language", s("en"))]))
        .await
        .unwrap()
        .score
        .unwrap();
    assert!(
        bare.top_positive.is_empty() && bare.top_negative.is_empty(),
        "{bare:?}"
    );
}

#[tokio::test]
async fn score_lead_explains_and_segments() {
    let app = spawn_app().await;
    let version = app.engine.model().unwrap().model.version().to_string();
    let good = score(&app, good_lead("g")).await.unwrap();
    let poor = score(&app, poor_lead("p")).await.unwrap();
    let (gs, ps) = (good.score.clone().unwrap(), poor.score.clone().unwrap());
    assert!(gs.probability > 0.3 && gs.probability < 1.0, "{gs:?}");
    assert!(ps.probability < 0.1, "{ps:?}");
    assert_eq!(gs.score, (gs.probability * 100.0).round() as u32);
    assert_eq!(gs.grade, "A");
    assert_eq!(ps.grade, "D");
    assert_eq!(gs.model_version, version);
    assert!(!gs.cold_start);
    assert!(!gs.top_positive.is_empty() && gs.top_positive.len() <= 3);
    assert!(
        gs.top_positive
            .windows(2)
            .all(|w| w[0].contribution >= w[1].contribution)
    );
    assert!(ps.top_negative.iter().all(|c| c.contribution < 0.0));
    assert!(
        ps.top_negative
            .iter()
            .any(|c| c.attribute == "nr.employed" || c.attribute == "month"),
        "{ps:?}"
    );
    let seg = good.segment.unwrap();
    assert_eq!(
        (seg.name.as_str(), seg.rule.as_str()),
        ("qualified", "high_probability")
    );
    assert_eq!(poor.segment.unwrap().name, "unqualified");
    assert!(good.routing.is_none(), "ScoreLead must not route");
    // Nothing was stored.
    let e = app
        .routing()
        .get_assignment(pb::GetAssignmentRequest {
            lead_id: "g".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
}

#[tokio::test]
async fn price_objection_wins_over_probability() {
    let app = spawn_app().await;
    let d = score(&app, with(good_lead("g"), &[("price_objection", b(true))]))
        .await
        .unwrap();
    let seg = d.segment.unwrap();
    assert_eq!(
        (seg.name.as_str(), seg.rule.as_str()),
        ("price_sensitive", "price_objection")
    );
    let d = score(&app, with(poor_lead("p"), &[("budget", n(1200.0))]))
        .await
        .unwrap();
    assert_eq!(d.segment.unwrap().rule, "budget_below_floor");
}

#[tokio::test]
async fn submit_lead_routes_with_a_decision_record() {
    let app = spawn_app().await;
    app.add_rep(rep(
        "fin",
        5,
        &[("industry:finance", 1.0), ("language:en", 1.0)],
    ))
    .await;
    app.add_rep(rep(
        "ret",
        5,
        &[("industry:retail", 1.0), ("language:en", 1.0)],
    ))
    .await;
    app.add_rep(rep(
        "de",
        5,
        &[("industry:finance", 1.0), ("language:de", 1.0)],
    ))
    .await;
    let d = submit(
        &app,
        with(
            good_lead("l1"),
            &[("industry", s("Finance")), ("language", s("en"))],
        ),
    )
    .await
    .unwrap();
    let r = d.routing.clone().unwrap();
    assert_eq!(r.status(), pb::RoutingStatus::Assigned);
    assert_eq!(rep_of(&d), "fin");
    assert_eq!(d.required_skills, ["language:en"]);
    let verdict = |id: &str| {
        r.candidates
            .iter()
            .find(|c| c.rep_id == id)
            .unwrap()
            .verdict()
    };
    assert_eq!(verdict("fin"), pb::CandidateVerdict::Chosen);
    assert_eq!(verdict("ret"), pb::CandidateVerdict::LowerMatch);
    assert_eq!(verdict("de"), pb::CandidateVerdict::MissingRequiredSkill);
    let a = r.assignment.unwrap();
    assert_eq!(a.state(), pb::AssignmentState::Open);
    assert!((a.probability - d.score.unwrap().probability).abs() < 1e-12);
}

#[tokio::test]
async fn price_sensitive_leads_need_a_negotiator() {
    let app = spawn_app().await;
    app.add_rep(rep("plain", 5, &[("segment:price_sensitive", 1.0)]))
        .await;
    app.add_rep(rep("closer", 5, &[("negotiation", 0.7)])).await;
    let d = submit(&app, with(good_lead("l"), &[("price_objection", b(true))]))
        .await
        .unwrap();
    assert_eq!(rep_of(&d), "closer");
    assert_eq!(d.required_skills, ["negotiation"]);
}

#[tokio::test]
async fn bad_leads_are_refused_naming_the_field_and_store_nothing() {
    let app = spawn_app().await;
    app.add_rep(rep("r", 5, &[])).await;
    let cases: Vec<(pb::Lead, &str)> = vec![
        (lead("", &[]), "lead.id"),
        (lead(&"x".repeat(129), &[]), "lead.id"),
        (
            lead("bad-nan", &[("age", n(f64::NAN))]),
            "lead.attributes[age]",
        ),
        (
            lead("bad-inf", &[("age", n(f64::INFINITY))]),
            "lead.attributes[age]",
        ),
        (
            lead("bad-type", &[("age", s("old"))]),
            "lead.attributes[age]",
        ),
        (
            lead("bad-empty", &[("job", pb::AttributeValue { kind: None })]),
            "lead.attributes[job]",
        ),
        (
            lead("bad-long", &[("job", s(&"j".repeat(2000)))]),
            "lead.attributes[job]",
        ),
    ];
    for (l, field) in cases {
        let id = l.id.clone();
        assert_invalid(submit(&app, l.clone()).await, field);
        assert_invalid(
            app.leads()
                .score_lead(pb::ScoreLeadRequest { lead: Some(l) })
                .await,
            field,
        );
        if !id.is_empty() && id.len() <= 128 {
            let e = app
                .routing()
                .get_assignment(pb::GetAssignmentRequest { lead_id: id })
                .await
                .unwrap_err();
            assert_eq!(
                e.code(),
                tonic::Code::NotFound,
                "a refused lead must not be stored"
            );
        }
    }
    let many: Vec<(String, pb::AttributeValue)> =
        (0..300).map(|i| (format!("a{i}"), n(1.0))).collect();
    let big = pb::Lead {
        id: "many".into(),
        attributes: many.into_iter().collect(),
    };
    assert_invalid(submit(&app, big).await, "lead.attributes");
    assert_invalid(
        app.leads()
            .submit_lead(pb::SubmitLeadRequest {
                lead: None,
                ..Default::default()
            })
            .await,
        "lead",
    );
    assert_eq!(
        app.load_of("r").await,
        0,
        "no capacity may leak from refused leads"
    );
}

#[tokio::test]
async fn oversized_messages_are_refused() {
    let mut settings = test_settings();
    settings.server.max_message_bytes = 4096;
    let app = spawn_with(settings).await;
    let attrs: Vec<(String, pb::AttributeValue)> = (0..100)
        .map(|i| (format!("attr{i}"), s(&"v".repeat(100))))
        .collect();
    let big = pb::Lead {
        id: "big".into(),
        attributes: attrs.into_iter().collect(),
    };
    let e = app
        .leads()
        .score_lead(pb::ScoreLeadRequest { lead: Some(big) })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::OutOfRange, "{e:?}");
    // The server is still fine afterwards.
    assert!(
        app.leads()
            .score_lead(pb::ScoreLeadRequest {
                lead: Some(good_lead("ok"))
            })
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn submit_leads_stream_answers_each_lead_and_survives_bad_ones() {
    let app = spawn_app().await;
    app.add_rep(rep("r", 3, &[])).await;
    let mut leads: Vec<pb::Lead> = (0..6).map(|i| good_lead(&format!("s{i}"))).collect();
    leads.insert(2, lead("bad", &[("age", n(f64::NAN))]));
    leads.insert(4, lead("", &[]));
    let results = submit_stream(&app, leads).await;
    let ids: Vec<&str> = results.iter().map(|r| r.lead_id.as_str()).collect();
    assert_eq!(
        ids,
        ["s0", "s1", "bad", "s2", "", "s3", "s4", "s5"],
        "answers come in request order"
    );
    use pb::submit_leads_response::Result as R;
    let mut assigned = 0;
    let mut queued = 0;
    for r in &results {
        match r.result.as_ref().unwrap() {
            R::Error(e) => {
                assert_eq!(e.code, tonic::Code::InvalidArgument as i32);
                assert!(e.message.contains("lead."), "{e:?}");
            }
            R::Decision(d) => match status_of(d) {
                pb::RoutingStatus::Assigned => assigned += 1,
                pb::RoutingStatus::Queued => queued += 1,
                s => panic!("unexpected {s:?}"),
            },
        }
    }
    assert_eq!((assigned, queued), (3, 3));
    assert_eq!(app.load_of("r").await, 3);
}

/// The embedded store is bounded: past `store.memory_max_leads` open or queued leads a new
/// one gets RESOURCE_EXHAUSTED naming the setting, while replays of held leads still answer.
#[tokio::test]
async fn a_full_memory_store_refuses_new_leads_with_resource_exhausted() {
    let mut settings = test_settings();
    settings.store.memory_max_leads = 2;
    let app = spawn_with(settings).await;
    app.add_rep(rep("r", 1, &[])).await;
    submit(&app, good_lead("m1")).await.unwrap();
    submit(&app, good_lead("m2")).await.unwrap();
    let err = submit(&app, good_lead("m3")).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("store.memory_max_leads"), "{err:?}");
    assert!(
        submit(&app, good_lead("m2")).await.is_ok(),
        "a replay still answers"
    );
}

/// An extreme number cannot buy a perfect score: it is clipped to the training range and the
/// score says which attribute was clipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extreme_numbers_are_clipped_and_named() {
    let app = spawn_app().await;
    let score = |age: f64| {
        let mut lead = good_lead("x");
        lead.attributes.insert("age".into(), n(age));
        let mut c = app.leads();
        async move {
            c.score_lead(pb::ScoreLeadRequest { lead: Some(lead) })
                .await
                .unwrap()
                .into_inner()
                .decision
                .unwrap()
                .score
                .unwrap()
        }
    };
    let huge = score(1e308).await;
    assert_eq!(huge.clipped, vec!["age".to_string()]);
    assert!(huge.probability < 0.99, "{huge:?}");
    // The top of the shipped model's training range for age (its 99.9th percentile).
    let artifact: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(shipped_model()).unwrap()).unwrap();
    let age = artifact["spec"]["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "age")
        .unwrap();
    let top = score(age["range"][1].as_f64().unwrap()).await;
    assert!(top.clipped.is_empty());
    assert_eq!(huge.probability, top.probability);
}
