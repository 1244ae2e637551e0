//! One [`Config`] from a preset, a TOML file, environment variables and explicit overrides,
//! in that order (each layer wins over the ones before it), checked once at the end.
//!
//! ```toml
//! # ha.toml
//! preset = "full_ha"          # single | full_ha (default) | simple_failover | distributed
//! timing_preset = "lan"       # lan (default) | wan
//! node_id = "n1"
//! bind_addr = "127.0.0.1:7101"
//! http_addr = "127.0.0.1:8101"
//! seeds = ["127.0.0.1:7102", "127.0.0.1:7103"]
//! priority = 10
//! data_dir = "./data/n1"
//!
//! [cluster]
//! name = "payments"
//! failback_after_ms = 5000
//!
//! [timing]
//! heartbeat_interval_ms = 50
//! ```
//!
//! Every field of [`Config`] can be set from the environment as `HA_` followed by its path in
//! upper case, with `__` between a table and its field: `HA_NODE_ID=n1`,
//! `HA_SEEDS=127.0.0.1:7102,127.0.0.1:7103`, `HA_CLUSTER__NAME=payments`,
//! `HA_TIMING__HEARTBEAT_INTERVAL_MS=50`, `HA_PRESET=single`, `HA_WITNESS=true`. A value is
//! read by the field's type: a text field takes the text as it is (`HA_NODE_ID=1` is the id
//! `"1"`), a number or boolean field parses it, a list field takes a TOML array or
//! comma-separated text; an optional field with no default reads a number or boolean as such
//! and falls back to text when the field wants text (`HA_DATA_DIR=1`).
//!
//! Unknown fields in a file or an explicit setting are errors: a typo never silently leaves a
//! default in place. In the environment, which other programs share, a variable under one of
//! the config's tables (`HA_TIMING__HEARTBEAT=5`) is an error too, but a top-level `HA_*` name
//! that is no field (`HA_GIT_COMMIT`, a typo such as `HA_PRIORITTY`) is ignored with a
//! warning naming it, so an unrelated variable cannot stop a node from starting.
//!
//! A witness (`witness = true`, issue 15) gets priority 0 when no layer sets a priority; a
//! witness given another priority is refused by validation. Two data nodes and a witness:
//! `preset = "simple_failover"` on all three, `witness = true` on the third.
//!
//! ```
//! use ha::config_file::ConfigLoader;
//!
//! let config = ConfigLoader::new()
//!     .toml_text("node_id = \"n1\"\nbind_addr = \"127.0.0.1:7101\"\nseeds = [\"127.0.0.1:7102\"]", "inline")?
//!     .env_vars([("HA_PRIORITY".to_string(), "7".to_string())])?
//!     .load()?;
//! assert_eq!(config.priority.0, 7);
//! assert_eq!(config.cluster.bootstrap_expect, 3); // the full_ha preset
//! # Ok::<(), ha::NodeError>(())
//! ```

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use ha_core::{Config, NodeId, Timing};
use toml::{Table, Value};

use crate::error::NodeError;

/// Prefix of the environment variables [`ConfigLoader::env`] reads.
pub const ENV_PREFIX: &str = "HA_";
/// Largest config file read, in bytes.
pub const CONFIG_FILE_BYTES_MAX: u64 = 1024 * 1024;

const PRESET_KEY: &str = "preset";
const TIMING_PRESET_KEY: &str = "timing_preset";

/// Builds a [`Config`] from layers. See the [module documentation](self).
#[derive(Clone, Debug, Default)]
pub struct ConfigLoader {
    layers: Table,
    /// Every value taken from the environment, to tell at load which unknown fields came
    /// from a shared environment (warned about) rather than from the caller (refused).
    env_settings: Vec<EnvSetting>,
    /// Dotted paths set by a file or [`set`](Self::set): an unknown one is always an error.
    strict_paths: BTreeSet<String>,
    /// Variables ignored while reading the environment, said again at load.
    warnings: Vec<String>,
}

