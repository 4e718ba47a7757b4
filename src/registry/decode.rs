//! Reading one value the API server stored, never guessing:
//!
//! - `k8s\0` + a `runtime.Unknown`: the protobuf envelope. Its type meta
//!   names the object; the object is read with the kind's field table, built
//!   from the official schema of the pinned release ([`super::schema`]); a
//!   kind the release does not have gets its metadata read (every stored
//!   object has it at field 1) and its other fields by number, as does a
//!   field newer than the release.
//! - `{…}`: an object stored as JSON (custom resources), as stored.
//! - `k8s:enc:<provider>:<version>:<key>:`: encrypted at rest; the provider
//!   and key name are shown, the ciphertext is not read.
//! - anything else: text when it is printable, else raw bytes with a note.
//!
//! The object is shown as the API shows it: empty strings and lists left
//! out, numbers and booleans kept (zero included), a nested object on the
//! wire kept even when empty (`emptyDir: {}`), `metadata.resourceVersion` from the key's modification
//! revision (the API server fills it in on read, it is not stored), keys
//! sorted (as `kubectl get -o yaml` prints them).
//!
//! Secrets are masked unless asked for, by kind and by shape, never by key
//! path alone: a `Secret` (or any object under a `secrets` key)
//! keeps its `apiVersion`, `kind`, `metadata`, `type` and `immutable`, every
//! other field is masked whatever its shape (a `data` map value by value, a
//! list or anything else whole), and every annotation value is masked (a
//! copy of the manifest may be JSON, YAML or anything); a `SecretList`'s
//! items are masked as Secrets; a Secret nested in any other object (a
//! `List`) is found and masked too; a value that does not decode is masked
//! when its key or its bytes say Secret.

use base64::Engine as _;
use serde::Serialize;
use serde_json::{Map, Value};

use super::schema::{self, Field, Msg, Ty};
use crate::wire::varint;

/// The envelope's magic.
pub const PROTOBUF_MAGIC: &[u8] = b"k8s\x00";
/// The prefix of a value encrypted at rest.
pub const ENCRYPTED_PREFIX: &[u8] = b"k8s:enc:";
/// Nesting deeper than this is not a Kubernetes object.
const MAX_DEPTH: usize = 64;

/// How the value was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Stored {
    /// The protobuf envelope.
    Protobuf,
    /// JSON.
    Json,
    /// Encrypted at rest.
    Encrypted,
    /// Printable text, not an object.
    Text,
    /// Bytes that are none of these, or an envelope that does not decode.
    Raw,
}

/// A value encrypted at rest, as its prefix names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Encryption {
    /// `aescbc`, `aesgcm`, `secretbox`, `kms`…
    pub provider: String,
    /// The provider's format version (`v1`, `v2`).
    pub version: String,
    /// The key's (or the KMS plugin's) name from the configuration.
    pub key_name: String,
}

/// One decoded value.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Decoded {
    /// How it was stored.
    pub stored: Stored,
    /// The envelope's content type (protobuf).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// The object as the API shows it (protobuf and JSON).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<Value>,
    /// The encryption (encrypted values).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encryption: Option<Encryption>,
    /// The text (text values).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The bytes, base64 (raw values).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_base64: Option<String>,
    /// Why the value shows raw, or what was left out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Secret values were masked.
    pub masked: bool,
}

impl Decoded {
    fn new(stored: Stored) -> Decoded {
        Decoded {
            stored,
            content_type: None,
            object: None,
            encryption: None,
            text: None,
            raw_base64: None,
            note: None,
            masked: false,
        }
    }

    fn raw(value: &[u8], note: String) -> Decoded {
        Decoded {
            raw_base64: Some(b64(value)),
            note: Some(note),
            ..Decoded::new(Stored::Raw)
        }
    }

    /// The object's `apiVersion`.
    pub fn api_version(&self) -> Option<&str> {
        self.object.as_ref()?.get("apiVersion")?.as_str()
    }

    /// The object's `kind`.
    pub fn kind(&self) -> Option<&str> {
        self.object.as_ref()?.get("kind")?.as_str()
    }

