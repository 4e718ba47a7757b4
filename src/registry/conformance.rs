//! The decoder against the official schema: random objects of every kind
//! of the main API groups, built from the vendored descriptors and stored
//! as kube-apiserver stores them, decode to the JSON computed for them
//! apart from the decoder (`tests/support/k8s_random.rs`), with no field by
//! number; their YAML reads back the same in a YAML 1.1 reader; a Secret's
//! values are masked.

#![allow(clippy::unwrap_used)]

#[path = "../../tests/support/k8s_random.rs"]
#[allow(dead_code)]
mod random;

use serde_json::{Map, Value};

use super::decode::{Stored, decode};
use super::schema;
use random::{GROUP_VERSIONS, Gen};

/// Random objects per kind.
const SAMPLES: i64 = 4;

/// Where `got` first differs from `want`, as a JSON path.
fn first_diff(got: &Value, want: &Value, path: &str) -> Option<String> {
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => {
            for (k, wv) in w {
                match g.get(k) {
                    None => return Some(format!("{path}.{k}: missing, want {wv}")),
                    Some(gv) => {
                        if let Some(d) = first_diff(gv, wv, &format!("{path}.{k}")) {
                            return Some(d);
                        }
                    }
                }
            }
            g.keys()
                .find(|k| !w.contains_key(*k))
                .map(|k| format!("{path}.{k}: not wanted, got {}", g[k]))
        }
        (Value::Array(g), Value::Array(w)) if g.len() == w.len() => g
            .iter()
            .zip(w)
            .enumerate()
            .find_map(|(i, (gv, wv))| first_diff(gv, wv, &format!("{path}[{i}]"))),
        _ => (got != want).then(|| format!("{path}: got {got}, want {want}")),
    }
}

/// Keys that name a field by number (`#3`), anywhere in `v`.
fn numbered(v: &Value, path: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                if k.len() > 1 && k.starts_with('#') && k[1..].bytes().all(|b| b.is_ascii_digit()) {
                    out.push(format!("{path}.{k}"));
                }
                numbered(v, &format!("{path}.{k}"), out);
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                numbered(v, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Every kind of core, apps, batch, rbac, networking, coordination, storage
/// and policy v1, several random objects each (every field of every message
/// they reach written at least once, down to 12 deep; zero values, unicode,
/// int extremes, times before 1970 and at the epoch): each decodes to the
/// JSON the API shows, names every field, and reads back the same from its
/// YAML; a Secret's values are masked unless asked for.
#[test]
fn every_kind_decodes_as_the_api_shows_it() {
    let set = schema::descriptor_set().unwrap();
    let s = schema::get();
    let mut generator = Gen::new(&set, 0x5eed_1363);
    let (mut docs, mut yaml) = (Vec::new(), String::new());
    let mut kinds = 0;
    for (group, version) in GROUP_VERSIONS {
        let package = s.package(group, version).unwrap();
        let api_version = if group.is_empty() {
            (*version).to_string()
        } else {
            format!("{group}/{version}")
        };
        let found = generator.kinds(package);
        assert!(!found.is_empty(), "{api_version}: no kinds");
        for kind in found {
            kinds += 1;
            for i in 0..SAMPLES {
                let (raw, mut want) = generator.object(&format!("{package}.{kind}"));
                let value = Gen::envelope(&api_version, &kind, &raw);
                let rev = 1000 + i;
                want.insert("apiVersion".into(), Value::String(api_version.clone()));
                want.insert("kind".into(), Value::String(kind.clone()));
                if let Some(Value::Object(m)) = want.get_mut("metadata") {
                    m.insert("resourceVersion".into(), Value::String(rev.to_string()));
                }
                let key = format!("/registry/{}/prod/x{i}", kind.to_lowercase());
                let d = decode(key.as_bytes(), &value, rev, true);
                assert_eq!(
                    d.stored,
                    Stored::Protobuf,
                    "{api_version} {kind} #{i}: {:?}",
                    d.note
                );
                let got = d.object.unwrap();
                if let Some(diff) = first_diff(&got, &Value::Object(want), "") {
                    panic!("{api_version} {kind} #{i}: {diff}");
                }
                let mut by_number = Vec::new();
                numbered(&got, "", &mut by_number);
                assert!(
                    by_number.is_empty(),
                    "{api_version} {kind} #{i}: by number: {by_number:?}"
                );
                if kind == "Secret" {
                    assert_secret_masked(&key, &value, &got);
                }
                yaml.push_str("---\n");
                yaml.push_str(&crate::yaml::to_string(&got));
                docs.push(got);
            }
        }
    }
    assert!(kinds > 40, "{kinds} kinds");
    let missed: Vec<_> = generator.reached.difference(&generator.covered).collect();
    assert!(missed.is_empty(), "fields never written: {missed:?}");
    let back = random::pyyaml(&yaml);
    assert_eq!(back.len(), docs.len());
    for (b, d) in back.iter().zip(&docs) {
        if let Some(diff) = first_diff(b, d, "") {
            panic!(
                "{} {}: YAML read back differently: {diff}",
                d["apiVersion"], d["kind"]
            );
        }
    }
}

/// A random Secret decoded without `--show-secrets`: every `data` and
/// `stringData` value and annotation masked, nothing else besides.
fn assert_secret_masked(key: &str, value: &[u8], shown: &Value) {
    let d = decode(key.as_bytes(), value, 1, false);
    let o = d.object.unwrap();
    let masked = |v: &Value| v.as_str().is_some_and(|s| s.starts_with("(masked: "));
    let values = |v: &Value| v.as_object().cloned().unwrap_or_else(Map::new);
    for field in ["data", "stringData"] {
        for (k, v) in values(&o[field]) {
            assert!(masked(&v), "{field}.{k}: {v}");
        }
    }
    for (k, v) in values(&o["metadata"]["annotations"]) {
        assert!(masked(&v), "annotation {k}: {v}");
    }
    let any = ["data", "stringData"]
        .iter()
        .any(|f| !values(&shown[*f]).is_empty())
        || !values(&shown["metadata"]["annotations"]).is_empty();
    assert_eq!(d.masked, any, "{o}");
    assert_eq!(o["type"], shown["type"]);
    assert_eq!(o["metadata"]["name"], shown["metadata"]["name"]);
}
