//! The JSON contract: docs/json/*.schema.json are the schemas generated
//! from the types (`status --json-schema` prints status's), and what every
//! verb prints with `--json` follows its schema: every required key
//! present with the documented type, no undocumented key, format_version 1.
//! `TREEBOOT_BLESS_SCHEMAS=1 cargo test --test schema` rewrites the files
//! after a deliberate change.

mod common;
use common::*;
use serde_json::Value;

fn docs_json() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/json")
}

#[test]
fn published_schemas_are_current() {
    let bless = std::env::var_os("TREEBOOT_BLESS_SCHEMAS").is_some();
    let mut stale = Vec::new();
    for (name, schema) in treeboot::cli::report::schemas() {
        let path = docs_json().join(format!("{name}.schema.json"));
        let text = serde_json::to_string_pretty(&schema).unwrap() + "\n";
        if bless {
            std::fs::create_dir_all(docs_json()).unwrap();
            std::fs::write(&path, &text).unwrap();
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            stale.push(path.display().to_string());
        }
    }
    assert!(stale.is_empty(), "out of date (TREEBOOT_BLESS_SCHEMAS=1 cargo test --test schema rewrites them): {stale:?}");
    let printed = run(std::process::Command::new(treeboot_bin()).args(["status", "--json-schema"]));
    assert_eq!(printed, std::fs::read_to_string(docs_json().join("status.schema.json")).unwrap(), "status --json-schema");
}

fn resolve<'a>(p: &'a Value, root: &'a Value) -> &'a Value {
    match p.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let name = r.strip_prefix("#/$defs/").unwrap_or_else(|| panic!("unexpected $ref {r}"));
            &root["$defs"][name]
        }
        None => p,
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_u64() || n.is_i64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Whether `v` follows `schema` (the subset schemars writes: type, enum,
/// const, oneOf/anyOf, $ref, properties/required, items); the reason if not.
fn check(v: &Value, schema: &Value, root: &Value, at: &str) -> Result<(), String> {
    let schema = resolve(schema, root);
    for key in ["anyOf", "oneOf"] {
        if let Some(alts) = schema.get(key).and_then(Value::as_array) {
            let errs: Vec<String> = alts.iter().filter_map(|a| check(v, a, root, at).err()).collect();
            return if errs.len() < alts.len() { Ok(()) } else { Err(format!("{at}: no alternative fits: {errs:?}")) };
        }
    }
    if let Some(c) = schema.get("const") {
        return if c == v { Ok(()) } else { Err(format!("{at}: {v} is not {c}")) };
    }
    if let Some(e) = schema.get("enum").and_then(Value::as_array) {
        return if e.contains(v) { Ok(()) } else { Err(format!("{at}: {v} not in {e:?}")) };
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(s) => vec![s.as_str()],
        Value::Array(a) => a.iter().map(|t| t.as_str().unwrap()).collect(),
        _ => vec![],
    };
    let actual = json_type(v);
    let fits = types.is_empty() || types.contains(&actual) || (actual == "integer" && types.contains(&"number"));
    if !fits {
        return Err(format!("{at}: {actual} is not {types:?}"));
    }
    if let Value::Object(o) = v {
        let props = schema["properties"].as_object().ok_or_else(|| format!("{at}: an object where the schema has no properties"))?;
        for r in schema["required"].as_array().into_iter().flatten() {
            if !o.contains_key(r.as_str().unwrap()) {
                return Err(format!("{at}: missing {r}"));
            }
        }
        for (k, val) in o {
            let p = props.get(k).ok_or_else(|| format!("{at}: {k} is not in the schema"))?;
            check(val, p, root, &format!("{at}.{k}"))?;
        }
    }
    if let Value::Array(items) = v {
        for (i, item) in items.iter().enumerate() {
            check(item, &schema["items"], root, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

fn follows(name: &str, out: &str) -> Value {
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(docs_json().join(format!("{name}.schema.json"))).unwrap()).unwrap();
    let doc: Value = serde_json::from_str(out).unwrap_or_else(|e| panic!("{name}: not one JSON document ({e}): {out}"));
    assert_eq!(doc["format_version"], 1, "{name}: {doc}");
    check(&doc, &schema, &schema, name).unwrap_or_else(|e| panic!("{name}: {e}\n{doc:#}"));
    doc
}

/// A lifecycle with `--json` on every verb, each document checked against
/// its published schema.
#[test]
fn every_verb_prints_a_document_that_follows_its_schema() {
    let s = Scratch::new("schema");
    let root = sysroot_with_commits(&s);
    let json = |args: &[&str]| run(tb(&root).arg("--json").args(args));
    follows("deploy", &json(&["deploy", "--karg", "root=LABEL=root", "testos/v1"]));
    follows("deploy", &json(&["deploy", "testos/v2"]));
    let st = follows("status", &json(&["status"]));
    assert_eq!(st["deployments"][0]["version"], "2.0");
    let p = follows("pin", &json(&["pin", "1"]));
    assert_eq!((p["pinned"].as_bool(), p["changed"].as_bool()), (Some(true), Some(true)));
    let k = follows("kargs", &json(&["kargs", "--append", "quiet"]));
    assert!(k["kargs"].as_str().unwrap().ends_with("quiet"), "{k}");
    follows("kargs", &json(&["kargs"]));
    follows("verify", &json(&["verify"]));
    follows("etc-diff", &json(&["etc", "diff"]));
    let d = follows("diff", &json(&["diff", "1", "0"]));
    assert_eq!((d["from_index"].as_u64(), d["to_index"].as_u64()), (Some(1), Some(0)));
    let r = follows("rollback", &json(&["rollback"]));
    assert_eq!(r["changed"], true);
    follows("set-default", &json(&["set-default", "1"]));
    follows("pin", &json(&["pin", "--unpin", "1"]));
    follows("undeploy", &json(&["undeploy", "1"]));
    follows("cleanup", &json(&["cleanup"]));
    let st = follows("status", &json(&["status"]));
    assert_eq!(st["deployments"].as_array().unwrap().len(), 1);
    follows("os-init", &json(&["os-init", "second"]));
    let fresh = s.join("fresh");
    follows("init-fs", &run(tb(&root).args(["--json", "init-fs"]).arg(&fresh)));
}

/// With --json, stderr carries JSON lines only (messages, progress, the
/// error), each with format_version and type; a failure's line has the exit
/// code the process exits with.
#[test]
fn json_events_on_stderr() {
    let s = Scratch::new("schema-events");
    let root = sysroot_with_commits(&s);
    let o = tb(&root).args(["--json", "deploy", "testos/v1"]).output().unwrap();
    assert!(o.status.success());
    let events: Vec<Value> = String::from_utf8_lossy(&o.stderr)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    assert!(events.iter().all(|e| e["format_version"] == 1 && e["type"].is_string()), "{events:?}");
    let phases: Vec<&str> = events.iter().filter(|e| e["type"] == "progress" && e["finished"] == true).map(|e| e["phase"].as_str().unwrap()).collect();
    assert!(phases.contains(&"checkout") && phases.contains(&"kernel"), "finished phases: {phases:?}");
    let o = tb(&root).args(["--json", "undeploy", "7"]).output().unwrap();
    let code = o.status.code().unwrap();
    assert_ne!(code, 0);
    let last: Value = serde_json::from_str(String::from_utf8_lossy(&o.stderr).lines().last().unwrap()).unwrap();
    assert_eq!(last["type"], "error");
    assert_eq!(last["exit_code"], code);
    assert!(last["message"].as_str().unwrap().contains("no deployment with index 7"), "{last}");
    assert!(o.stdout.is_empty(), "no document after a failure");
}