    /// The object's `metadata`, when it has one.
    pub fn metadata(&self) -> Option<&Map<String, Value>> {
        self.object.as_ref()?.get("metadata")?.as_object()
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// As [`decode`], with the API server's encryption keys: a value encrypted
/// at rest with one of them (`aescbc`, `aesgcm`, `secretbox`) is opened and
/// decoded as what it holds, still masked unless `show_secrets`; one that
/// does not open says why and shows none of its bytes.
pub fn decode_with(
    key: &[u8],
    value: &[u8],
    mod_revision: i64,
    show_secrets: bool,
    keys: Option<&super::encryption::Keys>,
) -> Decoded {
    let sealed = value
        .strip_prefix(ENCRYPTED_PREFIX)
        .and_then(|rest| Some((encryption(rest)?, rest.splitn(4, |&b| b == b':').nth(3)?)));
    let (Some(keys), Some((e, data))) = (keys, sealed) else {
        return decode(key, value, mod_revision, show_secrets);
    };
    if e.provider == "kms" {
        let mut d = decode(key, value, mod_revision, show_secrets);
        d.note = Some(
            "encrypted at rest through a KMS plugin: only the API server with that plugin can read it".into(),
        );
        return d;
    }
    match keys.open(&e.provider, &e.key_name, key, data) {
        Ok(plain) => {
            let mut d = decode(key, &plain, mod_revision, show_secrets);
            let opened = format!("decrypted with the {} key {}", e.provider, e.key_name);
            d.note = Some(match d.note.take() {
                Some(n) => format!("{opened}; {n}"),
                None => opened,
            });
            d.encryption = Some(e);
            d
        }
        Err(err) => {
            let mut d = decode(key, value, mod_revision, show_secrets);
            d.note = Some(format!("encrypted at rest, and not read: {err:#}"));
            d
        }
    }
}

/// Opens the value stored under `etcd_key` with `keys`: `None` when it is
/// not encrypted at rest (no `k8s:enc:` prefix), else what
/// [`super::encryption::Keys::open`] gives for it. A KMS value is an error:
/// only its plugin opens it.
pub fn open_stored(
    keys: &super::encryption::Keys,
    etcd_key: &[u8],
    value: &[u8],
) -> Option<anyhow::Result<Vec<u8>>> {
    let rest = value.strip_prefix(ENCRYPTED_PREFIX)?;
    let Some(e) = encryption(rest) else {
        return Some(Err(anyhow::anyhow!(
            "a k8s:enc: prefix without provider, version and key name"
        )));
    };
    if e.provider == "kms" {
        return Some(Err(anyhow::anyhow!(
            "encrypted through the KMS plugin {}: only the API server with that plugin opens it",
            e.key_name
        )));
    }
    let data = rest.splitn(4, |&b| b == b':').nth(3).unwrap_or_default();
    Some(keys.open(&e.provider, &e.key_name, etcd_key, data))
}

/// Decodes `value`, stored under `key` and last changed at `mod_revision`.
pub fn decode(key: &[u8], value: &[u8], mod_revision: i64, show_secrets: bool) -> Decoded {
    let mut d = if let Some(rest) = value.strip_prefix(PROTOBUF_MAGIC) {
        match envelope(rest) {
            Ok((content_type, object)) => Decoded {
                content_type,
                object: Some(object),
                ..Decoded::new(Stored::Protobuf)
            },
            Err(e) => Decoded::raw(value, format!("a protobuf envelope that does not decode: {e}")),
        }
    } else if let Some(rest) = value.strip_prefix(ENCRYPTED_PREFIX) {
        match encryption(rest) {
            Some(e) => Decoded {
                encryption: Some(e),
                note: Some(
                    "encrypted at rest by the API server: only the API server with its encryption configuration can read it"
                        .into(),
                ),
                ..Decoded::new(Stored::Encrypted)
            },
            None => Decoded::raw(value, "a k8s:enc: prefix without provider, version and key name".into()),
        }
    } else if value.first() == Some(&b'{') {
        match serde_json::from_slice::<Value>(value) {
            Ok(v @ Value::Object(_)) => Decoded {
                object: Some(v),
                ..Decoded::new(Stored::Json)
            },
            Ok(_) | Err(_) => text_or_raw(value),
        }
    } else {
        text_or_raw(value)
    };
    if let Some(obj) = d.object.as_mut().and_then(Value::as_object_mut) {
        if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("resourceVersion".into(), Value::String(mod_revision.to_string()));
        }
        if !show_secrets {
            d.masked = mask_object(obj, is_secret_key(key));
        }
    } else if !show_secrets
        && matches!(d.stored, Stored::Raw | Stored::Text)
        && (is_secret_key(key) || names_a_secret(value))
    {
        // A Secret that does not decode still holds its values: none of it is shown.
        d.masked = true;
        d.note = Some(format!(
            "{} (masked: {} bytes; --show-secrets shows it)",
            d.note.take().unwrap_or_else(|| "a Secret stored as text".into()),
            value.len()
        ));
        d.text = None;
        d.raw_base64 = None;
    }
    d
}

/// A key the API server stores Secrets under, whatever its `--etcd-prefix`:
/// a `secrets` path segment (`/registry/secrets/NS/NAME`,
/// `/kubernetes.io/secrets/NS/NAME`). A namespace or object named `secrets`
/// is masked too: over-masking is safe.
pub fn is_secret_key(key: &[u8]) -> bool {
    key.split(|&b| b == b'/').any(|seg| seg == b"secrets")
}

fn text_or_raw(value: &[u8]) -> Decoded {
    match std::str::from_utf8(value) {
        Ok(s) if !s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') => Decoded {
            text: Some(s.to_string()),
            ..Decoded::new(Stored::Text)
        },
        _ => Decoded::raw(
            value,
            "not a Kubernetes object (no k8s\\0 envelope, not JSON) and not text".into(),
        ),
    }
}

/// `aescbc:v1:key1:<ciphertext>` → the provider, version and key name.
fn encryption(rest: &[u8]) -> Option<Encryption> {
    let mut parts = rest.splitn(4, |&b| b == b':');
    let provider = parts.next()?;
    let version = parts.next()?;
    let key_name = parts.next()?;
    parts.next()?;
    let ok = |b: &[u8]| !b.is_empty() && b.iter().all(u8::is_ascii_graphic);
    if !(ok(provider) && ok(version) && ok(key_name)) {
        return None;
    }
    let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    Some(Encryption {
        provider: s(provider),
        version: s(version),
        key_name: s(key_name),
    })
}

/// Whether `kind` holds Secret values.
pub fn is_secret_kind(kind: &str) -> bool {
    kind == "Secret" || kind == "SecretList"
}

/// Bytes that do not decode but say Secret: a cut protobuf envelope whose
/// type meta names `Secret` or `SecretList`, or text (YAML, broken JSON) with
/// a `kind: Secret…` line. Over-masking is safe.
fn names_a_secret(value: &[u8]) -> bool {
    if value.starts_with(PROTOBUF_MAGIC) {
        return value.windows(8).any(|w| w == b"\x12\x06Secret")
            || value.windows(12).any(|w| w == b"\x12\x0aSecretList");
    }
    let squeezed: Vec<u8> = value
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace() && *b != b'"' && *b != b'\'')
        .collect();
    squeezed.windows(11).any(|w| w == b"kind:Secret")
}

/// Replaces `v` with a note of its size (`bytes`: the decoded size of a base64 string).
fn mask(v: &mut Value, what: &str) {
    let len = match &*v {
        Value::String(s) if what == "bytes" => base64::engine::general_purpose::STANDARD
            .decode(s.as_bytes())
            .map_or(s.len(), |b| b.len()),
        Value::String(s) => s.len(),
        other => other.to_string().len(),
    };
    *v = Value::String(format!("(masked: {len} bytes; --show-secrets shows it)"));
}

/// The fields a Secret shows as they are; every other one is masked.
const SECRET_PLAIN: [&str; 5] = ["apiVersion", "kind", "metadata", "type", "immutable"];
/// The fields a SecretList shows as they are (its `items` are masked as Secrets).
const SECRET_LIST_PLAIN: [&str; 3] = ["apiVersion", "kind", "metadata"];

