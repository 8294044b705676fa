//! Cutting results down to a tool's `max_result_bytes`. A result that does not
//! fit would crowd the model's context (and cost money on every later turn),
//! so it is shrunk in ways that keep it useful: long strings are cut with a
//! marker, arrays keep their first elements, objects shrink their largest
//! fields first. Only when that fails is the whole value replaced by a
//! truncated string preview of its JSON text.

use serde_json::{Map, Value};
use std::io::Write;

/// Appended to a string that was cut, so the model knows text is missing.
pub(crate) const CUT_MARK: &str = "…[truncated]";

/// Below this many bytes a piece is not worth shrinking further; it is dropped
/// instead.
const MIN_PIECE: usize = 24;

/// Fits `value` into `max_bytes` of JSON text. Returns the (possibly) smaller
/// value and whether anything was cut.
pub(crate) fn fit(value: Value, max_bytes: usize) -> (Value, bool) {
    if json_len(&value) <= max_bytes {
        return (value, false);
    }
    let shrunk = shrink(&value, max_bytes);
    if json_len(&shrunk) <= max_bytes {
        return (shrunk, true);
    }
    // Structure could not be kept (many small fields, a tiny limit): fall back
    // to a preview of the JSON text.
    let text = serde_json::to_string(&value).unwrap_or_default();
    (Value::String(cut_string(&text, max_bytes)), true)
}

/// The length of `value` as compact JSON text, without building the text.
pub(crate) fn json_len(value: &Value) -> usize {
    struct Counter(usize);
    impl Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    // Writing to a counter cannot fail; a `Value` always serialises.
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}

/// Best effort: a value whose JSON text is at most `budget` bytes.
fn shrink(value: &Value, budget: usize) -> Value {
    if json_len(value) <= budget {
        return value.clone();
    }
    match value {
        Value::String(s) => Value::String(cut_string(s, budget)),
        Value::Array(items) => shrink_array(items, budget),
        Value::Object(map) => shrink_object(map, budget),
        // A number or bool over budget: nothing sensible to cut.
        other => other.clone(),
    }
}

/// Keeps the longest prefix of whole elements that fits. Only when not even
/// the first element fits is it shrunk itself: half a record next to whole
/// ones would read as a real record.
fn shrink_array(items: &[Value], budget: usize) -> Value {
    let mut out = Vec::new();
    let mut used = 2; // `[]`
    for item in items {
        let separator = usize::from(!out.is_empty());
        let size = json_len(item);
        if used + separator + size <= budget {
            out.push(item.clone());
            used += separator + size;
            continue;
        }
        let room = budget.saturating_sub(used + separator);
        if out.is_empty() && room >= MIN_PIECE {
            out.push(shrink(item, room));
        }
        break;
    }
    Value::Array(out)
}

/// Shrinks the largest fields first; if that is not enough, drops fields from
/// the end. Each field's size is measured once and the object's total kept as
/// a running sum, so the cost stays linear in the object's size however many
/// fields it has.
fn shrink_object(map: &Map<String, Value>, budget: usize) -> Value {
    let mut entries: Vec<(String, Value)> = map.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    // Per entry: the length of its key with the colon, and of its value.
    let mut sizes: Vec<(usize, usize)> = entries.iter().map(|(k, v)| (json_str_len(k) + 1, json_len(v))).collect();
    let mut fields: usize = sizes.iter().map(|(key, value)| key + value).sum();
    let total = |fields: usize, count: usize| 2 + fields + count.saturating_sub(1);
    let mut by_size: Vec<usize> = (0..entries.len()).collect();
    by_size.sort_by_key(|&i| std::cmp::Reverse(sizes[i].1));
    for i in by_size {
        let now = total(fields, entries.len());
        if now <= budget {
            break;
        }
        let excess = now - budget;
        let current = sizes[i].1;
        if current <= MIN_PIECE {
            continue;
        }
        let target = current.saturating_sub(excess).max(MIN_PIECE);
        let smaller = shrink(&entries[i].1, target);
        let size = json_len(&smaller);
        if size < current {
            entries[i].1 = smaller;
            sizes[i].1 = size;
            fields -= current - size;
        }
    }
    while total(fields, entries.len()) > budget
        && let Some((key, value)) = sizes.pop()
    {
        entries.pop();
        fields -= key + value;
    }
    Value::Object(entries.into_iter().collect())
}

