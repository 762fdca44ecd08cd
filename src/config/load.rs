//! Loading settings: compiled-in defaults, then a file, then `LEADROUTER__SECTION__KEY`
//! variables. A key nothing reads (a typo) is refused with the closest valid name, and
//! relative paths in a file are taken from that file's folder, not the working directory.
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::{DEFAULTS, Settings};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {0} does not exist")]
    Missing(PathBuf),
    #[error("cannot read config file {path}: {reason}")]
    Unreadable { path: PathBuf, reason: String },
    #[error("invalid configuration: {0}")]
    Parse(String),
    /// Keys or variables no setting has; the message names the closest valid ones.
    #[error("{}", .0.join("; "))]
    Unknown(Vec<String>),
    #[error("{0}")]
    Invalid(String),
}

/// Settings holding file paths: relative ones given in a config file are taken from the
/// file's folder (given in the environment or defaults: from the working directory).
pub const PATH_KEYS: [&str; 8] = [
    "model.path",
    "model.dir",
    "reps.file",
    "auth.keys_file",
    "server.tls_cert",
    "server.tls_key",
    "server.tls_client_ca",
    "store.tls_ca_file",
];

const PREFIX: &str = "LEADROUTER__";

/// The `LEADROUTER__` variable of a dotted key.
pub fn env_name(key: &str) -> String {
    format!("{PREFIX}{}", key.replace('.', "__").to_uppercase())
}

impl Settings {
    /// Loads defaults, then `file` (or $LEADROUTER_CONFIG), then the process environment.
    pub fn load(file: Option<&Path>) -> Result<Settings, ConfigError> {
        let env_file = std::env::var_os("LEADROUTER_CONFIG").map(PathBuf::from);
        let env: HashMap<String, String> = std::env::vars()
            .filter(|(k, _)| k.starts_with(PREFIX))
            .collect();
        Settings::load_with_env(file.map(Path::to_path_buf).or(env_file).as_deref(), env)
    }

    /// `load` with the given `LEADROUTER__` variables instead of the process's.
    pub fn load_with_env(
        file: Option<&Path>,
        env: HashMap<String, String>,
    ) -> Result<Settings, ConfigError> {
        let mut builder = config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml));
        if let Some(f) = file {
            if !f.exists() {
                return Err(ConfigError::Missing(f.to_path_buf()));
            }
            let text = std::fs::read_to_string(f).map_err(|e| ConfigError::Unreadable {
                path: f.to_path_buf(),
                reason: e.to_string(),
            })?;
            let table: toml::Table = toml::from_str(&text)
                .map_err(|e| ConfigError::Parse(format!("{}: {e}", f.display())))?;
            builder = builder.add_source(config::File::from_str(&text, config::FileFormat::Toml));
            for (key, path) in relative_paths(&table, f, &env) {
                builder = builder
                    .set_override(key, path)
                    .map_err(|e| ConfigError::Parse(e.to_string()))?;
            }
        }
        let has_env = !env.is_empty();
        builder = builder.add_source(
            config::Environment::with_prefix("LEADROUTER")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .source(Some(env.clone())),
        );
        let merged = builder
            .build()
            .map_err(|e| ConfigError::Parse(e.to_string()))?;
        let mut ignored = Vec::new();
        let s: Settings = serde_ignored::deserialize(merged, |p| ignored.push(p.to_string()))
            .map_err(|e| ConfigError::Parse(e.to_string()))?;
        if !ignored.is_empty() {
            let known = known_keys(&s);
            let said = ignored
                .iter()
                .map(|k| unknown(k, &known, has_env.then_some(&env), file))
                .collect();
            return Err(ConfigError::Unknown(said));
        }
        s.validate().map_err(ConfigError::Invalid)?;
        Ok(s)
    }
}

/// The path settings `table` (a config file) gives as relative paths, made absolute against
/// the file's folder; a setting a variable overrides is left alone.
fn relative_paths(
    table: &toml::Table,
    file: &Path,
    env: &HashMap<String, String>,
) -> Vec<(&'static str, String)> {
    let folder = file.parent().filter(|p| !p.as_os_str().is_empty());
    let folder = std::path::absolute(folder.unwrap_or(Path::new("."))).unwrap_or_default();
    let mut out = Vec::new();
    for key in PATH_KEYS {
        let (section, name) = key.split_once('.').unwrap_or(("", key));
        let Some(value) = table
            .get(section)
            .and_then(|s| s.get(name))
            .and_then(toml::Value::as_str)
        else {
            continue;
        };
        let overridden = env.keys().any(|k| k.eq_ignore_ascii_case(&env_name(key)));
        let v = value.trim();
        if overridden || v.is_empty() || crate::builtin::is_builtin(v) || Path::new(v).is_absolute()
        {
            continue;
        }
        out.push((key, folder.join(v).display().to_string()));
    }
    out
}

/// Every dotted key the settings have (maps' entries included), from the loaded settings.
fn known_keys(s: &Settings) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(v) = toml::Value::try_from(s) {
        flatten("", &v, &mut out);
    }
    out
}