/// Masks whatever Secret values `obj` holds: all of it as a Secret when its
/// kind says so or `secret_key` (it is stored under a `secrets` key), its
/// items when it is a `SecretList`, else any Secret nested in it. Whether
/// anything was masked.
fn mask_object(obj: &mut Map<String, Value>, secret_key: bool) -> bool {
    match obj.get("kind").and_then(Value::as_str) {
        Some("SecretList") => mask_secret_list(obj),
        Some("Secret") => mask_secret(obj),
        _ if secret_key => mask_secret(obj),
        _ => obj.values_mut().fold(false, |any, v| mask_nested(v, 0) | any),
    }
}

/// Finds Secrets and SecretLists anywhere in `v` (a `List`'s items, an
/// embedded manifest) and masks them.
fn mask_nested(v: &mut Value, depth: usize) -> bool {
    if depth > MAX_DEPTH {
        return false;
    }
    match v {
        Value::Object(m) => match m.get("kind").and_then(Value::as_str) {
            Some("SecretList") => mask_secret_list(m),
            Some("Secret") => mask_secret(m),
            _ => m
                .values_mut()
                .fold(false, |any, v| mask_nested(v, depth + 1) | any),
        },
        Value::Array(items) => items
            .iter_mut()
            .fold(false, |any, v| mask_nested(v, depth + 1) | any),
        _ => false,
    }
}

/// Masks a Secret's values in place; whether anything was masked. Its
/// `data` and `stringData` maps value by value (the keys stay: they say
/// which values there are), anything else besides [`SECRET_PLAIN`] whole,
/// whatever its shape, and every annotation value.
fn mask_secret(obj: &mut Map<String, Value>) -> bool {
    let mut any = false;
    for (field, v) in obj.iter_mut() {
        // Metadata that is not a map is no metadata: masked like the rest.
        let plain = SECRET_PLAIN.contains(&field.as_str()) && (field != "metadata" || v.is_object());
        if plain || v.is_null() {
            continue;
        }
        let what = if field == "data" { "bytes" } else { "text" };
        match v {
            Value::Object(m) if field == "data" || field == "stringData" => {
                for v in m.values_mut() {
                    mask(v, what);
                    any = true;
                }
            }
            _ => {
                mask(v, what);
                any = true;
            }
        }
    }
    mask_annotations(obj) | any
}

/// Masks a SecretList's items as Secrets (an item that is not an object,
/// or `items` that is not a list, whole) and any other field besides
/// [`SECRET_LIST_PLAIN`]; whether anything was masked.
fn mask_secret_list(obj: &mut Map<String, Value>) -> bool {
    let mut any = false;
    for (field, v) in obj.iter_mut() {
        let plain = SECRET_LIST_PLAIN.contains(&field.as_str()) && (field != "metadata" || v.is_object());
        if plain || v.is_null() {
            continue;
        }
        match v {
            Value::Array(items) if field == "items" => {
                for item in items {
                    if let Value::Object(m) = item {
                        any |= mask_secret(m);
                    } else {
                        mask(item, "text");
                        any = true;
                    }
                }
            }
            _ => {
                mask(v, "text");
                any = true;
            }
        }
    }
    mask_annotations(obj) | any
}

/// Masks every annotation value (kubectl's last-applied copy, other tools'
/// copies in JSON or YAML, a value pasted in): annotations that are not a
/// map are masked whole. Whether anything was masked.
fn mask_annotations(obj: &mut Map<String, Value>) -> bool {
    let Some(annotations) = obj
        .get_mut("metadata")
        .and_then(Value::as_object_mut)
        .and_then(|m| m.get_mut("annotations"))
    else {
        return false;
    };
    match annotations {
        Value::Object(m) => {
            for v in m.values_mut() {
                mask(v, "text");
            }
            !m.is_empty()
        }
        Value::Null => false,
        other => {
            mask(other, "text");
            true
        }
    }
}

/// One protobuf field as read off the wire.
#[derive(Debug, Clone, Copy)]
enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    Len(&'a [u8]),
    Fixed32(u32),
}

/// Every field of a message, in order.
fn fields(buf: &[u8]) -> Result<Vec<(u32, Wire<'_>)>, String> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        let tag = varint(buf, &mut at)?;
        let num = u32::try_from(tag >> 3).map_err(|_| format!("field number {} is too large", tag >> 3))?;
        if num == 0 {
            return Err("field number 0".into());
        }
        let take = |at: &mut usize, n: usize| -> Result<&[u8], String> {
            let end = at.checked_add(n).filter(|&e| e <= buf.len());
            let end = end.ok_or_else(|| format!("field {num} runs past the end"))?;
            let s = &buf[*at..end];
            *at = end;
            Ok(s)
        };
        let w = match tag & 7 {
            0 => Wire::Varint(varint(buf, &mut at)?),
            1 => Wire::Fixed64(u64::from_le_bytes(
                take(&mut at, 8)?.try_into().map_err(|_| "fixed64")?,
            )),
            2 => {
                let n = usize::try_from(varint(buf, &mut at)?).unwrap_or(usize::MAX);
                Wire::Len(take(&mut at, n)?)
            }
            5 => Wire::Fixed32(u32::from_le_bytes(
                take(&mut at, 4)?.try_into().map_err(|_| "fixed32")?,
            )),
            w => return Err(format!("field {num} has wire type {w}")),
        };
        out.push((num, w));
    }
    Ok(out)
}

