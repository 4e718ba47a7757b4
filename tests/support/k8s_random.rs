//! Random Kubernetes objects built from the official schema (the vendored
//! descriptors of `vendor/k8s-proto`), each with the JSON the API shows for
//! it, computed here from the descriptors and Kubernetes' JSON rules, apart
//! from the decoder: JSON names (renamed and inlined fields from the Go
//! types, `json.tsv`), int64 as numbers, bytes as base64, `Time` and
//! `MicroTime` as RFC 3339 (before 1970 and at the epoch too), `Quantity`
//! as its string, `IntOrString` as a number or a string, `FieldsV1` and
//! `RawExtension` as the JSON they hold, the string lists of `lists.tsv` as
//! lists, maps as objects, repeated fields as lists. Empty strings and lists
//! are left out, numbers and booleans kept at zero, a nested object on the
//! wire kept even when empty.
//!
//! Every field of every message reached is written at least once (the
//! first time its message is built, down to [`FORCED_DEPTH`]); after that
//! a field is written at random, less often the deeper it is.

use std::collections::{HashMap, HashSet};

use base64::Engine as _;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FieldDescriptorProto, FileDescriptorSet};
use serde_json::{Map, Value};

/// The groups and versions checked kind by kind (the main API groups).
pub const GROUP_VERSIONS: &[(&str, &str)] = &[
    ("", "v1"),
    ("apps", "v1"),
    ("batch", "v1"),
    ("rbac.authorization.k8s.io", "v1"),
    ("networking.k8s.io", "v1"),
    ("coordination.k8s.io", "v1"),
    ("storage.k8s.io", "v1"),
    ("policy", "v1"),
];

/// Fields never written yet are written down to this depth.
pub const FORCED_DEPTH: usize = 12;
/// Fields already written are written at random down to this depth.
pub const RANDOM_DEPTH: usize = 7;

const JSON_NAMES: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/vendor/k8s-proto/json.tsv"));
const LISTS: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/vendor/k8s-proto/lists.tsv"));
const TIME: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.Time";
const MICRO_TIME: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime";
const QUANTITY: &str = "k8s.io.apimachinery.pkg.api.resource.Quantity";
const INT_OR_STRING: &str = "k8s.io.apimachinery.pkg.util.intstr.IntOrString";
const FIELDS_V1: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1";
const RAW_EXTENSION: &str = "k8s.io.apimachinery.pkg.runtime.RawExtension";
/// `meta.v1.ObjectMeta`.
pub const OBJECT_META: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta";

/// Strings a YAML 1.1 reader or a careless printer gets wrong, unicode, and the empty string.
const STRINGS: &[&str] = &[
    "",
    "web",
    "y",
    "yes",
    "No",
    "on",
    "OFF",
    "null",
    "~",
    "true",
    "0x1F",
    "0o17",
    "012",
    "1e3",
    "1_000",
    "12:30:45",
    "2026-01-01",
    ".inf",
    "-.NaN",
    "- item",
    "key: value",
    "# not a comment",
    "'single'",
    "\"double\"",
    "multi\nline\n",
    "  leading and trailing  ",
    "tab\there",
    "日本語のラベル",
    "ünïcödé ✓",
    "emoji 🚀",
    "back\\slash",
    "@at",
    "`tick`",
    "%percent",
    "&anchor",
    "*alias",
    "!tag",
    "{flow: map}",
    "[flow, list]",
    "|",
    ">",
    "?",
    ",",
];
const INT32: &[i64] = &[0, 1, -1, 80, 65_535, i32::MAX as i64, i32::MIN as i64];
const INT64: &[i64] = &[0, 1, -1, 1_767_225_600, i64::MAX, i64::MIN, 9_007_199_254_740_993];
/// Seconds of times: long before 1970, just before, the epoch, now, the last second of 9999.
const SECONDS: &[i64] = &[-2_208_988_800, -86_401, -1, 0, 1, 1_767_225_600, 253_402_300_799];
const QUANTITIES: &[&str] = &[
    "0",
    "100m",
    "1.5",
    "2Gi",
    "500M",
    "1e3",
    "-1",
    "12345678901234567890",
];

