//! Fitting a feature spec's statistics on the training split, and guessing column kinds.
use std::collections::BTreeMap;

use super::{
    Cell, DEFAULT_BINS, FeatureKind, FeatureSpec, FittedFeature, FittedKind, FittedSpec, MAX_BINS,
    Record, default_min_count, transform,
};
use crate::domain::lead::parse_bool;

/// Fits the spec's statistics on `records` (the training split only).
pub fn fit<R: Record>(spec: &FeatureSpec, records: &[R]) -> Result<FittedSpec, String> {
    let mut fitted = Vec::with_capacity(spec.features.len());
    for (i, def) in spec.features.iter().enumerate() {
        let kind = match &def.kind {
            FeatureKind::Numeric {
                log1p,
                clip,
                missing,
                bins,
            } => {
                let mut values = Vec::with_capacity(records.len());
                let mut raw = Vec::with_capacity(records.len());
                for r in records {
                    let x = match r.cell(i, &def.name) {
                        None | Some(Cell::Str("")) => continue,
                        Some(Cell::Num(x)) => x,
                        Some(Cell::Bool(b)) => f64::from(u8::from(b)),
                        Some(Cell::Str(s)) => s
                            .trim()
                            .parse::<f64>()
                            .map_err(|_| format!("column {:?}: {s:?} is not a number", def.name))?,
                    };
                    if !x.is_finite() {
                        return Err(format!("column {:?}: non-finite value", def.name));
                    }
                    if missing.contains(&x) {
                        continue;
                    }
                    raw.push(x);
                    values.push(transform(x, *log1p, *clip));
                }
                if values.is_empty() {
                    return Err(format!("column {:?} has no values in training", def.name));
                }
                let n = values.len() as f64;
                let mean = values.iter().sum::<f64>() / n;
                let var = values.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
                // A constant column gets std 1 so it standardises to 0 instead of NaN.
                let std = if var > 0.0 { var.sqrt() } else { 1.0 };
                let len = values.len();
                let decile = |k: usize| (len * k / 10).min(len - 1);
                let at = |per_mille: usize| (len * per_mille / 1000).min(len - 1);
                let bins = match bins.unwrap_or(DEFAULT_BINS) {
                    b if b > MAX_BINS => {
                        return Err(format!(
                            "feature {:?}: bins = {b}, at most {MAX_BINS}",
                            def.name
                        ));
                    }
                    b => b,
                };
                let untransformed = !*log1p && clip.is_none();
                let (deciles, range) = if untransformed {
                    // Untransformed, `raw` is `values`: one pass of selections serves both.
                    let mut at_all = vec![at(1)];
                    at_all.extend((1..10).map(decile));
                    at_all.push(at(999));
                    let s = order_statistics(&mut values, at_all);
                    (s[1..10].to_vec(), [s[0], s[10]])
                } else {
                    let deciles = order_statistics(&mut values, (1..10).map(decile));
                    let r = order_statistics(&mut raw, [at(1), at(999)]);
                    (deciles, [r[0], r[1]])
                };
                let edges = if bins > 1 {
                    let sorted = if untransformed { &mut values } else { &mut raw };
                    sorted.sort_unstable_by(f64::total_cmp);
                    // Binned as served: clipped to the range (the order stays sorted).
                    sorted
                        .iter_mut()
                        .for_each(|x| *x = x.clamp(range[0], range[1]));
                    equal_frequency_edges(sorted, bins)
                } else {
                    Vec::new()
                };
                FittedKind::Numeric {
                    range: Some(range),
                    edges,
                    log1p: *log1p,
                    clip: *clip,
                    missing: missing.clone(),
                    mean,
                    std,
                    deciles,
                }
            }
            FeatureKind::Categorical { min_count } => {
                let mut counts: BTreeMap<String, u64> = BTreeMap::new();
                let mut numbuf = String::new();
                for r in records {
                    let v = match r.cell(i, &def.name) {
                        None | Some(Cell::Str("")) => continue,
                        Some(Cell::Str(s)) => s,
                        Some(Cell::Bool(b)) => {
                            if b {
                                "true"
                            } else {
                                "false"
                            }
                        }
                        Some(Cell::Num(x)) => {
                            use std::fmt::Write;
                            numbuf.clear();
                            let _ = write!(numbuf, "{x}");
                            numbuf.as_str()
                        }
                    };
                    match counts.get_mut(v) {
                        Some(c) => *c += 1,
                        None => {
                            counts.insert(v.to_string(), 1);
                        }
                    }
                }
                FittedKind::Categorical {
                    vocabulary: counts
                        .into_iter()
                        .filter(|(_, c)| c >= min_count)
                        .map(|(v, _)| v)
                        .collect(),
                }
            }
            FeatureKind::Bool => {
                let (mut sum, mut n) = (0.0, 0.0);
                for r in records {
                    let b = match r.cell(i, &def.name) {
                        None | Some(Cell::Str("")) => continue,
                        Some(Cell::Bool(b)) => b,
                        Some(Cell::Num(x)) => x != 0.0,
                        Some(Cell::Str(s)) => parse_bool(s)
                            .ok_or_else(|| format!("column {:?}: {s:?} is not a bool", def.name))?,
                    };
                    sum += f64::from(u8::from(b));
                    n += 1.0;
                }
                FittedKind::Bool {
                    mean: if n > 0.0 { sum / n } else { 0.0 },
                }
            }
        };
        fitted.push(FittedFeature {
            name: def.name.clone(),
            kind,
        });
    }
    Ok(FittedSpec::new(fitted))
}