/// The envelope (`runtime.Unknown`): its content type and the object.
fn envelope(buf: &[u8]) -> Result<(Option<String>, Value), String> {
    let mut api_version = String::new();
    let mut kind = String::new();
    let mut raw: Option<&[u8]> = None;
    let mut content_type = None;
    let mut encoding = String::new();
    for (num, w) in fields(buf)? {
        match (num, w) {
            (1, Wire::Len(tm)) => {
                for (n, w) in fields(tm)? {
                    match (n, w) {
                        (1, Wire::Len(s)) => api_version = utf8(s, "apiVersion")?,
                        (2, Wire::Len(s)) => kind = utf8(s, "kind")?,
                        _ => {}
                    }
                }
            }
            (2, Wire::Len(r)) => raw = Some(r),
            (3, Wire::Len(s)) => encoding = utf8(s, "contentEncoding")?,
            (4, Wire::Len(s)) => content_type = Some(utf8(s, "contentType")?).filter(|s| !s.is_empty()),
            (1..=4, _) => return Err(format!("envelope field {num} has the wrong wire type")),
            _ => {}
        }
    }
    if kind.is_empty() {
        return Err("the envelope names no kind".into());
    }
    if !encoding.is_empty() {
        return Err(format!("content encoding {encoding} is not read"));
    }
    let raw = raw.ok_or("the envelope holds no object")?;
    let table = schema::get().kind(&api_version, &kind);
    let mut obj = match table {
        Some(t) => message(raw, t, 0)?,
        None => generic_object(raw)?,
    };
    obj.insert("apiVersion".into(), Value::String(api_version));
    obj.insert("kind".into(), Value::String(kind));
    Ok((content_type, Value::Object(obj)))
}

fn utf8(b: &[u8], what: &str) -> Result<String, String> {
    String::from_utf8(b.to_vec()).map_err(|_| format!("{what} is not UTF-8"))
}

/// A kind without a table: `metadata` (field 1 of every stored object) read
/// as `ObjectMeta`, the other fields by number.
fn generic_object(raw: &[u8]) -> Result<Map<String, Value>, String> {
    let mut obj = Map::new();
    for (num, w) in fields(raw)? {
        match (num, w) {
            (1, Wire::Len(b)) => {
                let meta = match schema::get().by_name(schema::OBJECT_META) {
                    Some(m) => message(b, m, 1)?,
                    None => generic_message(b, 1)?,
                };
                obj.insert("metadata".into(), Value::Object(meta));
            }
            _ => put(&mut obj, num, None, generic(w, 1)?),
        }
    }
    Ok(obj)
}

/// Nothing to show: numbers and booleans always show, zero and false included
/// (a pointer field is on the wire only when set, and many fields without
/// `omitempty` mean something at zero: `exitCode: 0`, `replicas: 0`,
/// `automountServiceAccountToken: false`); empty strings, lists and objects
/// do not (the API server writes every string, set or not).
fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(_) | Value::Number(_) => false,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

/// Puts field `num`'s value into `obj`: by its name, a list when repeated,
/// inlined when embedded (no name), by number when the table lacks it. A
/// message on the wire shows even when empty: an empty `emptyDir` is how a
/// volume says it is one.
fn put(obj: &mut Map<String, Value>, num: u32, field: Option<&Field>, v: Value) {
    match field {
        Some(f) if f.name.is_empty() => {
            if let Value::Object(inner) = v {
                obj.extend(inner);
            }
        }
        Some(f) if matches!(f.ty, Ty::Map(_)) => {
            if let Value::Object(entry) = v {
                let m = obj.entry(&*f.name).or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(m) = m {
                    m.extend(entry);
                }
            }
        }
        Some(f) if f.repeated => {
            if let Value::Array(a) = obj.entry(&*f.name).or_insert_with(|| Value::Array(Vec::new())) {
                match v {
                    // Packed numbers: one wire field, many values.
                    Value::Array(packed) if f.ty != Ty::StrList => a.extend(packed),
                    v => a.push(v),
                }
            }
        }
        Some(f) => {
            if !is_empty(&v) || matches!(f.ty, Ty::Msg(_)) && v.is_object() {
                obj.insert(f.name.to_string(), v);
            }
        }
        None => {
            let name = format!("#{num}");
            match obj.get_mut(&name) {
                Some(Value::Array(a)) => a.push(v),
                Some(old) => {
                    let first = old.take();
                    *old = Value::Array(vec![first, v]);
                }
                None => {
                    obj.insert(name, v);
                }
            }
        }
    }
}

/// A message without a table, field by field by number.
fn generic_message(buf: &[u8], depth: usize) -> Result<Map<String, Value>, String> {
    let mut obj = Map::new();
    for (n, w) in fields(buf)? {
        let v = generic(w, depth + 1)?;
        put(&mut obj, n, None, v);
    }
    Ok(obj)
}

/// A message with a table.
fn message(buf: &[u8], msg: &Msg, depth: usize) -> Result<Map<String, Value>, String> {
    if depth > MAX_DEPTH {
        return Err("nested deeper than any Kubernetes object".into());
    }
    let mut obj = Map::new();
    for (num, w) in fields(buf)? {
        let f = msg.field(num);
        let v = match f {
            Some(f) => typed(f, w, depth).map_err(|e| format!("{}.{}: {e}", msg.name, f.name))?,
            None => generic(w, depth + 1)?,
        };
        put(&mut obj, num, f, v);
    }
    Ok(obj)
}

fn len<'a>(w: Wire<'a>, what: &str) -> Result<&'a [u8], String> {
    match w {
        Wire::Len(b) => Ok(b),
        _ => Err(format!("{what} expected, another wire type found")),
    }
}

fn int(w: Wire<'_>) -> Result<i64, String> {
    match w {
        Wire::Varint(v) => Ok(v.cast_signed()),
        _ => Err("an integer expected, another wire type found".into()),
    }
}

/// A `Time` or `MicroTime` as kube-apiserver prints it: RFC 3339 in UTC,
/// before 1970 too, with microseconds for `MicroTime`. Only an empty message
/// is an unset time (`null`); one that holds the epoch (its `seconds: 0` on
/// the wire) is `1970-01-01T00:00:00Z`.
fn time(b: &[u8], micro: bool) -> Result<Value, String> {
    if b.is_empty() {
        return Ok(Value::Null);
    }
    let (mut secs, mut nanos) = (0i64, 0i64);
    for (n, w) in fields(b)? {
        match n {
            1 => secs = int(w)?,
            2 => nanos = int(w)?,
            _ => {}
        }
    }
    let whole = crate::utc::date_time(secs);
    Ok(Value::String(if micro {
        format!("{whole}.{:06}Z", nanos.clamp(0, 999_999_999) / 1000)
    } else {
        format!("{whole}Z")
    }))
}

