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
//! `HA_TIMING__HEARTBEAT_INTERVAL_MS=50`, `HA_PRESET=single`, `HA_WITNESS=true`. A value is read as TOML when it
//! parses as a number, a boolean or an array, as text otherwise; a list field also takes
//! comma-separated text. Unknown fields, in the file or the environment, are errors: a typo
//! never silently leaves a default in place.
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

    /// Add `HA_*` variables from `vars` (others are ignored).
    ///
    /// # Errors
    /// [`NodeError::ConfigFile`] naming a variable that matches no field.
    pub fn env_vars(
        mut self,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, NodeError> {
        let mut vars: Vec<(String, String)> = vars
            .into_iter()
            .filter(|(name, _)| name.starts_with(ENV_PREFIX))
            .collect();
        vars.sort();
        for (name, text) in vars {
            let path: Vec<String> = name[ENV_PREFIX.len()..]
                .split("__")
                .map(str::to_ascii_lowercase)
                .collect();
            if path.iter().any(String::is_empty) {
                return Err(env_error(&name, "is not HA_<FIELD> or HA_<TABLE>__<FIELD>"));
            }
            let value = env_value(&path, &text);
            self = self.set_path(&path, value);
        }
        Ok(self)
    }

    /// Set one field by its dotted path (`"priority"`, `"cluster.name"`), over every layer
    /// added so far: for command-line flags.
    pub fn set(self, dotted_path: &str, value: impl Into<Value>) -> Self {
        let path: Vec<String> = dotted_path.split('.').map(str::to_string).collect();
        self.set_path(&path, value.into())
    }

    fn set_path(mut self, path: &[String], value: Value) -> Self {
        let mut table = &mut self.layers;
        for segment in &path[..path.len().saturating_sub(1)] {
            let entry = table
                .entry(segment.clone())
                .or_insert_with(|| Value::Table(Table::new()));
            if !entry.is_table() {
                *entry = Value::Table(Table::new());
            }
            let Value::Table(inner) = entry else {
                return self;
            };
            table = inner;
        }
        if let Some(last) = path.last() {
            table.insert(last.clone(), value);
        }
        self
    }

    /// Start from the chosen preset, apply the layers, and validate.
    ///
    /// # Errors
    /// [`NodeError::ConfigFile`] for an unknown preset or field, or a value of the wrong
    /// type; [`NodeError::Config`] when the result does not validate.
    pub fn load(self) -> Result<Config, NodeError> {
        let mut layers = self.layers;
        let preset = take_text(&mut layers, PRESET_KEY)?;
        let timing = take_text(&mut layers, TIMING_PRESET_KEY)?;
        // A witness never leads: priority 0 unless a layer says otherwise (which validation
        // then refuses with the fix), instead of the preset's 1.
        if layers.get("witness") == Some(&Value::Boolean(true)) && !layers.contains_key("priority")
        {
            layers.insert("priority".to_string(), Value::Integer(0));
        }
        let mut merged = preset_table(preset.as_deref().unwrap_or("full_ha"), timing.as_deref())?;
        merge(&mut merged, layers);
        let mut unknown = Vec::new();
        let config: Config = serde_ignored::deserialize(Value::Table(merged), |path| {
            unknown.push(path.to_string());
        })
        .map_err(|error| config_error(error.to_string()))?;
        if let Some(field) = unknown.first() {
            return Err(config_error(format!(
                "unknown field {field:?}; see the Config reference in ha's README"
            )));
        }
        config.validate()?;
        Ok(config)
    }
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

/// An environment value: TOML when it is a number, boolean or array; otherwise text, split on
/// commas for the list fields.
fn env_value(path: &[String], text: &str) -> Value {
    let parsed = format!("value = {text}")
        .parse::<Table>()
        .ok()
        .and_then(|mut table| table.remove("value"))
        .filter(|value| {
            matches!(
                value,
                Value::Integer(_) | Value::Float(_) | Value::Boolean(_) | Value::Array(_)
            )
        });
    if let Some(value) = parsed {
        return value;
    }
    let is_list = matches!(
        path.iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .as_slice(),
        ["seeds"] | ["security", "cluster_keys"]
    );
    if is_list {
        Value::Array(
            text.split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| Value::String(item.to_string()))
                .collect(),
        )
    } else {
        Value::String(text.to_string())
    }
}

fn config_error(reason: String) -> NodeError {
    NodeError::ConfigFile {
        path: PathBuf::from("configuration"),
        reason,
    }
}

fn env_error(name: &str, problem: &str) -> NodeError {
    NodeError::ConfigFile {
        path: PathBuf::from("environment"),
        reason: format!("{name} {problem}"),
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
        let error = base()
            .env_vars([("HA___X".to_string(), "1".to_string())])
            .unwrap_err();
        assert!(reason(error).contains("HA___X"));
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
