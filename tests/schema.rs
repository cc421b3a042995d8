//! `status --json` matches docs/status.schema.json: every required key is
//! present with the documented type, and no undocumented key appears.

mod common;
use common::*;

fn check(v: &serde_json::Value, schema: &serde_json::Value, at: &str) {
    let props = schema["properties"].as_object().unwrap();
    for r in schema["required"].as_array().unwrap() {
        assert!(v.get(r.as_str().unwrap()).is_some(), "{at}: missing {r}");
    }
    for (k, val) in v.as_object().unwrap() {
        let p = props.get(k).unwrap_or_else(|| panic!("{at}: {k} is not in the schema"));
        let types: Vec<&str> = match &p["type"] {
            serde_json::Value::String(s) => vec![s.as_str()],
            serde_json::Value::Array(a) => a.iter().map(|t| t.as_str().unwrap()).collect(),
            _ => vec![],
        };
        let actual = match val {
            serde_json::Value::Null => "null",
            serde_json::Value::Bool(_) => "boolean",
            serde_json::Value::Number(n) if n.is_u64() || n.is_i64() => "integer",
            serde_json::Value::Number(_) => "number",
            serde_json::Value::String(_) => "string",
            serde_json::Value::Array(_) => "array",
            serde_json::Value::Object(_) => "object",
        };
        if let Some(e) = p.get("enum") {
            assert!(e.as_array().unwrap().contains(val), "{at}.{k}: {val} not in {e}");
        } else {
            assert!(types.contains(&actual), "{at}.{k}: {actual} is not {types:?}");
        }
        if actual == "array" {
            for (i, item) in val.as_array().unwrap().iter().enumerate() {
                check(item, &p["items"], &format!("{at}.{k}[{i}]"));
            }
        }
    }
}

#[test]
fn status_json_follows_the_published_schema() {
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/status.schema.json")).unwrap()).unwrap();
    let s = Scratch::new("schema");
    let root = sysroot_with_commits(&s);
    run(tb(&root).args(["deploy", "testos/v1"]));
    run(tb(&root).args(["deploy", "testos/v2"]));
    run(tb(&root).args(["pin", "1"]));
    check(&status_json(&root), &schema, "status");
}