/// One `map<string, V>` entry (`entry`: its message, field 2 the value) as
/// a one-key object; a value left off the wire is V's zero value.
fn map_entry(b: &[u8], entry: &Msg, depth: usize) -> Result<Value, String> {
    let mut key = String::new();
    let mut val = None;
    let value_field = entry.field(2);
    for (n, w) in fields(b)? {
        match (n, value_field) {
            (1, _) => key = utf8(len(w, "a map key")?, "a map key")?,
            (2, Some(f)) => val = Some(typed(f, w, depth)?),
            (2, None) => val = Some(generic(w, depth + 1)?),
            _ => {}
        }
    }
    let val = val.unwrap_or_else(|| match value_field.map(|f| f.ty) {
        Some(Ty::Msg(_) | Ty::Map(_)) => Value::Object(Map::new()),
        Some(Ty::Int | Ty::Uint | Ty::Double | Ty::Float) => Value::from(0),
        Some(Ty::Bool) => Value::Bool(false),
        Some(Ty::StrList) => Value::Array(Vec::new()),
        Some(Ty::Time | Ty::MicroTime | Ty::RawExtension | Ty::FieldsV1) => Value::Null,
        _ => Value::String(String::new()),
    });
    let mut m = Map::new();
    m.insert(key, val);
    Ok(Value::Object(m))
}

/// Raw JSON (`FieldsV1`, `RawExtension`): the JSON itself, as text when it
/// is not JSON, `null` when there is none.
fn raw_json(b: &[u8]) -> Result<Value, String> {
    let mut raw: Option<&[u8]> = None;
    for (n, w) in fields(b)? {
        if n == 1 {
            raw = Some(len(w, "raw JSON")?);
        }
    }
    Ok(raw.map_or(Value::Null, |raw| {
        serde_json::from_slice(raw)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(raw).into_owned()))
    }))
}

/// Numbers packed in one length-delimited field (proto3 style; the API
/// server writes them one by one, readers accept both).
fn packed(b: &[u8], ty: Ty) -> Result<Value, String> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < b.len() {
        out.push(match ty {
            Ty::Double | Ty::Float => {
                let n = if ty == Ty::Double { 8 } else { 4 };
                let chunk = b.get(at..at + n).ok_or("packed numbers run past the end")?;
                at += n;
                let w = if n == 8 {
                    Wire::Fixed64(u64::from_le_bytes(chunk.try_into().map_err(|_| "fixed64")?))
                } else {
                    Wire::Fixed32(u32::from_le_bytes(chunk.try_into().map_err(|_| "fixed32")?))
                };
                scalar(ty, w)?
            }
            _ => scalar(ty, Wire::Varint(varint(b, &mut at)?))?,
        });
    }
    Ok(Value::Array(out))
}

/// A number or bool.
fn scalar(ty: Ty, w: Wire<'_>) -> Result<Value, String> {
    Ok(match (ty, w) {
        (Ty::Int, _) => Value::from(int(w)?),
        (Ty::Uint, Wire::Varint(v)) => Value::from(v),
        (Ty::Bool, _) => Value::Bool(int(w)? != 0),
        (Ty::Double, Wire::Fixed64(v)) => float(f64::from_bits(v)),
        (Ty::Float, Wire::Fixed32(v)) => float(f64::from(f32::from_bits(v))),
        _ => return Err("a number expected, another wire type found".into()),
    })
}

/// A float as JSON: a number, or its name when JSON has none (`NaN`).
fn float(f: f64) -> Value {
    serde_json::Number::from_f64(f).map_or_else(|| Value::String(f.to_string()), Value::Number)
}

fn quantity(b: &[u8]) -> Result<Value, String> {
    let mut s = String::new();
    for (n, w) in fields(b)? {
        if n == 1 {
            s = utf8(len(w, "a quantity")?, "a quantity")?;
        }
    }
    Ok(Value::String(s))
}

/// A field with a type from its table.
fn typed(f: &Field, w: Wire<'_>, depth: usize) -> Result<Value, String> {
    Ok(match f.ty {
        Ty::Str => Value::String(utf8(len(w, "a string")?, "a string")?),
        Ty::Bytes => Value::String(b64(len(w, "bytes")?)),
        Ty::Int | Ty::Uint | Ty::Bool | Ty::Double | Ty::Float => match w {
            Wire::Len(b) if f.repeated => packed(b, f.ty)?,
            w => scalar(f.ty, w)?,
        },
        Ty::Msg(m) => Value::Object(message(len(w, "a message")?, schema::get().msg(m), depth + 1)?),
        Ty::StrList => {
            let mut items = Vec::new();
            for (n, w) in fields(len(w, "a list")?)? {
                if n == 1 {
                    items.push(Value::String(utf8(len(w, "a string")?, "a string")?));
                }
            }
            Value::Array(items)
        }
        Ty::RawExtension => raw_json(len(w, "an embedded object")?)?,
        Ty::Any => generic(w, depth + 1)?,
        Ty::Time => time(len(w, "a time")?, false)?,
        Ty::MicroTime => time(len(w, "a time")?, true)?,
        Ty::Quantity => quantity(len(w, "a quantity")?)?,
        Ty::IntOrString => {
            let (mut ty, mut i, mut s) = (0, 0, String::new());
            for (n, w) in fields(len(w, "an int-or-string")?)? {
                match n {
                    1 => ty = int(w)?,
                    2 => i = int(w)?,
                    3 => s = utf8(len(w, "a string")?, "a string")?,
                    _ => {}
                }
            }
            if ty == 1 { Value::String(s) } else { Value::from(i) }
        }
        Ty::FieldsV1 => raw_json(len(w, "fieldsV1")?)?,
        Ty::Map(entry) => map_entry(len(w, "a map entry")?, schema::get().msg(entry), depth + 1)?,
    })
}

fn printable(b: &[u8]) -> Option<&str> {
    let s = std::str::from_utf8(b).ok()?;
    (!s.chars().any(|c| c.is_control() && c != '\n' && c != '\t')).then_some(s)
}

