//! Tables for humans (`-o table`, the default): plain text columns, two
//! spaces apart, no borders, no trailing blanks.

use comfy_table::{CellAlignment, Table};
use serde_json::Value;

/// An empty borderless table whose columns are separated by two spaces.
pub fn plain() -> Table {
    let mut t = Table::new();
    t.load_style(comfy_table::presets::NOTHING);
    t
}

/// `t` as text, one line per row, each ending in a newline.
pub fn finish(mut t: Table, right_aligned: &[usize]) -> String {
    let n = t.column_count();
    for (i, col) in t.column_iter_mut().enumerate() {
        col.set_padding((0, if i + 1 == n { 0 } else { 2 }));
        if right_aligned.contains(&i) {
            col.set_cell_alignment(CellAlignment::Right);
        }
    }
    t.lines().map(|l| l.trim_end().to_string() + "\n").collect()
}

/// One cell: `-` for null and for an empty list or object, lists
/// comma-separated, objects as `k=v` pairs.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::Array(a) if a.is_empty() => "-".into(),
        Value::Object(o) if o.is_empty() => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(cell).collect::<Vec<_>>().join(","),
        Value::Object(o) => o.iter().map(|(k, v)| format!("{k}={}", field(k, v))).collect::<Vec<_>>().join(" "),
        other => other.to_string(),
    }
}

/// A cell of field `key`: sizes (`*_bytes`) in binary units, Unix times
/// (`*_at`, `*_seen`; seconds) as UTC RFC 3339; everything else as [`cell`].
fn field(key: &str, v: &Value) -> String {
    let time = key.ends_with("_at") || key.ends_with("_seen");
    match v.as_i64() {
        Some(n) if key.ends_with("_bytes") && n >= 1024 => format!("{} ({n})", size(n.unsigned_abs())),
        Some(n) if time && n > 1_000_000_000 && n < 100_000_000_000 => rfc3339(n),
        _ => cell(v),
    }
}

pub use metalcast_operator_api::display::{rfc3339, size};

/// Key/value rows of `o`, nested objects flattened (`quota.max_nodes`).
fn object_rows(t: &mut Table, prefix: &str, o: &serde_json::Map<String, Value>) {
    for (k, v) in o {
        let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        match v {
            Value::Object(inner) if !inner.is_empty() => object_rows(t, &key, inner),
            // A list of objects (a node's NICs): one row each.
            Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_object) => {
                for i in items {
                    t.add_row([key.clone(), cell(i)]);
                }
            }
            _ => {
                t.add_row([key.clone(), field(k, v)]);
            }
        }
    }
}

/// The union of the objects' keys, in first-seen order.
fn columns<'a>(objects: impl Iterator<Item = &'a Value>) -> Vec<String> {
    let mut cols: Vec<String> = Vec::new();
    for k in objects.filter_map(Value::as_object).flat_map(|o| o.keys()) {
        if !cols.contains(k) {
            cols.push(k.clone());
        }
    }
    cols
}

/// Render a JSON answer for humans: a list of names one per line, a list
/// of objects as a table with a header, a map of name -> object as a table
/// with a NAME column (e.g. `network list`), any other object as key/value
/// rows.
pub fn render_table(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::Array(items) if items.iter().all(|i| !i.is_object()) => items.iter().map(|i| cell(i) + "\n").collect(),
        Value::Array(items) => {
            let cols = columns(items.iter());
            let mut t = plain();
            t.set_header(cols.iter().map(|c| c.to_uppercase()));
            for i in items {
                t.add_row(cols.iter().map(|c| field(c, &i[c])));
            }
            finish(t, &[])
        }
        Value::Object(o) if !o.is_empty() && o.values().all(Value::is_object) => {
            let cols = columns(o.values());
            let mut t = plain();
            t.set_header(std::iter::once("NAME".to_string()).chain(cols.iter().map(|c| c.to_uppercase())));
            for (k, i) in o {
                t.add_row(std::iter::once(k.clone()).chain(cols.iter().map(|c| field(c, &i[c]))));
            }
            finish(t, &[])
        }
        Value::Object(o) => {
            let mut t = plain();
            object_rows(&mut t, "", o);
            finish(t, &[])
        }
        other => cell(other) + "\n",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lists_and_maps() {
        assert_eq!(render_table(&json!(["a", "b"])), "a\nb\n");
        let t = render_table(&json!({"net1": {"network_id": "100", "projects": null}}));
        assert_eq!(t, "NAME  NETWORK_ID  PROJECTS\nnet1  100         -\n");
        assert_eq!(render_table(&json!(null)), "");
        // Nothing in a list or an object is `-`, as null is (an image without members).
        let t = render_table(&json!({"members": [], "networks": {}, "name": "debian"}));
        assert_eq!(t, "members   -\nname      debian\nnetworks  -\n");
    }

    #[test]
    fn objects_and_rows() {
        assert_eq!(render_table(&json!({"a": 1, "bb": [1, 2]})), "a   1\nbb  1,2\n");
        let t = render_table(&json!([{"id": 1, "user": "admin"}, {"id": 22, "extra": {"k": true}}]));
        assert_eq!(t, "ID  USER   EXTRA\n1   admin  -\n22  -      k=true\n");
    }

    #[test]
    fn nested_objects_sizes_and_times_for_humans() {
        // `quota show`: the limits flattened, bytes in binary units (the exact number kept).
        let t = render_table(&json!({"project": "p1", "quota": {"max_nodes": 3, "max_image_bytes": 10_485_760},
            "image_bytes": 1_610_612_736_u64, "images": 1}));
        assert_eq!(
            t,
            "image_bytes            1.5 GiB (1610612736)\nimages                 1\nproject                p1\n\
             quota.max_image_bytes  10.0 MiB (10485760)\nquota.max_nodes        3\n"
        );
        // `node show`: NICs one row each, `k=v` pairs.
        let t = render_table(&json!({"nics": [{"label": "eth0", "macaddr": "52:54:00:00:00:01"}, {"label": "eth1"}]}));
        assert_eq!(t, "nics  label=eth0 macaddr=52:54:00:00:00:01\nnics  label=eth1\n");
        // Times: Unix seconds in `*_at` fields as RFC 3339, in tables too.
        let t = render_table(&json!([{"id": 1, "created_at": 1_796_660_721}]));
        assert_eq!(t, "CREATED_AT            ID\n2026-12-07T16:25:21Z  1\n");
        // An enrollment's `first_seen` and `last_seen` too.
        let t = render_table(&json!({"first_seen": 1_796_660_721, "last_seen": 1_796_660_722}));
        assert_eq!(t, "first_seen  2026-12-07T16:25:21Z\nlast_seen   2026-12-07T16:25:22Z\n");
        assert_eq!(size(512), "512 B");
        assert_eq!(size(1 << 40), "1.0 TiB");
    }

    #[test]
    fn right_alignment() {
        let mut t = plain();
        t.set_header(["NODE", "N"]);
        t.add_row(["a", "5"]);
        t.add_row(["b", "100"]);
        assert_eq!(finish(t, &[1]), "NODE    N\na       5\nb     100\n");
    }
}
