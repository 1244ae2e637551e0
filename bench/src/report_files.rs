//! Where a benchmark's figures go: `<stem>.json` (every figure) and `<stem>.md` (its fragment
//! of bench/RESULTS.md), side by side in one output directory.

use std::path::Path;

use serde::Serialize;

/// Write `figures` as `<stem>.json` and `markdown` as `<stem>.md` in `out_dir`.
///
/// # Errors
/// The encoding or file error, as text naming the file.
pub fn write_report_files(
    out_dir: &Path,
    stem: &str,
    figures: &impl Serialize,
    markdown: &str,
) -> Result<(), String> {
    let json = serde_json::to_string_pretty(figures).map_err(|error| error.to_string())?;
    for (name, text) in [
        (format!("{stem}.json"), json.as_str()),
        (format!("{stem}.md"), markdown),
    ] {
        std::fs::write(out_dir.join(&name), text).map_err(|error| format!("{name}: {error}"))?;
    }
    Ok(())
}