/// A field without a table: a number; text when it is printable; a nested
/// message (by field number) when it reads as one; else base64 bytes.
fn generic(w: Wire<'_>, depth: usize) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err("nested deeper than any Kubernetes object".into());
    }
    Ok(match w {
        // A varint above i64's range is almost always a negative int32/int64.
        Wire::Varint(v) if v > i64::MAX.cast_unsigned() => Value::from(v.cast_signed()),
        Wire::Varint(v) | Wire::Fixed64(v) => Value::from(v),
        Wire::Fixed32(v) => Value::from(v),
        Wire::Len(b) => {
            // Text that starts with a line break or tab and reads whole as a
            // message is a message: 0x0a is the tag of a first field holding a
            // string or message (`{1: "name"}`); other printable bytes are text.
            let text = printable(b).filter(|s| !(s.starts_with(['\n', '\t']) && fields(b).is_ok()));
            if let Some(s) = text {
                Value::String(s.to_string())
            } else if let Ok(fs) = fields(b) {
                let mut obj = Map::new();
                for (n, w) in fs {
                    let v = generic(w, depth + 1)?;
                    put(&mut obj, n, None, v);
                }
                Value::Object(obj)
            } else {
                Value::String(format!("base64:{}", b64(b)))
            }
        }
    })
}

/// Protobuf writing, for tests that build stored values from the published layouts.
#[cfg(test)]
pub mod pb {
    /// A varint.
    pub fn varint(v: u64, out: &mut Vec<u8>) {
        crate::wire::put_varint(v, out);
    }
    /// A length-delimited field.
    pub fn bytes(num: u32, b: &[u8], out: &mut Vec<u8>) {
        varint(u64::from(num) << 3 | 2, out);
        varint(b.len() as u64, out);
        out.extend_from_slice(b);
    }
    /// A varint field.
    pub fn int(num: u32, v: i64, out: &mut Vec<u8>) {
        varint(u64::from(num) << 3, out);
        varint(v.cast_unsigned(), out);
    }
    /// A `map<string,string|bytes>` entry.
    pub fn entry(num: u32, k: &str, v: &[u8], out: &mut Vec<u8>) {
        let mut e = Vec::new();
        bytes(1, k.as_bytes(), &mut e);
        bytes(2, v, &mut e);
        bytes(num, &e, out);
    }
    /// The stored form: `k8s\0` + `runtime.Unknown{typeMeta, raw, contentType}`.
    pub fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
        let mut tm = Vec::new();
        bytes(1, api_version.as_bytes(), &mut tm);
        bytes(2, kind.as_bytes(), &mut tm);
        let mut u = Vec::new();
        bytes(1, &tm, &mut u);
        bytes(2, raw, &mut u);
        bytes(3, b"", &mut u);
        bytes(4, b"", &mut u);
        let mut out = b"k8s\x00".to_vec();
        out.extend(u);
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::pb::{bytes, entry, envelope, int};
    use super::*;

    /// Times as kube-apiserver prints them: before 1970 as dates, the epoch
    /// (seconds 0 on the wire) as a date, only an empty message as unset.
    #[test]
    fn times_before_and_at_the_epoch() {
        let ts = |secs: i64, nanos: Option<i64>| {
            let mut b = vec![0x08];
            crate::wire::put_varint(secs.cast_unsigned(), &mut b);
            if let Some(n) = nanos {
                b.push(0x10);
                crate::wire::put_varint(n.cast_unsigned(), &mut b);
            }
            b
        };
        assert_eq!(time(&[], false).unwrap(), Value::Null);
        assert_eq!(time(&ts(0, None), false).unwrap(), "1970-01-01T00:00:00Z");
        assert_eq!(
            time(&ts(0, Some(0)), true).unwrap(),
            "1970-01-01T00:00:00.000000Z"
        );
        assert_eq!(time(&ts(-86_400, None), false).unwrap(), "1969-12-31T00:00:00Z");
        assert_eq!(
            time(&ts(-1, Some(500_000_000)), true).unwrap(),
            "1969-12-31T23:59:59.500000Z"
        );
        assert_eq!(
            time(&ts(1_796_083_200, Some(123_456_789)), true).unwrap(),
            "2026-12-01T00:00:00.123456Z"
        );
    }

    /// The annotation `kubectl apply` keeps the whole last manifest in (a Secret's data too).
    const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

    fn meta(name: &str, ns: &str) -> Vec<u8> {
        let mut m = Vec::new();
        bytes(1, name.as_bytes(), &mut m);
        bytes(2, b"", &mut m);
        bytes(3, ns.as_bytes(), &mut m);
        bytes(5, b"0b5e-uid", &mut m);
        bytes(6, b"", &mut m);
        int(7, 0, &mut m);
        let mut t = Vec::new();
        int(1, 1_767_225_600, &mut t);
        int(2, 0, &mut t);
        bytes(8, &t, &mut m);
        entry(11, "app", b"web", &mut m);
        entry(11, "tier", b"front", &mut m);
        entry(
            12,
            LAST_APPLIED,
            b"{\"data\":{\"password\":\"aHVudGVyMg==\"}}",
            &mut m,
        );
        bytes(14, b"example.com/guard", &mut m);
        m
    }

    /// A Secret from its published layout: envelope, metadata, data masked by
    /// default (the last-applied annotation too), shown with --show-secrets.
    #[test]
    fn secret_is_masked_unless_asked() {
        let mut secret = Vec::new();
        bytes(1, &meta("db", "prod"), &mut secret);
        entry(2, "password", b"hunter2", &mut secret);
        bytes(3, b"Opaque", &mut secret);
        let v = envelope("v1", "Secret", &secret);
        let d = decode(b"/registry/secrets/prod/db", &v, 42, false);
        assert_eq!(d.stored, Stored::Protobuf);
        assert!(d.masked);
        let o = d.object.as_ref().unwrap();
        assert_eq!(o["kind"], "Secret");
        assert_eq!(o["type"], "Opaque");
        assert_eq!(
            o["data"]["password"],
            "(masked: 7 bytes; --show-secrets shows it)"
        );
        let m = &o["metadata"];
        assert_eq!(m["name"], "db");
        assert_eq!(m["namespace"], "prod");
        assert_eq!(m["uid"], "0b5e-uid");
        assert_eq!(m["resourceVersion"], "42");
        assert_eq!(m["creationTimestamp"], "2026-01-01T00:00:00Z");
        assert_eq!(m["labels"], serde_json::json!({"app": "web", "tier": "front"}));
        assert_eq!(m["finalizers"], serde_json::json!(["example.com/guard"]));
        assert!(m.get("generateName").is_none(), "zero values are left out: {m}");
        assert!(
            !o.to_string().contains("aHVudGVyMg"),
            "the annotation is masked: {o}"
        );
        let shown = decode(b"/registry/secrets/prod/db", &v, 42, true);
        assert!(!shown.masked);
        assert_eq!(shown.object.unwrap()["data"]["password"], b64(b"hunter2"));
    }

