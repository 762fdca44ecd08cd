use super::*;

/// A seeded uniform in [0, 1), from the training split's PRNG.
struct Rng(crate::training::split::SplitMix64);
impl Rng {
    fn next(&mut self) -> f64 {
        (self.0.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[test]
fn periods_are_labelled_and_bounded() {
    let day = day_number(jiff::civil::date(2017, 3, 31));
    assert_eq!(Period::Quarter.of_day(day).1, "2017-Q1");
    assert_eq!(Period::Month.of_day(day).1, "2017-03");
    assert_eq!(Period::Week.of_day(day).1, "2017-W13");
    assert_eq!(Period::Day.of_day(day).1, "2017-03-31");
    assert_eq!(Period::Quarter.of_day(day + 1).1, "2017-Q2");
    let (a, b) = Period::Quarter.bounds(day);
    assert_eq!(date_of(a), jiff::civil::date(2017, 1, 1));
    assert_eq!(date_of(b), jiff::civil::date(2017, 3, 31));
    let (a, b) = Period::Week.bounds(day);
    assert_eq!(date_of(a), jiff::civil::date(2017, 3, 27));
    assert_eq!(b - a, 6);
    // ISO week years: 2021-01-03 belongs to 2020-W53.
    let d = day_number(jiff::civil::date(2021, 1, 3));
    assert_eq!(Period::Week.of_day(d).1, "2020-W53");
}

/// Simulated outcomes fall in the 80 % interval at least and about 80 % of the time, for many shapes of
/// probability lists (few leads, skewed low probabilities, mixed).
#[test]
fn the_wins_interval_covers_about_80_percent() {
    let mut rng = Rng(crate::training::split::SplitMix64::new(42));
    for (n, lo_p, hi_p) in [
        (30, 0.01, 0.2),
        (200, 0.05, 0.6),
        (1000, 0.0, 1.0),
        (60, 0.6, 0.95),
    ] {
        let seeds = 2000;
        let mut inside = 0;
        for _ in 0..seeds {
            let ps: Vec<f64> = (0..n).map(|_| lo_p + (hi_p - lo_p) * rng.next()).collect();
            let mean: f64 = ps.iter().sum();
            let var: f64 = ps.iter().map(|p| p * (1.0 - p)).sum();
            let k3: f64 = ps.iter().map(|p| p * (1.0 - p) * (1.0 - 2.0 * p)).sum();
            let wins = ps.iter().filter(|&&p| rng.next() < p).count() as f64;
            let (lo, hi) = wins_interval(mean, var, k3, n as f64);
            inside += usize::from(lo <= wins && wins <= hi);
        }
        let coverage = inside as f64 / seeds as f64;
        // A whole count cannot hit 80 % exactly: with few expected wins the interval is
        // wider than 80 % (about 90 % at 3 expected wins), never narrower.
        assert!(
            (0.79..=0.92).contains(&coverage),
            "n={n} p in [{lo_p}, {hi_p}]: coverage {coverage}"
        );
    }
}

#[test]
fn the_index_interval_tells_a_better_converter_apart_only_with_enough_leads() {
    // 1,000 leads at p = 0.2: expected 200. A rep at 1.5x wins 300; one at 1x wins 200.
    let (lo, _) = index_interval(300.0, 200.0);
    assert!(lo > 1.0, "{lo}");
    let (lo, hi) = index_interval(200.0, 200.0);
    assert!(lo < 1.0 && hi > 1.0);
    // 10 leads: expected 2, wins 3.
    let (lo, hi) = index_interval(3.0, 2.0);
    assert!(lo < 1.0 && hi > 1.0, "{lo} {hi}");
    // Against the exact Gamma quantiles (scipy.stats.gamma(a, scale=1/b).ppf([.025, .975])).
    for (wins, expected, exact) in [
        (300.0, 200.0, (1.33310, 1.67135)),
        (3.0, 2.0, (0.36329, 2.92242)),
    ] {
        let (lo, hi) = index_interval(wins, expected);
        assert!(
            (lo - exact.0).abs() < 0.01 && (hi - exact.1).abs() < 0.01,
            "{lo} {hi}"
        );
    }
}

fn cell(rep: &str, bucket: Bucket, metrics: &[(Metric, f64)]) -> LedgerCell {
    let mut c = Cell::default();
    for &(k, v) in metrics {
        c.add(k, v);
    }
    LedgerCell {
        pool: "default".into(),
        bucket,
        rep: rep.into(),
        segment: "s".into(),
        cell: c,
    }
}

#[test]
fn performance_sums_days_into_periods_per_rep() {
    let day = |d: i32| Bucket::Day(day_number(jiff::civil::date(2017, 3, 31)) + d);
    let cells = vec![
        cell(
            "ann",
            day(0),
            &[(m::WON, 2.0), (m::WON_VALUE, 300.0), (m::CLOSED_P, 1.0)],
        ),
        cell("ann", day(-40), &[(m::LOST, 1.0), (m::OPEN, 1.0)]),
        cell("ann", day(1), &[(m::LOST, 1.0)]),
        cell("bob", day(0), &[(m::OPEN, 1.0)]),
    ];
    let rows = performance(&cells, By::Rep, Period::Quarter);
    // Month buckets of 2017: March and April give the same quarters.
    let month = |mo: i32| Bucket::Month(2017 * 12 + mo - 1);
    assert_eq!(Period::Quarter.of_bucket(month(3)).1, "2017-Q1");
    assert_eq!(Period::Quarter.of_bucket(month(4)).1, "2017-Q2");
    assert_eq!(Period::Month.of_bucket(month(4)).1, "2017-04");
    assert_eq!(rows.len(), 3);
    let ann = &rows[0];
    assert_eq!(
        (ann.group.as_str(), ann.period.as_str()),
        ("ann", "2017-Q1")
    );
    assert_eq!(
        (ann.won, ann.lost, ann.open, ann.won_value),
        (2.0, 1.0, 1.0, 300.0)
    );
    assert!((ann.win_rate.unwrap() - 2.0 / 3.0).abs() < 1e-12);
    assert_eq!(rows[1].period, "2017-Q2");
    assert_eq!((rows[2].group.as_str(), rows[2].open), ("bob", 1.0));
}

#[test]
fn percentiles_come_from_the_histogram() {
    // 10 observations in [2, 4) s.
    let c = cell(
        "a",
        Bucket::Day(0),
        &[(m::HIST + 2 * m::HIST_BUCKETS + 2, 10.0)],
    );
    let p = percentiles(&c.cell, Stage::ToContact);
    let p50 = p.p50.unwrap();
    assert!((2.0..4.0).contains(&p50), "{p50}");
    assert!(percentiles(&c.cell, Stage::ToClose).p50.is_none());
}
