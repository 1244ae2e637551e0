//! Running a scenario under many seeds, and telling how to replay the one that failed.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

/// Environment variable: run only this seed (to replay a failure).
pub const SEED_VARIABLE: &str = "HA_SIM_SEED";
/// Environment variable: run this many seeds instead of the test's default count.
pub const SEEDS_VARIABLE: &str = "HA_SIM_SEEDS";
/// Environment variable: the first seed of a sweep (default 0), so two machines can sweep
/// different ranges.
pub const SEED_BASE_VARIABLE: &str = "HA_SIM_SEED_BASE";

fn read_number(variable: &str) -> Option<u64> {
    let text = std::env::var(variable).ok()?;
    let text = text.trim();
    match text.parse() {
        Ok(number) => Some(number),
        Err(_) => panic!("{variable}={text:?} is not a non-negative integer"),
    }
}

/// The seeds to run: just `HA_SIM_SEED` when set, else `HA_SIM_SEEDS` (or `default_count`)
/// consecutive seeds from `HA_SIM_SEED_BASE` (or 0).
///
/// # Panics
/// When one of the variables is set to something other than a number.
pub fn seeds_to_run(default_count: u64) -> Vec<u64> {
    if let Some(seed) = read_number(SEED_VARIABLE) {
        return vec![seed];
    }
    let count = read_number(SEEDS_VARIABLE).unwrap_or(default_count);
    let base = read_number(SEED_BASE_VARIABLE).unwrap_or(0);
    (0..count).map(|offset| base.wrapping_add(offset)).collect()
}

/// The cargo flags that select the profile and test target of the running test binary, found
/// from its path (`target/<profile>/deps/<target>-<hash>`).
fn cargo_target_flags() -> String {
    let Ok(executable) = std::env::current_exe() else {
        return String::from("--tests");
    };
    let stem = executable
        .file_stem()
        .and_then(|stem| stem.to_str())
        .unwrap_or_default();
    let target = stem.rsplit_once('-').map_or(stem, |(name, _hash)| name);
    let target_flag = if target == "ha_tests" {
        String::from("--lib")
    } else {
        format!("--test {target}")
    };
    let profile = executable
        .parent()
        .filter(|directory| directory.file_name().is_some_and(|name| name == "deps"))
        .and_then(Path::parent)
        .and_then(|directory| directory.file_name())
        .and_then(|name| name.to_str())
        .unwrap_or("debug");
    let profile_flag = match profile {
        "debug" => String::new(),
        "release" => String::from("--release "),
        other => format!("--profile {other} "),
    };
    format!("{profile_flag}{target_flag}")
}

/// The shell command that reruns `test_name` with only `seed`.
///
/// ```
/// let command = ha_tests::replay_command("thousand_members_converge", 42);
/// assert!(command.starts_with("HA_SIM_SEED=42 cargo test -p ha-tests "));
/// assert!(command.ends_with("-- --exact thousand_members_converge --nocapture"));
/// ```
pub fn replay_command(test_name: &str, seed: u64) -> String {
    format!(
        "{SEED_VARIABLE}={seed} cargo test -p ha-tests {} -- --exact {test_name} --nocapture",
        cargo_target_flags()
    )
}

/// Run `body` once per seed from [`seeds_to_run`]. The first seed whose run panics stops the
/// sweep with a panic that names the seed and the command replaying it.
///
/// # Panics
/// When `body` panics for some seed.
///
/// ```
/// let seen = std::sync::Mutex::new(Vec::new());
/// ha_tests::with_seeds("doc_example", 3, |seed| seen.lock().unwrap().push(seed));
/// # if std::env::var("HA_SIM_SEED").is_err() && std::env::var("HA_SIM_SEEDS").is_err() {
/// assert_eq!(seen.into_inner().unwrap().len(), 3);
/// # }
/// ```
pub fn with_seeds(test_name: &str, default_count: u64, body: impl Fn(u64)) {
    for seed in seeds_to_run(default_count) {
        // The body only borrows state the caller owns; after a panic we stop and re-panic, so
        // nothing observes that state half-updated.
        let outcome = catch_unwind(AssertUnwindSafe(|| body(seed)));
        if let Err(payload) = outcome {
            let reason = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or("(non-text panic)");
            let command = replay_command(test_name, seed);
            eprintln!("simulation {test_name} failed with seed {seed}; replay with:\n  {command}");
            panic!("{test_name} failed with seed {seed}: {reason}\nreplay with: {command}");
        }
    }
}