    /// A Secret that does not decode (cut short, under another etcd prefix,
    /// stored as text) shows none of its bytes; annotations holding a JSON
    /// copy of the manifest are masked like kubectl's last-applied one.
    #[test]
    fn undecodable_secrets_and_manifest_copies_are_masked() {
        let mut secret = Vec::new();
        bytes(1, &meta("db", "prod"), &mut secret);
        entry(2, "password", b"hunter2", &mut secret);
        let whole = envelope("v1", "Secret", &secret);
        let cut = &whole[..whole.len() - 3];
        for key in [
            &b"/registry/secrets/prod/db"[..],
            b"/kubernetes.io/secrets/prod/db",
        ] {
            let d = decode(key, cut, 1, false);
            assert_eq!(d.stored, Stored::Raw);
            assert!(d.masked && d.raw_base64.is_none() && d.text.is_none(), "{d:?}");
            assert!(d.note.as_ref().unwrap().contains("masked"), "{d:?}");
            let shown = decode(key, cut, 1, true);
            assert!(!shown.masked && shown.raw_base64.is_some());
        }
        let text = decode(b"/registry/secrets/prod/plain", b"password=hunter2", 1, false);
        assert!(text.masked && text.text.is_none(), "{text:?}");
        assert!(!is_secret_key(b"/registry/configmaps/prod/secretsauce"));
        let mut m = meta("db", "prod");
        entry(
            12,
            "kapp.k14s.io/original",
            br#"{"data":{"password":"aHVudGVyMg=="}}"#,
            &mut m,
        );
        entry(12, "team", b"payments", &mut m);
        let mut s2 = Vec::new();
        bytes(1, &m, &mut s2);
        let d = decode(
            b"/registry/secrets/prod/db",
            &envelope("v1", "Secret", &s2),
            1,
            false,
        );
        let a = &d.object.unwrap()["metadata"]["annotations"];
        assert!(
            a["kapp.k14s.io/original"]
                .as_str()
                .unwrap()
                .starts_with("(masked"),
            "{a}"
        );
        assert!(a["team"].as_str().unwrap().starts_with("(masked"), "{a}");
    }