/// The dotted keys of a TOML value's leaves (arrays are leaves).
pub fn flatten(prefix: &str, v: &toml::Value, out: &mut Vec<String>) {
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&path, v, out);
            }
        }
        _ => out.push(prefix.to_string()),
    }
}

/// The valid key nearest to a mistyped one: among its section's keys (by their last part)
/// when the section exists, else among all; none when most of it would have to change.
fn closest<'a>(key: &str, known: &'a [String]) -> Option<&'a str> {
    let parent = |k: &str| k.rsplit_once('.').map_or("", |(p, _)| p).to_string();
    let leaf = |k: &'a str| k.rsplit_once('.').map_or(k, |(_, l)| l);
    let siblings: Vec<&String> = known.iter().filter(|k| parent(k) == parent(key)).collect();
    let (pool, part): (Vec<&String>, fn(&str) -> &str) = if siblings.is_empty() {
        (known.iter().collect(), |k| k)
    } else {
        (siblings, |k| k.rsplit_once('.').map_or(k, |(_, l)| l))
    };
    let typed = part(key);
    pool.into_iter()
        .map(|k| (strsim::levenshtein(part(k), typed), k.as_str()))
        .filter(|(d, k)| d * 3 <= 2 * typed.len().max(part(k).len()))
        .min()
        .map(|(_, k)| k)
        .filter(|k| !leaf(k).is_empty())
}

/// What to say of an unknown key: where it came from and the closest valid name.
fn unknown(
    key: &str,
    known: &[String],
    env: Option<&HashMap<String, String>>,
    file: Option<&Path>,
) -> String {
    let closest = closest(key, known);
    let var = env_name(key);
    let from_env = env.is_some_and(|e| e.keys().any(|k| k.eq_ignore_ascii_case(&var)));
    if from_env {
        match closest {
            Some(c) => format!("unknown variable {var}: did you mean {}?", env_name(c)),
            None => format!("unknown variable {var}: no setting has that name"),
        }
    } else {
        let place = file.map_or_else(String::new, |f| format!(" in {}", f.display()));
        match closest {
            Some(c) => format!("unknown setting {key}{place}: did you mean {c}?"),
            None => format!(
                "unknown setting {key}{place}: no setting has that name (`leadrouter config --print` lists them)"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_typo_in_a_file_or_a_variable_is_refused_with_the_closest_name() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "[server]\nadress = \"0.0.0.0:1\"\n").unwrap();
        let e = Settings::load_with_env(Some(&f), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown setting server.adress"), "{e}");
        assert!(e.contains("did you mean server.addr?"), "{e}");
        let e = Settings::load_with_env(None, env(&[("LEADROUTER__SERVER__ADRR", "x:1")]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unknown variable LEADROUTER__SERVER__ADRR"),
            "{e}"
        );
        assert!(e.contains("did you mean LEADROUTER__SERVER__ADDR?"), "{e}");
        let e = Settings::load_with_env(None, env(&[("LEADROUTER__NONSENSE", "1")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no setting has that name"), "{e}");
        // Entries of maps are settings too, not typos.
        std::fs::write(
            &f,
            "[sla.first_touch_s]\nqualified = 60\n[routing.pools.vip]\nmode = \"offer\"\n",
        )
        .unwrap();
        let s = Settings::load_with_env(Some(&f), env(&[])).unwrap();
        assert_eq!(s.sla.first_touch_s["qualified"], 60.0);
        // A good variable is taken.
        let s = Settings::load_with_env(None, env(&[("LEADROUTER__SERVER__ADDR", "0.0.0.0:7")]))
            .unwrap();
        assert_eq!(s.server.addr, "0.0.0.0:7");
    }

    #[test]
    fn relative_paths_in_a_file_resolve_against_its_folder() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("etc");
        std::fs::create_dir(&sub).unwrap();
        let f = sub.join("c.toml");
        std::fs::write(
            &f,
            "[model]\npath = \"../models/m.json\"\ndir = \"\"\n[reps]\nfile = \"builtin:example-team\"\n\
             [auth]\nkeys_file = \"/abs/keys.toml\"\n[server]\ntls_cert = \"tls/c.pem\"\ntls_key = \"tls/k.pem\"\n",
        )
        .unwrap();
        let s = Settings::load_with_env(Some(&f), env(&[])).unwrap();
        let folder = std::path::absolute(&sub).unwrap();
        assert_eq!(Path::new(&s.model.path), folder.join("../models/m.json"));
        assert_eq!(Path::new(&s.server.tls_cert), folder.join("tls/c.pem"));
        assert_eq!(s.model.dir, "");
        assert_eq!(s.reps.file, "builtin:example-team");
        assert_eq!(s.auth.keys_file, "/abs/keys.toml");
        // A variable overrides the file and is taken as given.
        let s = Settings::load_with_env(Some(&f), env(&[("LEADROUTER__MODEL__PATH", "x.json")]))
            .unwrap();
        assert_eq!(s.model.path, "x.json");
    }
}
