//! Model prices: the table shipped in `prices.toml` (embedded in the binary,
//! so pricing works with no files around) and the lookup rules shared by the
//! shipped table and an agent file's `[prices]` overrides.

use rein_types::{ModelPrice, ModelRef};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// The shipped price table's text.
const SHIPPED: &str = include_str!("../prices.toml");

/// Prices by `provider:model`, with `provider:*` wildcards.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PriceTable {
    version: String,
    prices: BTreeMap<String, ModelPrice>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PriceFile {
    version: String,
    #[serde(default)]
    prices: BTreeMap<String, ModelPrice>,
}

impl PriceTable {
    /// A table from explicit entries (keys `provider:model` or `provider:*`).
    pub fn from_entries(version: impl Into<String>, prices: BTreeMap<String, ModelPrice>) -> Self {
        Self { version: version.into(), prices }
    }

    /// The table's version, e.g. `2026-11`: when its prices were last checked.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The price of a model: the exact `provider:model` entry; else the entry
    /// for the model without a trailing snapshot date (`gpt-4o-2024-08-06`
    /// is priced as `gpt-4o`); else the provider's `provider:*` entry.
    pub fn get(&self, model: &ModelRef) -> Option<ModelPrice> {
        let exact = format!("{}:{}", model.provider, model.name);
        if let Some(price) = self.prices.get(&exact) {
            return Some(*price);
        }
        if let Some(base) = strip_snapshot_date(&model.name)
            && let Some(price) = self.prices.get(&format!("{}:{base}", model.provider))
        {
            return Some(*price);
        }
        self.prices.get(&format!("{}:*", model.provider)).copied()
    }

    /// [`PriceTable::get`] for `provider:model` text; `None` when it does not
    /// parse.
    pub fn get_str(&self, model: &str) -> Option<ModelPrice> {
        self.get(&ModelRef::parse(model)?)
    }

    /// All entries, sorted by key.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &ModelPrice)> {
        self.prices.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.prices.len()
    }

    /// Whether the table has no entries.
    pub fn is_empty(&self) -> bool {
        self.prices.is_empty()
    }
}

fn parse_shipped(text: &str) -> Result<PriceTable, toml::de::Error> {
    let file: PriceFile = toml::from_str(text)?;
    Ok(PriceTable { version: file.version, prices: file.prices })
}

/// The price table shipped with rein (`crates/config/prices.toml`).
pub fn price_table() -> &'static PriceTable {
    static TABLE: OnceLock<PriceTable> = OnceLock::new();
    // The embedded text is checked by a unit test, so the empty fallback is
    // unreachable in a tested build; it exists only so this never panics.
    TABLE.get_or_init(|| parse_shipped(SHIPPED).unwrap_or_default())
}

/// The shipped price of a model, by the rules of [`PriceTable::get`].
/// Agents' own overrides are applied by the loader; use
/// [`rein_types::AgentSpec::price`] for a loaded agent.
pub fn lookup_price(model: &ModelRef) -> Option<ModelPrice> {
    price_table().get(model)
}

/// The price of `model` for an agent: its own `[prices]` entries
/// (`overrides`, e.g. [`crate::LoadedAgent::prices`]) first, then the shipped
/// table, each by the rules of [`PriceTable::get`].
pub fn price_for(model: &ModelRef, overrides: &PriceTable) -> Option<ModelPrice> {
    overrides.get(model).or_else(|| price_table().get(model))
}

/// `gpt-4o-2024-08-06` → `gpt-4o`; `claude-haiku-4-5-20251001` →
/// `claude-haiku-4-5`. `None` when the name ends in no date.
fn strip_snapshot_date(name: &str) -> Option<&str> {
    let is_digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    // -YYYYMMDD
    if let Some((base, date)) = name.rsplit_once('-')
        && is_digits(date, 8)
        && !base.is_empty()
    {
        return Some(base);
    }
    // -YYYY-MM-DD
    let mut parts = name.rsplitn(4, '-');
    let (day, month, year, base) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    (is_digits(year, 4) && is_digits(month, 2) && is_digits(day, 2) && !base.is_empty()).then_some(base)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_table_parses_and_covers_the_required_models() {
        let table = parse_shipped(SHIPPED).unwrap();
        assert_eq!(table.version(), "2026-11");
        for model in [
            "openai:gpt-4o",
            "openai:gpt-4o-mini",
            "openai:gpt-4.1",
            "openai:gpt-4.1-mini",
            "openai:gpt-4.1-nano",
            "openai:o4-mini",
            "anthropic:claude-sonnet-4-5",
            "anthropic:claude-haiku-4-5",
            "anthropic:claude-opus-4-1",
            "gemini:gemini-2.5-pro",
            "gemini:gemini-2.5-flash",
        ] {
            let price = table.get_str(model).unwrap_or_else(|| panic!("{model} has no price"));
            assert!(price.input_per_mtok > 0.0 && price.output_per_mtok >= price.input_per_mtok, "{model}");
        }
        for local in ["ollama:llama3.2:3b", "vllm:qwen", "llamacpp:smollm2", "local:anything"] {
            assert_eq!(table.get_str(local).map(|p| p.input_per_mtok), Some(0.0), "{local}");
        }
        assert_eq!(price_table(), &table);
    }

    #[test]
    fn lookups_fall_back_to_dated_snapshots_then_wildcards() {
        let table = price_table();
        assert_eq!(table.get_str("openai:gpt-4o-2024-08-06"), table.get_str("openai:gpt-4o"));
        assert_eq!(table.get_str("anthropic:claude-haiku-4-5-20251001"), table.get_str("anthropic:claude-haiku-4-5"));
        // gpt-4o-mini must not be priced as gpt-4o.
        assert_eq!(table.get_str("openai:gpt-4o-mini").map(|p| p.input_per_mtok), Some(0.15));
        assert_eq!(table.get_str("openai:unknown-model"), None);
        assert_eq!(table.get_str("nonsense"), None);
        assert_eq!(strip_snapshot_date("gpt-4o"), None);
        assert_eq!(strip_snapshot_date("2024-08-06"), None);
    }
}