/// Edges of up to `bins` bins of about equal counts over `sorted` (ascending): each edge cuts
/// an equal share of the values not yet binned, and a value repeated for a bin's share or more
/// (the zeros of a count, a sentinel) gets a bin of its own with the edge just past it, so the
/// bins left still split the rest (plain quantiles would collapse onto the repeated value:
/// 3 quantile bins of a column 78 % zeros are one bin).
fn equal_frequency_edges(sorted: &[f64], bins: usize) -> Vec<f64> {
    let n = sorted.len();
    let mut edges = Vec::new();
    let mut start = 0;
    while edges.len() + 1 < bins && start < n {
        let left = bins - edges.len();
        let first = sorted[start];
        let mut edge = sorted[(start + (n - start) / left).min(n - 1)];
        if edge <= first {
            let past = start + sorted[start..].partition_point(|x| *x <= first);
            if past >= n {
                break;
            }
            edge = sorted[past];
        }
        let next = start + sorted[start..].partition_point(|x| *x < edge);
        // The last bin holds at least half a bin's share: no weight for a handful of rows.
        if (n - next) * 2 * bins < n {
            break;
        }
        edges.push(edge);
        start = next;
    }
    edges
}

/// The values at ascending sorted positions `at`, as a full sort would place them, by
/// selection (a sort was a quarter of `train` on 40 numeric columns).
fn order_statistics(values: &mut [f64], at: impl IntoIterator<Item = usize>) -> Vec<f64> {
    let mut out = Vec::new();
    let mut from = 0;
    for i in at {
        if i < from {
            // A repeated position (tiny columns): the element is already in place.
            out.push(values[i]);
            continue;
        }
        let (_, x, _) = values[from..].select_nth_unstable_by(i - from, f64::total_cmp);
        out.push(*x);
        from = i + 1;
    }
    out
}

/// Guesses each column's kind from its text values: bool words, numbers, or else categories.
pub fn infer_kind<'a>(values: impl Iterator<Item = &'a str>) -> FeatureKind {
    let mut all_bool = true;
    let mut all_num = true;
    let mut any = false;
    for v in values {
        let v = v.trim();
        if v.is_empty() {
            continue;
        }
        any = true;
        // Digits 0/1 count as numbers, not bools: a 0/1 column standardises just as well.
        let is_word_bool = parse_bool(v).is_some() && v.parse::<f64>().is_err();
        all_bool &= is_word_bool;
        all_num &= v.parse::<f64>().is_ok_and(f64::is_finite);
        if !all_bool && !all_num {
            break;
        }
    }
    if any && all_bool {
        FeatureKind::Bool
    } else if any && all_num {
        FeatureKind::Numeric {
            log1p: false,
            clip: None,
            missing: Vec::new(),
            bins: None,
        }
    } else {
        FeatureKind::Categorical {
            min_count: default_min_count(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_statistics_are_what_a_sort_would_give() {
        let mut x: Vec<f64> = (0..1000)
            .map(|i| ((i * 7919) % 1009) as f64 / 3.0)
            .collect();
        let at = [0, 1, 1, 100, 500, 998, 999];
        let mut sorted = x.clone();
        sorted.sort_by(f64::total_cmp);
        let want: Vec<f64> = at.iter().map(|&i| sorted[i]).collect();
        assert_eq!(order_statistics(&mut x, at), want);
        assert_eq!(order_statistics(&mut [2.0], [0, 0]), [2.0, 2.0]);
    }

    #[test]
    fn a_repeated_value_gets_its_own_bin_and_the_rest_still_split() {
        // 60 % zeros, then 1..=40: three bins are "0", and two equal halves of the rest.
        let mut v: Vec<f64> = vec![0.0; 60];
        v.extend((1..=40).map(f64::from));
        assert_eq!(equal_frequency_edges(&v, 3), [1.0, 21.0]);
        // 78 % zeros: halves of the other 22 would leave 11 values in the last bin, under half
        // a bin's share (100 / 6): they stay one bin.
        let mut v: Vec<f64> = vec![0.0; 78];
        v.extend((1..=22).map(f64::from));
        assert_eq!(equal_frequency_edges(&v, 3), [1.0]);
        // Uniform values: plain quantiles.
        let u: Vec<f64> = (0..100).map(f64::from).collect();
        assert_eq!(equal_frequency_edges(&u, 4), [25.0, 50.0, 75.0]);
        // One value only, or one bin: no edges.
        assert!(equal_frequency_edges(&[5.0; 10], 10).is_empty());
        assert!(equal_frequency_edges(&u, 1).is_empty());
    }
}
