//! One leader per term, checked from the `role` event lines every node process printed.

use std::collections::BTreeMap;

use serde_json::Value;

/// The leaders each node announced, by term: `(node, term)` from every `EVENT` line of kind
/// `role` with role `leader`.
pub fn leaders_by_term<'a>(
    lines_by_node: impl IntoIterator<Item = &'a [String]>,
) -> BTreeMap<u64, Vec<String>> {
    let mut leaders: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for lines in lines_by_node {
        for line in lines {
            let Some(json) = line.strip_prefix("EVENT ") else {
                continue;
            };
            let Ok(event) = serde_json::from_str::<Value>(json) else {
                continue;
            };
            if event["kind"] != "role" || event["role"] != "leader" {
                continue;
            }
            let (Some(term), Some(node)) = (event["term"].as_u64(), event["node"].as_str()) else {
                continue;
            };
            let nodes = leaders.entry(term).or_default();
            if !nodes.iter().any(|known| known == node) {
                nodes.push(node.to_string());
            }
        }
    }
    leaders
}

/// Check that no term had two leaders. Returns how many terms had a leader.
///
/// # Errors
/// The first term with two leaders, and who they were.
pub fn check_one_leader_per_term(leaders: &BTreeMap<u64, Vec<String>>) -> Result<usize, String> {
    match leaders.iter().find(|(_, nodes)| nodes.len() > 1) {
        Some((term, nodes)) => Err(format!("term {term} had leaders {nodes:?}")),
        None => Ok(leaders.len()),
    }
}