/// Cuts `s` so that, with [`CUT_MARK`] appended, its JSON text fits `budget`.
pub(crate) fn cut_string(s: &str, budget: usize) -> String {
    let mark = json_str_len(CUT_MARK) - 2;
    let Some(room) = budget.checked_sub(2 + mark) else {
        return String::new();
    };
    let mut used = 0;
    let mut end = 0;
    for (index, ch) in s.char_indices() {
        let size = escaped_len(ch);
        if used + size > room {
            break;
        }
        used += size;
        end = index + ch.len_utf8();
    }
    format!("{}{CUT_MARK}", &s[..end])
}

/// Length of `s` as a JSON string literal, quotes included.
fn json_str_len(s: &str) -> usize {
    2 + s.chars().map(escaped_len).sum::<usize>()
}

/// Bytes one character takes inside a JSON string, as serde_json escapes it.
fn escaped_len(ch: char) -> usize {
    match ch {
        '"' | '\\' | '\n' | '\r' | '\t' | '\u{08}' | '\u{0c}' => 2,
        c if (c as u32) < 0x20 => 6,
        c => c.len_utf8(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn small_values_are_untouched() {
        let v = json!({"a": 1});
        assert_eq!(fit(v.clone(), 100), (v, false));
    }

    #[test]
    fn strings_are_cut_with_a_mark() {
        let (v, cut) = fit(json!("x".repeat(1000)), 100);
        assert!(cut);
        assert!(json_len(&v) <= 100);
        assert!(v.as_str().is_some_and(|s| s.ends_with(CUT_MARK) && s.starts_with("xxxx")));
    }

    #[test]
    fn escaped_strings_respect_the_budget() {
        let (v, _) = fit(json!("\"\n\u{01}é".repeat(200)), 77);
        assert!(json_len(&v) <= 77, "{}", json_len(&v));
    }

    #[test]
    fn arrays_keep_a_prefix_of_whole_elements() {
        let items: Vec<Value> = (0..100).map(|i| json!({"id": i, "name": format!("item {i}")})).collect();
        let (v, cut) = fit(Value::Array(items.clone()), 200);
        assert!(cut);
        let kept = v.as_array().map(Vec::len).unwrap_or(0);
        assert!(kept > 3 && kept < 100);
        assert_eq!(v.as_array().map(|a| a[0].clone()), Some(items[0].clone()));
        assert!(json_len(&v) <= 200);
    }

    #[test]
    fn objects_shrink_their_largest_field() {
        let v = json!({"id": 7, "status": "open", "notes": "n".repeat(5000)});
        let (out, cut) = fit(v, 300);
        assert!(cut);
        assert_eq!(out["id"], 7);
        assert_eq!(out["status"], "open");
        assert!(out["notes"].as_str().is_some_and(|s| s.ends_with(CUT_MARK)));
        assert!(json_len(&out) <= 300);
    }

    #[test]
    fn objects_with_many_fields_are_cut_in_linear_time() {
        // Quadratic work on 50 000 fields would take minutes; the result is
        // what is checked here, the test's speed is what would show a
        // regression.
        let map: Map<String, Value> = (0..50_000).map(|i| (format!("key{i:05}"), json!(i))).collect();
        let original = Value::Object(map.clone());
        let (out, cut) = fit(original.clone(), 1_000);
        assert!(cut);
        assert!(json_len(&out) <= 1_000, "{}", json_len(&out));
        let kept = out.as_object().cloned().unwrap_or_default();
        assert!(kept.len() > 50, "structure is kept: {} fields", kept.len());
        // A prefix of the fields, values untouched.
        let expected: Map<String, Value> = map.into_iter().take(kept.len()).collect();
        assert_eq!(kept, expected);

        // Large fields among many small ones are still shrunk first.
        let mut map: Map<String, Value> = (0..50_000).map(|i| (format!("k{i:05}"), json!("v"))).collect();
        map.insert("a_notes".into(), json!("n".repeat(100_000)));
        let (out, cut) = fit(Value::Object(map), 700_000);
        assert!(cut);
        assert!(json_len(&out) <= 700_000);
        assert_eq!(out.as_object().map(Map::len), Some(50_001), "no field needed dropping");
        assert!(out["a_notes"].as_str().is_some_and(|s| s.ends_with(CUT_MARK)));
    }

    #[test]
    fn tiny_budgets_fall_back_to_a_preview() {
        let v = json!({"a": 1, "b": 2, "c": 3, "d": 4, "e": 5, "f": 6});
        let (out, cut) = fit(v, 20);
        assert!(cut);
        assert!(json_len(&out) <= 20);
    }
}