/// One `HA_*` variable as applied to the layers.
#[derive(Clone, Debug)]
struct EnvSetting {
    name: String,
    dotted: String,
    path: Vec<String>,
    raw: String,
    /// The value as it went into the layers.
    value: Value,
}

impl EnvSetting {
    /// The field had no default to take its type from and the text was read as a number,
    /// boolean or array: if the config does not deserialise, it is retried as text.
    fn is_ambiguous(&self, shape: &Table) -> bool {
        !self.value.is_str() && lookup(shape, &self.path).is_none()
    }
}

impl ConfigLoader {
    /// No layers yet: [`load`](Self::load) would use the `full_ha` preset and fail for the
    /// missing `node_id` and `bind_addr`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a TOML file.
    ///
    /// # Errors
    /// [`NodeError::ConfigFile`] when the file cannot be read, is too large, or is not TOML.
    pub fn file(self, path: impl AsRef<Path>) -> Result<Self, NodeError> {
        let path = path.as_ref();
        let file_error = |reason: String| NodeError::ConfigFile {
            path: path.to_path_buf(),
            reason,
        };
        let size = std::fs::metadata(path)
            .map_err(|error| file_error(error.to_string()))?
            .len();
        if size > CONFIG_FILE_BYTES_MAX {
            return Err(file_error(format!(
                "{size} bytes; a config file is at most {CONFIG_FILE_BYTES_MAX}"
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|error| file_error(error.to_string()))?;
        self.toml_text(&text, path)
    }

    /// Add TOML text; `origin` names it in errors.
    ///
    /// # Errors
    /// [`NodeError::ConfigFile`] when the text is not TOML.
    pub fn toml_text(mut self, text: &str, origin: impl AsRef<Path>) -> Result<Self, NodeError> {
        let table: Table =
            text.parse()
                .map_err(|error: toml::de::Error| NodeError::ConfigFile {
                    path: origin.as_ref().to_path_buf(),
                    reason: error.to_string(),
                })?;
        leaf_paths(&table, "", &mut self.strict_paths);
        merge(&mut self.layers, table);
        Ok(self)
    }

    /// Add the process's `HA_*` environment variables.
    ///
    /// # Errors
    /// [`NodeError::ConfigFile`] naming a variable that matches no field.
    pub fn env(self) -> Result<Self, NodeError> {
        self.env_vars(std::env::vars())
    }

    /// Add `HA_*` variables from `vars` (others are ignored). Each is read by the type of its
    /// field; a name that cannot be a field is ignored with a warning (see the
    /// [module documentation](self)).
    ///
    /// # Errors
    /// None today: bad values and unknown fields under a config table are reported by
    /// [`load`](Self::load). The `Result` is kept so a caller's `?` stays valid.
    pub fn env_vars(
        mut self,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, NodeError> {
        let mut vars: Vec<(String, String)> = vars
            .into_iter()
            .filter(|(name, _)| name.starts_with(ENV_PREFIX))
            .collect();
        vars.sort();
        let shape = reference_shape()?;
        for (name, raw) in vars {
            let path: Vec<String> = name[ENV_PREFIX.len()..]
                .split("__")
                .map(str::to_ascii_lowercase)
                .collect();
            if path.iter().any(String::is_empty) {
                self.warnings.push(format!(
                    "{name} ignored: not HA_<FIELD> or HA_<TABLE>__<FIELD>"
                ));
                continue;
            }
            // `HA_NODE_ID__X`: a path through a field that is not a table is no field at all.
            let through_value = (1..path.len())
                .any(|len| lookup(&shape, &path[..len]).is_some_and(|value| !value.is_table()));
            if through_value {
                self.warnings.push(format!(
                    "{name} ignored: {} is a value, not a table",
                    path[..path.len() - 1].join(".")
                ));
                continue;
            }
            let value = env_value(lookup(&shape, &path), &raw);
            self = self.set_path(&path, value.clone());
            self.env_settings.push(EnvSetting {
                name,
                dotted: path.join("."),
                path,
                raw,
                value,
            });
        }
        Ok(self)
    }

    /// Set one field by its dotted path (`"priority"`, `"cluster.name"`), over every layer
    /// added so far: for command-line flags.
    pub fn set(mut self, dotted_path: &str, value: impl Into<Value>) -> Self {
        let path: Vec<String> = dotted_path.split('.').map(str::to_string).collect();
        let value = value.into();
        match &value {
            Value::Table(table) => leaf_paths(table, dotted_path, &mut self.strict_paths),
            _ => {
                self.strict_paths.insert(dotted_path.to_string());
            }
        }
        self.set_path(&path, value)
    }

    fn set_path(mut self, path: &[String], value: Value) -> Self {
        set_in(&mut self.layers, path, value);
        self
    }

    /// Start from the chosen preset, apply the layers, and validate. Ignored environment
    /// variables are logged at `warn` (the node logs [`Config::warnings`] when it starts); use
    /// [`load_with_warnings`](Self::load_with_warnings) to show them another way.
    ///
    /// # Errors
    /// As for [`load_with_warnings`](Self::load_with_warnings).
    pub fn load(self) -> Result<Config, NodeError> {
        let (config, warnings) = self.load_with_warnings()?;
        for warning in warnings {
            tracing::warn!("configuration: {warning}");
        }
        Ok(config)
    }

    /// [`load`](Self::load), returning the warnings instead of logging them: the environment
    /// variables ignored, each named with why.
    ///
    /// # Errors
    /// [`NodeError::ConfigFile`] for an unknown preset or field, or a value of the wrong
    /// type; [`NodeError::Config`] when the result does not validate.
    pub fn load_with_warnings(self) -> Result<(Config, Vec<String>), NodeError> {
        let shape = reference_shape()?;
        let mut warnings = self.warnings;
        let (config, unknown) = match deserialize(self.layers.clone()) {
            Ok(found) => found,
            Err(first_error) => {
                // An optional field with no default read `1` as a number; the field may want
                // text (`HA_DATA_DIR=1`): try once more with those values as text.
                let mut retry = self.layers;
                let mut changed = false;
                for setting in &self.env_settings {
                    let still_from_env = lookup(&retry, &setting.path) == Some(&setting.value);
                    if setting.is_ambiguous(&shape) && still_from_env {
                        set_in(
                            &mut retry,
                            &setting.path,
                            Value::String(setting.raw.clone()),
                        );
                        changed = true;
                    }
                }
                if !changed {
                    return Err(first_error);
                }
                deserialize(retry).map_err(|_| first_error)?
            }
        };
        for field in unknown {
            let from_env = self.env_settings.iter().find(|setting| {
                field == setting.dotted || field.starts_with(&format!("{}.", setting.dotted))
            });
            let first = field.split('.').next().unwrap_or_default();
            let under_a_table = shape.get(first).is_some_and(Value::is_table);
            match from_env {
                Some(setting) if !under_a_table && !self.strict_paths.contains(&field) => {
                    warnings.push(format!(
                        "{} ignored: no field {field:?} in the config{}",
                        setting.name,
                        suggestion(&shape, first)
                    ));
                }
                Some(setting) => {
                    return Err(config_error(format!(
                        "unknown field {field:?} (from {}); see the Config reference in ha's README",
                        setting.name
                    )));
                }
                None => {
                    return Err(config_error(format!(
                        "unknown field {field:?}; see the Config reference in ha's README"
                    )));
                }
            }
        }
        config.validate()?;
        Ok((config, warnings))
    }
}

/// The preset, timing preset and layers deserialised into a [`Config`], with the paths of
/// the fields no [`Config`] has.
fn deserialize(mut layers: Table) -> Result<(Config, Vec<String>), NodeError> {
    let preset = take_text(&mut layers, PRESET_KEY)?;
    let timing = take_text(&mut layers, TIMING_PRESET_KEY)?;
    // A witness never leads: priority 0 unless a layer says otherwise (which validation
    // then refuses with the fix), instead of the preset's 1.
    if layers.get("witness") == Some(&Value::Boolean(true)) && !layers.contains_key("priority") {
        layers.insert("priority".to_string(), Value::Integer(0));
    }
    let mut merged = preset_table(preset.as_deref().unwrap_or("full_ha"), timing.as_deref())?;
    merge(&mut merged, layers);
    let mut unknown = Vec::new();
    let config: Config = serde_ignored::deserialize(Value::Table(merged), |path| {
        unknown.push(path.to_string());
    })
    .map_err(|error| config_error(error.to_string()))?;
    Ok((config, unknown))
}

/// Every field of a [`Config`] that has a default, with a value of its type: how an
/// environment variable's text is read. Optional fields with no default are absent.
fn reference_shape() -> Result<Table, NodeError> {
    let id = NodeId::new("reference").map_err(|error| config_error(error.to_string()))?;
    let config = Config::full_ha(
        id,
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        Vec::new(),
    );
    let mut shape = Table::try_from(&config).map_err(|error| config_error(error.to_string()))?;
    shape.insert(PRESET_KEY.to_string(), Value::String(String::new()));
    shape.insert(TIMING_PRESET_KEY.to_string(), Value::String(String::new()));
    Ok(shape)
}

/// The value at `path` in `table`, if every step but the last is a table.
fn lookup<'table>(table: &'table Table, path: &[String]) -> Option<&'table Value> {
    let (last, parents) = path.split_last()?;
    let mut table = table;
    for segment in parents {
        table = table.get(segment)?.as_table()?;
    }
    table.get(last)
}

/// Set `path` in `table`, making the tables on the way (a value in the way is replaced).
fn set_in(table: &mut Table, path: &[String], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut table = table;
    for segment in parents {
        let entry = table
            .entry(segment.clone())
            .or_insert_with(|| Value::Table(Table::new()));
        if !entry.is_table() {
            *entry = Value::Table(Table::new());
        }
        let Value::Table(inner) = entry else {
            return;
        };
        table = inner;
    }
    table.insert(last.clone(), value);
}

/// The dotted path of every non-table value in `table`, under `prefix`.
fn leaf_paths(table: &Table, prefix: &str, into: &mut BTreeSet<String>) {
    for (key, value) in table {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            Value::Table(inner) => leaf_paths(inner, &path, into),
            _ => {
                into.insert(path);
            }
        }
    }
}

/// `; did you mean "priority"?` for a top-level name one or two edits from a field.
fn suggestion(shape: &Table, name: &str) -> String {
    shape
        .keys()
        .map(|key| (edit_distance(key, name), key))
        .filter(|(distance, _)| *distance <= 2)
        .min()
        .map(|(_, key)| format!("; did you mean {key:?}?"))
        .unwrap_or_default()
}

/// Levenshtein distance over bytes (config names are ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let b = b.as_bytes();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.bytes().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// The preset's fields as a table, without `node_id` and `bind_addr` (those must be given).
fn preset_table(preset: &str, timing: Option<&str>) -> Result<Table, NodeError> {
    // Placeholders, removed below: presets need an id and an address to be built.
    let id = NodeId::new("preset").map_err(|error| config_error(error.to_string()))?;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let config = match preset {
        "single" => Config::single(id, addr),
        "full_ha" => Config::full_ha(id, addr, Vec::new()),
        "simple_failover" => Config::simple_failover(id, addr, Vec::new(), false),
        "distributed" => Config::distributed(id, addr, Vec::new()),
        other => {
            return Err(config_error(format!(
                "preset {other:?} is not one of single, full_ha, simple_failover, distributed"
            )));
        }
    };
    let config = match timing {
        None | Some("lan") => config,
        Some("wan") => config.with_timing(Timing::wan()),
        Some(other) => {
            return Err(config_error(format!(
                "timing_preset {other:?} is not one of lan, wan"
            )));
        }
    };
    let mut table = Table::try_from(&config).map_err(|error| config_error(error.to_string()))?;
    table.remove("node_id");
    table.remove("bind_addr");
    Ok(table)
}

fn take_text(table: &mut Table, key: &str) -> Result<Option<String>, NodeError> {
    match table.remove(key) {
        None => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(other) => Err(config_error(format!(
            "{key} must be text, not {}",
            other.type_str()
        ))),
    }
}

/// Deep merge: tables merge key by key, anything else is replaced.
fn merge(base: &mut Table, layer: Table) {
    for (key, value) in layer {
        match (base.get_mut(&key), value) {
            (Some(Value::Table(existing)), Value::Table(inner)) => merge(existing, inner),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// An environment variable's text read as its field's type, taken from the field's default
/// (`shaped_like`): text stays text, numbers and booleans are parsed (left as text when they
/// do not parse, so the error names the field), lists take a TOML array or comma-separated
/// text. A field with no default reads a number, boolean or array as TOML, text otherwise.
fn env_value(shaped_like: Option<&Value>, text: &str) -> Value {
    let parsed = || {
        format!("value = {text}")
            .parse::<Table>()
            .ok()
            .and_then(|mut table| table.remove("value"))
    };
    match shaped_like {
        Some(Value::String(_)) => Value::String(text.to_string()),
        Some(Value::Array(_)) => match parsed() {
            Some(array @ Value::Array(_)) => array,
            _ => Value::Array(
                text.split(',')
                    .map(str::trim)
                    .filter(|item| !item.is_empty())
                    .map(|item| Value::String(item.to_string()))
                    .collect(),
            ),
        },
        Some(Value::Integer(_) | Value::Float(_) | Value::Boolean(_)) => {
            parsed().unwrap_or_else(|| Value::String(text.to_string()))
        }
        _ => parsed()
            .filter(|value| {
                matches!(
                    value,
                    Value::Integer(_) | Value::Float(_) | Value::Boolean(_) | Value::Array(_)
                )
            })
            .unwrap_or_else(|| Value::String(text.to_string())),
    }
}

fn config_error(reason: String) -> NodeError {
    NodeError::ConfigFile {
        path: PathBuf::from("configuration"),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> ConfigLoader {
        ConfigLoader::new()
            .toml_text(
                "node_id = \"n1\"\nbind_addr = \"127.0.0.1:7101\"\nseeds = [\"127.0.0.1:7102\"]",
                "test",
            )
            .expect("valid TOML")
    }

    fn reason(error: NodeError) -> String {
        match error {
            NodeError::ConfigFile { reason, .. } => reason,
            other => panic!("expected a config file error, got {other:?}"),
        }
    }

    #[test]
    fn presets_fill_what_the_file_leaves_out() {
        let config = base().load().expect("valid");
        assert_eq!(config.cluster.bootstrap_expect, 3);
        assert_eq!(config.timing, Timing::lan());
        let config = base()
            .set("preset", "distributed")
            .set("timing_preset", "wan")
            .load()
            .expect("valid");
        assert_eq!(config.cluster.bootstrap_expect, 5);
        assert_eq!(config.timing, Timing::wan());
    }

    #[test]
    fn later_layers_win_and_tables_merge() {
        let config = base()
            .toml_text(
                "[cluster]\nname = \"file\"\n[timing]\nheartbeat_interval_ms = 40",
                "f",
            )
            .expect("TOML")
            .env_vars([
                ("HA_CLUSTER__NAME".to_string(), "env".to_string()),
                (
                    "HA_SEEDS".to_string(),
                    "127.0.0.1:1, 127.0.0.1:2".to_string(),
                ),
                ("HA_VOTER".to_string(), "false".to_string()),
                ("OTHER".to_string(), "ignored".to_string()),
            ])
            .expect("known variables")
            .set("priority", 9)
            .load()
            .expect("valid");
        assert_eq!(config.cluster.name, "env");
        assert_eq!(config.timing.heartbeat_interval_ms, 40);
        assert_eq!(
            config.timing.election_timeout_min_ms, 150,
            "kept from the preset"
        );
        assert_eq!(config.seeds.len(), 2);
        assert!(!config.voter);
        assert_eq!(config.priority.0, 9);
    }

    #[test]
    fn unknown_fields_and_presets_are_refused_by_name() {
        let error = base().set("prioritty", 3).load().unwrap_err();
        assert!(reason(error).contains("prioritty"));
        let error = base()
            .env_vars([("HA_TIMING__HEARTBEAT".to_string(), "5".to_string())])
            .expect("well-formed name")
            .load()
            .unwrap_err();
        assert!(reason(error).contains("heartbeat"));
        let error = base().set("preset", "huge").load().unwrap_err();
        assert!(reason(error).contains("huge"));
        // A typo in the file is refused even when the environment sets the same name.
        let error = base()
            .toml_text("prioritty = 3", "file")
            .expect("TOML")
            .env_vars([("HA_PRIORITTY".to_string(), "4".to_string())])
            .expect("read")
            .load()
            .unwrap_err();
        assert!(reason(error).contains("prioritty"));
    }

    fn env(vars: &[(&str, &str)]) -> Result<(Config, Vec<String>), NodeError> {
        base()
            .env_vars(
                vars.iter()
                    .map(|(name, value)| (name.to_string(), value.to_string())),
            )?
            .set("data_dir", "/var/lib/ha")
            .load_with_warnings()
    }

    #[test]
    fn unrelated_ha_variables_are_ignored_with_a_warning_naming_them() {
        let (config, warnings) = env(&[
            ("HA_GIT_COMMIT", "4e22617"),
            ("HA_SIM_SEEDS", "0..100"),
            ("HA___X", "1"),
            ("HA_NODE_ID__EXTRA", "x"),
            ("HA_PRIORITTY", "4"),
            ("HA_PRIORITY", "6"),
        ])
        .expect("unrelated variables do not stop start-up");
        assert_eq!(config.priority.0, 6, "known variables still apply");
        assert_eq!(config.node_id.as_str(), "n1");
        assert_eq!(warnings.len(), 5, "{warnings:#?}");
        for name in [
            "HA_GIT_COMMIT",
            "HA_SIM_SEEDS",
            "HA___X",
            "HA_NODE_ID__EXTRA",
            "HA_PRIORITTY",
        ] {
            assert!(
                warnings.iter().any(|warning| warning.starts_with(name)),
                "{name} is named: {warnings:#?}"
            );
        }
        let typo = warnings
            .iter()
            .find(|warning| warning.starts_with("HA_PRIORITTY"))
            .expect("warned");
        assert!(typo.contains("did you mean \"priority\""), "{typo}");
    }

    #[test]
    fn environment_values_are_read_by_the_field_type() {
        let (config, warnings) = env(&[
            ("HA_NODE_ID", "1"),
            ("HA_CLUSTER__NAME", "2024"),
            ("HA_CLUSTER__FAILBACK_AFTER_MS", "5000"),
            ("HA_SEEDS", "127.0.0.1:1,127.0.0.1:2"),
            ("HA_VOTER", "true"),
        ])
        .expect("valid");
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(
            config.node_id.as_str(),
            "1",
            "text fields keep digits as text"
        );
        assert_eq!(config.cluster.name, "2024");
        assert_eq!(config.cluster.failback_after_ms, Some(5000));
        assert_eq!(config.seeds.len(), 2);
        // An optional text field with no default: read as a number first, then as text.
        let config = base()
            .env_vars([("HA_DATA_DIR".to_string(), "1".to_string())])
            .expect("read")
            .load()
            .expect("valid");
        assert_eq!(config.data_dir, Some(PathBuf::from("1")));
        // A number field given text is still an error naming the field.
        let error = env(&[("HA_PRIORITY", "high")]).unwrap_err();
        assert!(reason(error).contains("priority"));
        // A later explicit setting wins over the environment.
        let config = base()
            .env_vars([("HA_NODE_ID".to_string(), "7".to_string())])
            .expect("read")
            .set("node_id", "n9")
            .load()
            .expect("valid");
        assert_eq!(config.node_id.as_str(), "n9");
    }

    #[test]
    fn a_memory_only_voter_loads_and_its_warning_is_left_to_the_node() {
        let (config, warnings) = base().load_with_warnings().expect("valid");
        assert!(warnings.is_empty(), "said once, by the node: {warnings:?}");
        assert_eq!(config.warnings().len(), 1);
        let (config, _) = env(&[]).expect("valid");
        assert!(config.warnings().is_empty());
    }

    #[test]
    fn wrong_types_missing_fields_and_bad_values_are_errors() {
        let error = base().set("priority", "high").load().unwrap_err();
        assert!(reason(error).contains("priority"), "names the field");
        let error = ConfigLoader::new().load().unwrap_err();
        assert!(reason(error).contains("node_id"));
        let error = ConfigLoader::new()
            .toml_text("node_id = ", "broken")
            .unwrap_err();
        assert!(matches!(error, NodeError::ConfigFile { path, .. } if path == Path::new("broken")));
        // Parsed, but invalid: the validation error names the field.
        match base().set("cluster.bootstrap_expect", 4).load() {
            Err(NodeError::Config(error)) => assert_eq!(error.field, "cluster.bootstrap_expect"),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn a_witness_gets_priority_0_unless_a_layer_sets_one() {
        let config = base()
            .toml_text("preset = \"simple_failover\"\nwitness = true", "file")
            .expect("TOML")
            .load()
            .expect("valid");
        assert!(config.witness && config.voter);
        assert_eq!(config.priority.0, 0);
        assert_eq!(config.cluster.bootstrap_expect, 3);
        let config = base()
            .env_vars([("HA_WITNESS".to_string(), "true".to_string())])
            .expect("a known variable")
            .load()
            .expect("valid");
        assert!(config.witness);
        assert_eq!(config.priority.0, 0);
        match base().set("witness", true).set("priority", 5).load() {
            Err(NodeError::Config(error)) => assert_eq!(error.field, "priority"),
            other => panic!("expected a validation error, got {other:?}"),
        }
        let data = base()
            .set("preset", "simple_failover")
            .load()
            .expect("valid");
        assert!(!data.witness);
        assert_eq!(data.priority.0, 1);
    }

    #[test]
    fn files_are_read_and_bounded() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("ha.toml");
        std::fs::write(
            &path,
            "preset = \"single\"\nnode_id = \"a\"\nbind_addr = \"127.0.0.1:1\"",
        )
        .expect("write");
        let config = ConfigLoader::new()
            .file(&path)
            .expect("read")
            .load()
            .expect("valid");
        assert_eq!(config.cluster.bootstrap_expect, 1);
        let missing = ConfigLoader::new()
            .file(dir.path().join("none.toml"))
            .unwrap_err();
        assert!(matches!(missing, NodeError::ConfigFile { .. }));
        let big = dir.path().join("big.toml");
        std::fs::write(&big, vec![b'#'; CONFIG_FILE_BYTES_MAX as usize + 1]).expect("write");
        assert!(reason(ConfigLoader::new().file(&big).unwrap_err()).contains("at most"));
    }
}
