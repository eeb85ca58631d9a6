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

/// One cell: `-` for null, lists comma-separated, objects as JSON.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(cell).collect::<Vec<_>>().join(","),
        other => other.to_string(),
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
                t.add_row(cols.iter().map(|c| cell(&i[c])));
            }
            finish(t, &[])
        }
        Value::Object(o) if !o.is_empty() && o.values().all(Value::is_object) => {
            let cols = columns(o.values());
            let mut t = plain();
            t.set_header(std::iter::once("NAME".to_string()).chain(cols.iter().map(|c| c.to_uppercase())));
            for (k, i) in o {
                t.add_row(std::iter::once(k.clone()).chain(cols.iter().map(|c| cell(&i[c]))));
            }
            finish(t, &[])
        }
        Value::Object(o) => {
            let mut t = plain();
            for (k, v) in o {
                t.add_row([k.clone(), cell(v)]);
            }
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
    }

    #[test]
    fn objects_and_rows() {
        assert_eq!(render_table(&json!({"a": 1, "bb": [1, 2]})), "a   1\nbb  1,2\n");
        let t = render_table(&json!([{"id": 1, "user": "admin"}, {"id": 22, "extra": {"k": true}}]));
        assert_eq!(t, "ID  USER   EXTRA\n1   admin  -\n22  -      {\"k\":true}\n");
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