    /// Secrets in unusual shapes, masked by kind and by shape
    /// under keys with no `secrets` segment: annotations holding YAML or a
    /// bare value, `data` as a list, a field the Secret kind does not have,
    /// a SecretList, a Secret inside a `List`, a YAML Secret stored as text,
    /// a cut envelope naming Secret. --show-secrets shows them all.
    #[test]
    fn secrets_in_unusual_shapes_are_masked() {
        let leaks = |d: &Decoded| {
            let all = serde_json::to_string(d).unwrap();
            ["hunter2", "aHVudGVy"].iter().any(|l| all.contains(l))
        };
        let json = |v: serde_json::Value| serde_json::to_vec(&v).unwrap();
        let cases: Vec<(&str, Vec<u8>)> = vec![
            (
                "YAML and bare annotations",
                json(
                    serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "a", "annotations": {
                    LAST_APPLIED: "apiVersion: v1\nkind: Secret\ndata:\n  password: aHVudGVyMg==\n",
                    "example.com/note": "hunter2"}}, "data": {}}),
                ),
            ),
            (
                "data as a list",
                json(
                    serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "b"},
                    "data": [{"name": "password", "value": "aHVudGVyMg=="}]}),
                ),
            ),
            (
                "data as a string, and a field Secrets do not have",
                json(
                    serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "c"},
                    "data": "password=hunter2", "spec": {"password": "hunter2"}}),
                ),
            ),
            (
                "a SecretList",
                json(
                    serde_json::json!({"apiVersion": "v1", "kind": "SecretList", "metadata": {},
                    "items": [{"metadata": {"name": "d"}, "data": {"password": "aHVudGVyMg=="}}, "hunter2"]}),
                ),
            ),
            (
                "a SecretList whose items are not a list",
                json(serde_json::json!({"kind": "SecretList", "items": {"password": "aHVudGVyMg=="}})),
            ),
            (
                "a Secret in a List",
                json(
                    serde_json::json!({"apiVersion": "v1", "kind": "List", "metadata": {},
                    "items": [{"kind": "ConfigMap", "data": {"mode": "fast"}},
                              {"kind": "Secret", "stringData": {"password": "hunter2"}}]}),
                ),
            ),
            (
                "a YAML Secret stored as text",
                b"apiVersion: v1\nkind: Secret\nstringData:\n  password: hunter2\n".to_vec(),
            ),
            ("a cut envelope naming Secret", {
                let mut secret = Vec::new();
                entry(2, "password", b"hunter2", &mut secret);
                let whole = envelope("v1", "Secret", &secret);
                whole[..whole.len() - 3].to_vec()
            }),
        ];
        for (what, value) in &cases {
            let d = decode(b"/registry/example.com/things/prod/x", value, 1, false);
            assert!(d.masked, "{what}: {d:?}");
            assert!(!leaks(&d), "{what}: {}", serde_json::to_string(&d).unwrap());
            let shown = decode(b"/registry/example.com/things/prod/x", value, 1, true);
            assert!(!shown.masked && shown != d, "{what}: {shown:?}");
        }
        // What is not a Secret stays as it is: a List's ConfigMap, a type, metadata.
        let d = decode(b"/registry/example.com/things/prod/x", &cases[5].1, 1, false);
        let o = d.object.unwrap();
        assert_eq!(o["items"][0]["data"]["mode"], "fast");
        let d = decode(b"/registry/example.com/things/prod/x", &cases[1].1, 1, false);
        let o = d.object.unwrap();
        assert_eq!(o["metadata"]["name"], "b");
        assert!(o["data"].as_str().unwrap().starts_with("(masked"), "{o}");
        // A ConfigMap whose text mentions secrets is not masked.
        let cm = json(
            serde_json::json!({"kind": "ConfigMap", "metadata": {"annotations": {"a": "b"}}, "data": {"secret": "no"}}),
        );
        let d = decode(b"/registry/configmaps/prod/x", &cm, 1, false);
        assert!(!d.masked, "{d:?}");
        assert!(!names_a_secret(b"kind: ConfigMap\ndata:\n  x: y\n"));
    }

    /// Encrypted values name their provider and key, and nothing else is read.
    #[test]
    fn encrypted_values_are_named_not_read() {
        let d = decode(
            b"/registry/secrets/a/b",
            b"k8s:enc:aescbc:v1:key1:\x8f\x01garbage",
            1,
            true,
        );
        assert_eq!(d.stored, Stored::Encrypted);
        assert_eq!(
            d.encryption,
            Some(Encryption {
                provider: "aescbc".into(),
                version: "v1".into(),
                key_name: "key1".into()
            })
        );
        assert!(d.object.is_none() && d.raw_base64.is_none());
        let kms = decode(
            b"/registry/secrets/a/b",
            b"k8s:enc:kms:v2:vault-kms:\x0a\x01",
            1,
            true,
        );
        assert_eq!(kms.encryption.unwrap().provider, "kms");
        assert_eq!(decode(b"k", b"k8s:enc:broken", 1, true).stored, Stored::Raw);
    }

    /// JSON objects pass through with the revision; text is text; a broken
    /// envelope or binary junk is raw with a note, never a failure.
    #[test]
    fn json_text_and_malformed() {
        let j = decode(
            b"/registry/example.com/widgets/ns/w",
            br#"{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"w"},"spec":{"size":3}}"#,
            9,
            false,
        );
        assert_eq!(j.stored, Stored::Json);
        assert_eq!(j.object.as_ref().unwrap()["metadata"]["resourceVersion"], "9");
        assert_eq!(j.object.as_ref().unwrap()["spec"]["size"], 3);
        assert_eq!(
            decode(b"/registry/masterleases/10.0.0.1", b"10.0.0.1", 1, false).stored,
            Stored::Text
        );
        let bad = decode(b"/registry/pods/a/b", b"k8s\x00\x0a\xff\xff", 1, false);
        assert_eq!(bad.stored, Stored::Raw);
        assert!(bad.note.as_ref().unwrap().contains("does not decode"), "{bad:?}");
        assert_eq!(bad.raw_base64.unwrap(), b64(b"k8s\x00\x0a\xff\xff"));
        let junk = decode(b"x", &[0, 1, 2, 0xff], 1, false);
        assert_eq!(junk.stored, Stored::Raw);
    }

    /// A Deployment scaled to zero keeps `replicas: 0` (and `maxUnavailable:
    /// 0`, which is not the 25% default); int-or-strings read as a string and a number.
    #[test]
    fn deployment_keeps_zero_replicas_and_int_or_string() {
        let mut ru = Vec::new();
        let (mut unavailable, mut surge) = (Vec::new(), Vec::new());
        int(1, 0, &mut unavailable);
        int(2, 0, &mut unavailable);
        int(1, 1, &mut surge);
        bytes(3, b"25%", &mut surge);
        bytes(1, &unavailable, &mut ru);
        bytes(2, &surge, &mut ru);
        let mut strategy = Vec::new();
        bytes(1, b"RollingUpdate", &mut strategy);
        bytes(2, &ru, &mut strategy);
        let mut spec = Vec::new();
        int(1, 0, &mut spec);
        bytes(4, &strategy, &mut spec);
        int(5, 0, &mut spec);
        let mut o = Vec::new();
        bytes(1, &meta("web", "prod"), &mut o);
        bytes(2, &spec, &mut o);
        let d = decode(
            b"/registry/deployments/prod/web",
            &envelope("apps/v1", "Deployment", &o),
            5,
            false,
        );
        let o = d.object.unwrap();
        assert_eq!(
            o["spec"],
            serde_json::json!({"replicas": 0, "minReadySeconds": 0, "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"}}})
        );
    }

    /// A kind without a table: metadata still read, the rest by field number.
    #[test]
    fn unknown_kind_reads_metadata_and_numbers() {
        let mut o = Vec::new();
        bytes(1, &meta("x", "ns"), &mut o);
        let mut spec = Vec::new();
        bytes(1, b"hello", &mut spec);
        int(2, 7, &mut spec);
        bytes(2, &spec, &mut o);
        let d = decode(
            b"/registry/example/x",
            &envelope("example.com/v1", "Gadget", &o),
            3,
            false,
        );
        let o = d.object.unwrap();
        assert_eq!(o["metadata"]["name"], "x");
        assert_eq!(o["#2"], serde_json::json!({"#1": "hello", "#2": 7}));
        // A message whose first field is a printable string of printable length
        // (a readiness gate's condition type) reads as a message, not as text.
        let gate = "target-health.elbv2.k8s.aws/k8s-default-web-0a1b2c3d";
        let mut inner = Vec::new();
        bytes(1, gate.as_bytes(), &mut inner);
        let mut o2 = Vec::new();
        bytes(1, &meta("x", "ns"), &mut o2);
        bytes(3, &inner, &mut o2);
        int(4, -1, &mut o2);
        let d = decode(
            b"/registry/example/x",
            &envelope("example.com/v1", "Gadget", &o2),
            3,
            false,
        );
        let o2 = d.object.unwrap();
        assert_eq!(o2["#3"], serde_json::json!({"#1": gate}));
        assert_eq!(o2["#4"], serde_json::json!(-1), "a negative varint reads signed");
        assert_eq!(o["apiVersion"], "example.com/v1");
    }

    /// Any bytes after the magic decode or come back raw: never a panic.
    #[test]
    fn fuzzed_envelopes_never_panic() {
        let mut o = Vec::new();
        bytes(1, &meta("x", "ns"), &mut o);
        let good = envelope("v1", "ConfigMap", &o);
        for i in 4..good.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut v = good.clone();
                v[i] ^= flip;
                let _ = decode(b"k", &v, 1, false);
                let _ = decode(b"k", &v[..i], 1, false);
            }
        }
    }
}
