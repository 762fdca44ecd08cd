//! The reps file: the team's profiles (`[[rep]]`) and the targets it sets (`[rep.targets]`
//! per rep, `[[target]]` for pools and the team).
use std::path::Path;

use anyhow::Context;

use crate::domain::rep::Rep;
use crate::domain::target::Target;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RepFile {
    #[serde(default, rename = "rep")]
    reps: Vec<Rep>,
    /// Pool and team targets: `[[target]]` with scope, id, period, metric, value.
    #[serde(default, rename = "target")]
    targets: Vec<TargetEntry>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetEntry {
    scope: String,
    #[serde(default)]
    id: String,
    period: String,
    metric: String,
    value: f64,
}

/// Reads a reps file (`[[rep]]` tables) and validates every entry.
pub fn read_reps(path: &Path) -> anyhow::Result<Vec<Rep>> {
    Ok(read_team(path)?.0)
}

/// Reads a reps file: the reps, and the targets it sets (`[rep.targets]` per rep, as
/// `month = { wins = 12, won_value = 50000 }`, and `[[target]]` tables for pools and the team).
pub fn read_team(path: &Path) -> anyhow::Result<(Vec<Rep>, Vec<Target>)> {
    let bytes = crate::builtin::read(path)
        .with_context(|| format!("cannot read reps file {}", path.display()))?;
    let text = String::from_utf8(bytes)
        .with_context(|| format!("reps file {} is not UTF-8", path.display()))?;
    let bad = || format!("bad reps file {}", path.display());
    let mut doc: toml::Table = toml::from_str(&text).with_context(bad)?;
    // Rep targets are not part of a rep's profile: taken out before the profile is read.
    let mut targets = Vec::new();
    if let Some(toml::Value::Array(reps)) = doc.get_mut("rep") {
        for r in reps.iter_mut().filter_map(toml::Value::as_table_mut) {
            let id = r
                .get("id")
                .and_then(toml::Value::as_str)
                .unwrap_or("")
                .to_string();
            let Some(t) = r.remove("targets") else {
                continue;
            };
            let t: std::collections::BTreeMap<String, std::collections::BTreeMap<String, f64>> = t
                .try_into()
                .with_context(|| format!("{}: rep {id:?}: bad targets", bad()))?;
            for (period, metrics) in t {
                for (metric, value) in metrics {
                    targets
                        .push(target_of(("rep", &id, &period, &metric, value)).with_context(bad)?);
                }
            }
        }
    }
    let file: RepFile = toml::Value::Table(doc).try_into().with_context(bad)?;
    for t in &file.targets {
        let t = (
            t.scope.as_str(),
            t.id.as_str(),
            t.period.as_str(),
            t.metric.as_str(),
            t.value,
        );
        targets.push(target_of(t).with_context(bad)?);
    }
    let reps = file
        .reps
        .into_iter()
        .map(|r| {
            r.validate()
                .with_context(|| format!("bad rep in {}", path.display()))
        })
        .collect::<anyhow::Result<_>>()?;
    Ok((reps, targets))
}

fn target_of(
    (scope, id, period, metric, value): (&str, &str, &str, &str, f64),
) -> anyhow::Result<Target> {
    use crate::domain::report::Period;
    use crate::domain::target::{Scope, TargetMetric};
    let scope = match scope {
        "rep" => Scope::Rep(id.to_string()),
        "pool" => Scope::Pool(id.to_string()),
        "team" => Scope::Team,
        s => anyhow::bail!("target scope {s:?} is not rep, pool or team"),
    };
    let period = Period::parse(period).ok_or_else(|| {
        anyhow::anyhow!("target period {period:?} is not day, week, month or quarter")
    })?;
    let metric = TargetMetric::parse(metric).ok_or_else(|| {
        anyhow::anyhow!("target metric {metric:?} is not assignments, wins or won_value")
    })?;
    anyhow::ensure!(
        value.is_finite() && value >= 0.0,
        "target value {value} must be >= 0"
    );
    Ok(Target {
        scope,
        period,
        metric,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::report::Period;
    use crate::domain::target::{Scope, TargetMetric};

    #[test]
    fn targets_come_from_rep_tables_and_target_tables() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reps.toml");
        std::fs::write(
            &path,
            r#"
[[rep]]
id = "ann"
capacity = 3
[rep.targets]
month = { wins = 12, won_value = 50000 }

[[target]]
scope = "team"
period = "quarter"
metric = "assignments"
value = 900
"#,
        )
        .unwrap();
        let (reps, targets) = read_team(&path).unwrap();
        assert_eq!(reps.len(), 1);
        let t = |scope, period, metric, value| Target {
            scope,
            period,
            metric,
            value,
        };
        let ann = || Scope::Rep("ann".into());
        assert_eq!(
            targets,
            vec![
                t(ann(), Period::Month, TargetMetric::Wins, 12.0),
                t(ann(), Period::Month, TargetMetric::WonValue, 50000.0),
                t(
                    Scope::Team,
                    Period::Quarter,
                    TargetMetric::Assignments,
                    900.0
                ),
            ]
        );
        std::fs::write(
            &path,
            "[[rep]]\nid = \"a\"\ncapacity = 1\n[rep.targets]\nmonth = { wins = -1 }\n",
        )
        .unwrap();
        let e = read_team(&path).unwrap_err();
        assert!(format!("{e:#}").contains(">= 0"), "{e:#}");
        std::fs::write(
            &path,
            "[[target]]\nscope = \"team\"\nperiod = \"year\"\nmetric = \"wins\"\nvalue = 1\n",
        )
        .unwrap();
        let e = read_team(&path).unwrap_err();
        assert!(format!("{e:#}").contains("year"), "{e:#}");
    }
}