/// A seeded random source (splitmix64).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// A number below `n`.
    pub fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).unwrap_or(0)
    }
    /// True with probability `p` percent.
    pub fn percent(&mut self, p: u64) -> bool {
        self.next() % 100 < p
    }
    pub fn pick<'a, T>(&mut self, from: &'a [T]) -> &'a T {
        &from[self.below(from.len())]
    }
}

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push(u8::try_from(v & 0x7f).unwrap_or(0) | 0x80);
        v >>= 7;
    }
    out.push(u8::try_from(v).unwrap_or(0));
}

fn tag(num: i32, wire: u64, out: &mut Vec<u8>) {
    varint(u64::from(num.unsigned_abs()) << 3 | wire, out);
}

fn len_field(num: i32, b: &[u8], out: &mut Vec<u8>) {
    tag(num, 2, out);
    varint(b.len() as u64, out);
    out.extend_from_slice(b);
}

/// RFC 3339 in UTC, from the `time` crate.
fn rfc3339(secs: i64, micros: Option<i64>) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(secs).expect("a time in range");
    let whole = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    match micros {
        Some(u) => format!("{whole}.{u:06}Z"),
        None => format!("{whole}Z"),
    }
}

/// Every document of a YAML stream as PyYAML (YAML 1.1, as kubectl's reader) reads it.
pub fn pyyaml(stream: &str) -> Vec<Value> {
    let script = "import sys, json, yaml\n\
                  print(json.dumps(list(yaml.load_all(sys.stdin.read(), Loader=yaml.SafeLoader))))";
    let mut child = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 is needed for this test");
    let mut stdin = child.stdin.take().unwrap();
    let input = stream.to_string();
    let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, input.as_bytes()));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("No module named 'yaml'"),
        "PyYAML is needed for this test: apt-get install python3-yaml (make setup does)"
    );
    assert!(out.status.success(), "PyYAML could not read the YAML: {err}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `d` and the messages nested in it (map entries), by full name.
fn walk(prefix: &str, d: &DescriptorProto, out: &mut HashMap<String, DescriptorProto>) {
    let name = format!("{prefix}.{}", d.name());
    for n in &d.nested_type {
        walk(&name, n, out);
    }
    out.insert(name, d.clone());
}

/// Builds random objects from the descriptors and says what the API shows for them.
pub struct Gen {
    messages: HashMap<String, DescriptorProto>,
    json_names: HashMap<(String, i32), String>,
    lists: HashSet<String>,
    /// Every (message, field number) written so far.
    pub covered: HashSet<(String, i32)>,
    /// Every (message, field number) reached within [`FORCED_DEPTH`].
    pub reached: HashSet<(String, i32)>,
    rng: Rng,
}

impl Gen {
    pub fn new(set: &FileDescriptorSet, seed: u64) -> Gen {
        let mut messages = HashMap::new();
        for f in &set.file {
            for d in &f.message_type {
                walk(f.package(), d, &mut messages);
            }
        }
        let rows = |t: &'static str| {
            t.lines()
                .filter(|l| !l.starts_with('#') && !l.is_empty())
                .map(|l| l.split('\t').collect::<Vec<_>>())
        };
        let json_names = rows(JSON_NAMES)
            .filter(|r| r.len() == 3 && r[2] != "-")
            .map(|r| {
                (
                    (r[0].to_string(), r[1].parse().expect("a field number")),
                    r[2].to_string(),
                )
            })
            .collect();
        let lists = rows(LISTS).map(|r| r[0].to_string()).collect();
        Gen {
            messages,
            json_names,
            lists,
            covered: HashSet::new(),
            reached: HashSet::new(),
            rng: Rng::new(seed),
        }
    }

    /// The kinds of a proto package: messages whose field 1 is `metadata`, an `ObjectMeta`.
    pub fn kinds(&self, package: &str) -> Vec<String> {
        let mut out: Vec<String> = self
            .messages
            .iter()
            .filter(|(n, d)| {
                n.strip_prefix(package)
                    .and_then(|r| r.strip_prefix('.'))
                    .is_some_and(|r| !r.contains('.'))
                    && d.field.iter().any(|f| {
                        f.number() == 1
                            && f.name() == "metadata"
                            && f.type_name() == format!(".{OBJECT_META}")
                    })
            })
            .map(|(n, _)| n.rsplit('.').next().unwrap_or_default().to_string())
            .collect();
        out.sort();
        out
    }

    /// A random `message` with its metadata: its bytes and the JSON the API shows for it.
    pub fn object(&mut self, message: &str) -> (Vec<u8>, Map<String, Value>) {
        self.build(message, 0, true)
    }

    /// The stored form of `raw`: `k8s\0` + `runtime.Unknown{typeMeta, raw, contentEncoding, contentType}`.
    pub fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
        let mut tm = Vec::new();
        len_field(1, api_version.as_bytes(), &mut tm);
        len_field(2, kind.as_bytes(), &mut tm);
        let mut u = Vec::new();
        len_field(1, &tm, &mut u);
        len_field(2, raw, &mut u);
        len_field(3, b"", &mut u);
        len_field(4, b"", &mut u);
        let mut out = b"k8s\x00".to_vec();
        out.extend(u);
        out
    }

    fn build(&mut self, name: &str, depth: usize, top: bool) -> (Vec<u8>, Map<String, Value>) {
        let d = self.messages.get(name).cloned().expect("a message of the schema");
        let mut bytes = Vec::new();
        let mut json = Map::new();
        for f in &d.field {
            let key = (name.to_string(), f.number());
            let fresh = !self.covered.contains(&key);
            if depth <= FORCED_DEPTH {
                self.reached.insert(key.clone());
            }
            let is_msg = f.r#type() == Type::Message;
            let write = (top && f.number() == 1)
                || (fresh && depth <= FORCED_DEPTH)
                || (depth <= RANDOM_DEPTH
                    && self.rng.percent(if is_msg { 45 - 5 * depth as u64 } else { 60 }));
            if !write {
                continue;
            }
            self.covered.insert(key);
            self.field(name, f, depth, &mut bytes, &mut json);
        }
        (bytes, json)
    }

    fn field(
        &mut self,
        msg: &str,
        f: &FieldDescriptorProto,
        depth: usize,
        bytes: &mut Vec<u8>,
        json: &mut Map<String, Value>,
    ) {
        let json_name = self
            .json_names
            .get(&(msg.to_string(), f.number()))
            .cloned()
            .unwrap_or_else(|| f.name().to_string());
        let target = f.type_name().trim_start_matches('.').to_string();
        let entry = self
            .messages
            .get(&target)
            .filter(|d| {
                d.options
                    .as_ref()
                    .is_some_and(prost_types::MessageOptions::map_entry)
            })
            .cloned();
        let num = f.number();
        if let Some(entry) = entry {
            let value_field = entry
                .field
                .iter()
                .find(|f| f.number() == 2)
                .cloned()
                .expect("a map value");
            let mut map = Map::new();
            for _ in 0..=self.rng.below(3) {
                let k = format!("{}-{}", self.rng.pick(STRINGS), map.len());
                let (vb, vj) = self.value(&value_field, depth + 1);
                let mut e = Vec::new();
                len_field(1, k.as_bytes(), &mut e);
                e.extend(vb);
                len_field(num, &e, bytes);
                map.insert(k, vj.unwrap_or(Value::Null));
            }
            json.insert(json_name, Value::Object(map));
            return;
        }
        if f.label() == Label::Repeated {
            let n = 1 + self.rng.below(if f.r#type() == Type::Message { 2 } else { 4 });
            let numeric = matches!(f.r#type(), Type::Int32 | Type::Int64 | Type::Bool);
            let mut items = Vec::new();
            let mut packed = Vec::new();
            let pack = numeric && self.rng.percent(30);
            for _ in 0..n {
                let (b, j) = self.value(f, depth + 1);
                if pack {
                    // The value without its tag.
                    let mut at = 0;
                    while b[at] & 0x80 != 0 {
                        at += 1;
                    }
                    packed.extend_from_slice(&b[at + 1..]);
                } else {
                    bytes.extend(b);
                }
                items.push(j.unwrap_or(Value::Null));
            }
            if pack {
                len_field(num, &packed, bytes);
            }
            json.insert(json_name, Value::Array(items));
            return;
        }
        let (b, j) = self.value(f, depth + 1);
        bytes.extend(b);
        match j {
            // Inlined: the embedded message's fields are the parent's.
            Some(Value::Object(inner)) if json_name.is_empty() => json.extend(inner),
            Some(Value::String(s)) if s.is_empty() => {}
            Some(Value::Null) | None => {}
            Some(v) => {
                json.insert(json_name, v);
            }
        }
    }

    /// One value of field `f` (tag included) and its JSON (`None`: nothing shows).
    fn value(&mut self, f: &FieldDescriptorProto, depth: usize) -> (Vec<u8>, Option<Value>) {
        let num = f.number();
        let mut out = Vec::new();
        let j = match f.r#type() {
            Type::String => {
                let s = *self.rng.pick(STRINGS);
                len_field(num, s.as_bytes(), &mut out);
                Value::String(s.to_string())
            }
            Type::Bytes => {
                let n = self.rng.below(12);
                let b: Vec<u8> = (0..n)
                    .map(|_| u8::try_from(self.rng.next() & 0xff).unwrap_or(0))
                    .collect();
                len_field(num, &b, &mut out);
                Value::String(base64::engine::general_purpose::STANDARD.encode(&b))
            }
            Type::Int32 | Type::Int64 => {
                let v = *self
                    .rng
                    .pick(if f.r#type() == Type::Int32 { INT32 } else { INT64 });
                tag(num, 0, &mut out);
                varint(v.cast_unsigned(), &mut out);
                Value::from(v)
            }
            Type::Bool => {
                let v = self.rng.percent(50);
                tag(num, 0, &mut out);
                varint(u64::from(v), &mut out);
                Value::Bool(v)
            }
            Type::Message => {
                let target = f.type_name().trim_start_matches('.').to_string();
                let (b, j) = self.special(&target, depth).unwrap_or_else(|| {
                    let (b, j) = self.build(&target, depth, false);
                    (b, Some(Value::Object(j)))
                });
                len_field(num, &b, &mut out);
                return (out, j);
            }
            other => panic!("{}: no JSON rule for {other:?}", f.name()),
        };
        (out, Some(j))
    }

    /// The bytes and JSON of the types the API shows in their own way.
    fn special(&mut self, name: &str, _depth: usize) -> Option<(Vec<u8>, Option<Value>)> {
        let mut b = Vec::new();
        let j = match name {
            TIME | MICRO_TIME => {
                if self.rng.percent(10) {
                    // An unset time: an empty message.
                    return Some((b, None));
                }
                let secs = *self.rng.pick(SECONDS);
                let nanos = *self.rng.pick(&[0i64, 1, 999, 123_456_789, 999_999_999]);
                tag(1, 0, &mut b);
                varint(secs.cast_unsigned(), &mut b);
                tag(2, 0, &mut b);
                varint(nanos.cast_unsigned(), &mut b);
                let micro = name == MICRO_TIME;
                Value::String(rfc3339(secs, micro.then_some(nanos / 1000)))
            }
            QUANTITY => {
                let q = *self.rng.pick(QUANTITIES);
                len_field(1, q.as_bytes(), &mut b);
                Value::String(q.to_string())
            }
            INT_OR_STRING => {
                if self.rng.percent(50) {
                    let v = *self.rng.pick(INT32);
                    tag(1, 0, &mut b);
                    varint(0, &mut b);
                    tag(2, 0, &mut b);
                    varint(v.cast_unsigned(), &mut b);
                    len_field(3, b"", &mut b);
                    Value::from(v)
                } else {
                    let s = *self.rng.pick(&["25%", "http", "yes", "8080", "日本"]);
                    tag(1, 0, &mut b);
                    varint(1, &mut b);
                    tag(2, 0, &mut b);
                    varint(0, &mut b);
                    len_field(3, s.as_bytes(), &mut b);
                    Value::String(s.to_string())
                }
            }
            FIELDS_V1 | RAW_EXTENSION => {
                let v = serde_json::json!({"f:metadata": {"f:labels": {".": {}, "f:app": {}}}, "n": -1, "s": "yes", "u": "日本"});
                len_field(1, v.to_string().as_bytes(), &mut b);
                v
            }
            n if self.lists.contains(n) => {
                let items: Vec<&str> = (0..=self.rng.below(3)).map(|_| *self.rng.pick(STRINGS)).collect();
                for s in &items {
                    len_field(1, s.as_bytes(), &mut b);
                }
                Value::from(items)
            }
            _ => return None,
        };
        Some((b, Some(j)))
    }
}
