//! The replicated state: stock levels per item, as a deterministic [`StateMachine`].

use std::collections::BTreeMap;

use ha::{LogIndex, StateMachine, StateMachineError};
use serde::{Deserialize, Serialize};

/// Most distinct items held: an adjustment that would add one more is refused, so a careless
/// client cannot make every replica hold an unbounded map.
pub const ITEMS_MAX: usize = 10_000;
/// Longest item name, in bytes.
pub const ITEM_BYTES_MAX: usize = 64;
/// Largest stock level.
pub const LEVEL_MAX: u64 = 1_000_000_000;

/// Stock levels per item. An item at level 0 is not kept.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stock {
    levels: BTreeMap<String, u64>,
}

/// Add `delta` units of `item` (negative: take them).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Adjust {
    /// The item.
    pub item: String,
    /// Units added (negative: taken).
    pub delta: i64,
}

/// What an [`Adjust`] did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Adjusted {
    /// Applied: the new level.
    Level(u64),
    /// Refused, nothing changed: taking more than is in stock, or going past
    /// [`LEVEL_MAX`] or [`ITEMS_MAX`].
    Refused {
        /// The level, unchanged.
        level: u64,
        /// Why.
        reason: Refusal,
    },
}

/// Why an adjustment was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Refusal {
    /// Fewer units in stock than asked for.
    Insufficient,
    /// The level would pass [`LEVEL_MAX`].
    TooMany,
    /// A new item, and [`ITEMS_MAX`] are held.
    TooManyItems,
}

/// A read: one item's level, or every level.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StockQuery {
    /// One item.
    Item(String),
    /// Every item (at most [`ITEMS_MAX`]).
    All,
}

/// The answer to a [`StockQuery`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StockAnswer {
    /// One item's level (0 when never stocked).
    Level(u64),
    /// Every item with stock.
    All(BTreeMap<String, u64>),
}

impl StateMachine for Stock {
    type Command = Adjust;
    type Response = Adjusted;
    type Query = StockQuery;
    type QueryResponse = StockAnswer;

    fn apply(&mut self, _index: LogIndex, Adjust { item, delta }: Adjust) -> Adjusted {
        let level = self.levels.get(&item).copied().unwrap_or(0);
        let refused = |reason| Adjusted::Refused { level, reason };
        let new_level = if delta >= 0 {
            level.saturating_add(delta.unsigned_abs())
        } else {
            match level.checked_sub(delta.unsigned_abs()) {
                Some(new_level) => new_level,
                None => return refused(Refusal::Insufficient),
            }
        };
        if new_level > LEVEL_MAX {
            return refused(Refusal::TooMany);
        }
        if level == 0 && new_level > 0 && self.levels.len() >= ITEMS_MAX {
            return refused(Refusal::TooManyItems);
        }
        if new_level == 0 {
            self.levels.remove(&item);
        } else {
            self.levels.insert(item, new_level);
        }
        Adjusted::Level(new_level)
    }

    fn query(&self, query: &StockQuery) -> StockAnswer {
        match query {
            StockQuery::Item(item) => {
                StockAnswer::Level(self.levels.get(item).copied().unwrap_or(0))
            }
            StockQuery::All => StockAnswer::All(self.levels.clone()),
        }
    }

    fn snapshot(&self) -> Result<Vec<u8>, StateMachineError> {
        serde_json::to_vec(&self.levels)
            .map_err(|error| StateMachineError::SnapshotFailed(error.to_string()))
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), StateMachineError> {
        let levels: BTreeMap<String, u64> = serde_json::from_slice(snapshot)
            .map_err(|error| StateMachineError::Corrupt(error.to_string()))?;
        if levels.len() > ITEMS_MAX {
            return Err(StateMachineError::Corrupt(format!(
                "{} items; at most {ITEMS_MAX}",
                levels.len()
            )));
        }
        self.levels = levels;
        Ok(())
    }
}

/// Whether `item` is a name the service accepts: 1 to [`ITEM_BYTES_MAX`] bytes of ASCII
/// letters, digits, `-` and `_` (so it is safe in a KV key and a URL path).
pub fn valid_item(item: &str) -> bool {
    !item.is_empty()
        && item.len() <= ITEM_BYTES_MAX
        && item
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adjust(stock: &mut Stock, item: &str, delta: i64) -> Adjusted {
        stock.apply(
            LogIndex(1),
            Adjust {
                item: item.into(),
                delta,
            },
        )
    }

    #[test]
    fn levels_never_go_below_zero_or_past_the_bounds() {
        let mut stock = Stock::default();
        assert_eq!(adjust(&mut stock, "bolts", 5), Adjusted::Level(5));
        assert_eq!(
            adjust(&mut stock, "bolts", -6),
            Adjusted::Refused {
                level: 5,
                reason: Refusal::Insufficient
            }
        );
        assert_eq!(adjust(&mut stock, "bolts", -5), Adjusted::Level(0));
        assert_eq!(
            stock.query(&StockQuery::All),
            StockAnswer::All(BTreeMap::new())
        );
        assert!(matches!(
            adjust(&mut stock, "nuts", i64::MAX),
            Adjusted::Refused {
                reason: Refusal::TooMany,
                ..
            }
        ));
        let snapshot = stock.snapshot().expect("snapshot");
        let mut restored = Stock::default();
        restored.restore(&snapshot).expect("restore");
        assert_eq!(restored, stock);
        assert!(restored.restore(b"not json").is_err());
        assert!(valid_item("m8-bolt_x") && !valid_item("") && !valid_item("a/b"));
    }
}
