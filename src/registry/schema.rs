//! Field tables of every Kubernetes object kube-apiserver stores as
//! protobuf, built once, at first use, from the official schema of the
//! pinned release (Kubernetes 1.36.3: the `generated.proto` files of
//! k8s.io/api and k8s.io/apimachinery `v0.36.3`, vendored in
//! `vendor/k8s-proto/` and embedded here compiled and compressed).
//!
//! A stored object's type meta names its group, version and kind; the group
//! and version name a proto package (`groups.tsv`, from each package's
//! `+groupName`), the kind a message in it. Each field reads by its
//! descriptor: its JSON name is its proto name, except the few the Go types
//! rename or inline (`json.tsv`); the types the API shows in their own way
//! (`Time`, `MicroTime`, `Quantity`, `IntOrString`, `FieldsV1`,
//! `RawExtension`, the string lists of `lists.tsv`) are named by their full
//! message name. A field or kind newer than the pinned release is still
//! shown, by number.

use std::collections::HashMap;
use std::sync::OnceLock;

use prost::Message as _;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FileDescriptorSet};

/// The compiled schema: a `FileDescriptorSet`, zstd-compressed.
pub const DESCRIPTORS: &[u8] = include_bytes!("../../vendor/k8s-proto/descriptors.pb.zst");
/// API group, version, proto package.
const GROUPS: &str = include_str!("../../vendor/k8s-proto/groups.tsv");
/// Message, field number, JSON name (empty: inlined).
const JSON_NAMES: &str = include_str!("../../vendor/k8s-proto/json.tsv");
/// Messages whose JSON is the list of their items.
const LISTS: &str = include_str!("../../vendor/k8s-proto/lists.tsv");
/// The release the schema is from.
pub const RELEASE: &str = "Kubernetes 1.36.3 (k8s.io/api v0.36.3)";

/// `meta.v1.ObjectMeta`, the metadata every stored object has at field 1.
pub const OBJECT_META: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta";

/// How a field's bytes read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    /// A string.
    Str,
    /// Bytes (base64 in JSON, as the API shows them).
    Bytes,
    /// A signed varint integer (int32 or int64).
    Int,
    /// An unsigned varint integer.
    Uint,
    /// A bool.
    Bool,
    /// A `double` (fixed 64 bits).
    Double,
    /// A `float` (fixed 32 bits).
    Float,
    /// A message, by its index in [`Schema::msg`].
    Msg(u32),
    /// A type the schema does not describe: read generically.
    Any,
    /// `meta.v1.Time`: seconds and nanos, shown as RFC 3339 to the second.
    Time,
    /// `meta.v1.MicroTime`: shown as RFC 3339 with microseconds.
    MicroTime,
    /// `resource.Quantity`: its string.
    Quantity,
    /// `intstr.IntOrString`: a number or a string.
    IntOrString,
    /// `meta.v1.FieldsV1`: raw JSON.
    FieldsV1,
    /// `runtime.RawExtension`: raw JSON (an embedded object).
    RawExtension,
    /// A message that is a Go slice of strings (`ExtraValue`, `Verbs`): its items.
    StrList,
    /// A `map<string, V>`: the entry message, whose field 2 is the value.
    Map(u32),
}

/// One field of a message.
#[derive(Debug, Clone)]
pub struct Field {
    /// Its number.
    pub num: u32,
    /// Its JSON name; empty when it is inlined (Go's embedded struct).
    pub name: Box<str>,
    /// How it reads.
    pub ty: Ty,
    /// A repeated field (a JSON list).
    pub repeated: bool,
}

/// A message's fields.
#[derive(Debug)]
pub struct Msg {
    /// The message's full name, e.g. `k8s.io.api.core.v1.Pod`.
    pub name: Box<str>,
    /// Its fields, sorted by number.
    pub fields: Vec<Field>,
}

impl Msg {
    /// The field numbered `num`.
    pub fn field(&self, num: u32) -> Option<&Field> {
        self.fields
            .binary_search_by_key(&num, |f| f.num)
            .ok()
            .map(|i| &self.fields[i])
    }
}

/// Every message of the schema and how a stored object's type meta names one.
#[derive(Debug)]
pub struct Schema {
    msgs: Vec<Msg>,
    by_name: HashMap<Box<str>, u32>,
    /// (group, version) → proto package.
    packages: HashMap<(Box<str>, Box<str>), Box<str>>,
}

impl Schema {
    /// The message at `index` (from [`Ty::Msg`] or [`Ty::Map`]).
    pub fn msg(&self, index: u32) -> &Msg {
        &self.msgs[index as usize]
    }

    /// The message named `name` (full name, no leading dot).
    pub fn by_name(&self, name: &str) -> Option<&Msg> {
        self.by_name.get(name).map(|&i| self.msg(i))
    }

    /// The message of a stored object's `apiVersion` (`v1`, `apps/v1`) and
    /// `kind`, when the pinned release has that group, version and kind.
    pub fn kind(&self, api_version: &str, kind: &str) -> Option<&Msg> {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let package = self.packages.get(&(group.into(), version.into()))?;
        self.by_name(&format!("{package}.{kind}"))
    }

    /// The proto package of a group and version (`""`, `v1` → `k8s.io.api.core.v1`).
    pub fn package(&self, group: &str, version: &str) -> Option<&str> {
        self.packages
            .get(&(group.into(), version.into()))
            .map(AsRef::as_ref)
    }

    /// Every message, in the schema's order.
    pub fn messages(&self) -> impl Iterator<Item = &Msg> {
        self.msgs.iter()
    }

    /// Every group and version the schema knows, with its proto package.
    pub fn group_versions(&self) -> impl Iterator<Item = (&str, &str, &str)> {
        self.packages
            .iter()
            .map(|((g, v), p)| (g.as_ref(), v.as_ref(), p.as_ref()))
    }
}

/// The schema, built at first use.
pub fn get() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        // The embedded schema is checked by the tests: it always reads.
        let set = descriptor_set().unwrap_or_default();
        build(&set)
    })
}

/// The embedded `FileDescriptorSet`, decompressed and parsed.
pub fn descriptor_set() -> Result<FileDescriptorSet, String> {
    let bytes = zstd::stream::decode_all(DESCRIPTORS).map_err(|e| format!("the embedded schema: {e}"))?;
    FileDescriptorSet::decode(bytes.as_slice()).map_err(|e| format!("the embedded schema: {e}"))
}

/// The lines of a vendored table that are not comments, split at tabs.
fn rows(table: &str) -> impl Iterator<Item = Vec<&str>> {
    table
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split('\t').collect())
}

/// How a message named `name` reads when it is not read field by field.
fn special(name: &str, lists: &[&str]) -> Option<Ty> {
    Some(match name {
        "k8s.io.apimachinery.pkg.apis.meta.v1.Time" => Ty::Time,
        "k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime" => Ty::MicroTime,
        "k8s.io.apimachinery.pkg.api.resource.Quantity" => Ty::Quantity,
        "k8s.io.apimachinery.pkg.util.intstr.IntOrString" => Ty::IntOrString,
        "k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1" => Ty::FieldsV1,
        "k8s.io.apimachinery.pkg.runtime.RawExtension" => Ty::RawExtension,
        n if lists.contains(&n) => Ty::StrList,
        _ => return None,
    })
}

/// `d` and the messages nested in it (map entries), by full name.
fn walk<'a>(prefix: &str, d: &'a DescriptorProto, all: &mut Vec<(String, &'a DescriptorProto)>) {
    let name = format!("{prefix}.{}", d.name());
    for n in &d.nested_type {
        walk(&name, n, all);
    }
    all.push((name, d));
}

/// The tables of every message in `set`.
fn build(set: &FileDescriptorSet) -> Schema {
    // Every message (nested ones too: map entries), by full name.
    let mut all: Vec<(String, &DescriptorProto)> = Vec::new();
    for file in &set.file {
        for d in &file.message_type {
            walk(file.package(), d, &mut all);
        }
    }
    let by_name: HashMap<Box<str>, u32> = all
        .iter()
        .enumerate()
        .map(|(i, (n, _))| (n.as_str().into(), u32::try_from(i).unwrap_or(u32::MAX)))
        .collect();
    let mut renamed: HashMap<(&str, u32), &str> = HashMap::new();
    for r in rows(JSON_NAMES) {
        if let [msg, num, json] = r[..]
            && let Ok(num) = num.parse()
            && json != "-"
        {
            renamed.insert((msg, num), json);
        }
    }
    let lists: Vec<&str> = rows(LISTS).filter_map(|r| r.first().copied()).collect();
    let msgs = all
        .iter()
        .map(|(name, d)| {
            let mut fields: Vec<Field> = d
                .field
                .iter()
                .map(|f| {
                    let num = u32::try_from(f.number()).unwrap_or(0);
                    let ty = match f.r#type() {
                        Type::String => Ty::Str,
                        Type::Bytes => Ty::Bytes,
                        Type::Int32 | Type::Int64 | Type::Sint32 | Type::Sint64 | Type::Enum => Ty::Int,
                        Type::Uint32 | Type::Uint64 => Ty::Uint,
                        Type::Bool => Ty::Bool,
                        Type::Double => Ty::Double,
                        Type::Float => Ty::Float,
                        Type::Message => {
                            let target = f.type_name().trim_start_matches('.');
                            let entry = by_name.get(target).filter(|&&i| {
                                all[i as usize]
                                    .1
                                    .options
                                    .as_ref()
                                    .is_some_and(prost_types::MessageOptions::map_entry)
                            });
                            match (special(target, &lists), entry, by_name.get(target)) {
                                (Some(t), _, _) => t,
                                (None, Some(&i), _) => Ty::Map(i),
                                (None, None, Some(&i)) => Ty::Msg(i),
                                (None, None, None) => Ty::Any,
                            }
                        }
                        _ => Ty::Any,
                    };
                    let json = renamed.get(&(name.as_str(), num)).copied();
                    Field {
                        num,
                        name: json.unwrap_or(f.name()).into(),
                        repeated: f.label() == Label::Repeated && !matches!(ty, Ty::Map(_)),
                        ty,
                    }
                })
                .collect();
            fields.sort_by_key(|f| f.num);
            Msg {
                name: name.as_str().into(),
                fields,
            }
        })
        .collect();
    let packages = rows(GROUPS)
        .filter_map(|r| match r[..] {
            [group, version, package] => Some(((group.into(), version.into()), package.into())),
            _ => None,
        })
        .collect();
    Schema {
        msgs,
        by_name,
        packages,
    }
}

#[allow(clippy::unwrap_used)]
#[cfg(test)]
mod tests {
    use super::*;

    /// The embedded descriptors are the vendored protos compiled: protoc
    /// compiles them again and the two sets are the same.
    #[test]
    fn descriptors_match_the_vendored_protos() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/vendor/k8s-proto");
        let mut protos: Vec<String> = walkdir::WalkDir::new(root)
            .into_iter()
            .map(Result::unwrap)
            .filter(|e| e.file_name() == "generated.proto")
            .map(|e| {
                e.path()
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        protos.sort();
        assert!(protos.len() > 60, "{protos:?}");
        let out = tempfile::tempdir().unwrap();
        let fds = out.path().join("k8s.pb");
        let run = std::process::Command::new("protoc")
            .arg("-I")
            .arg(root)
            .arg("--include_imports")
            .arg("-o")
            .arg(&fds)
            .args(&protos)
            .output()
            .expect("protoc is needed to build etcd-rescue: run `make setup`");
        assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
        let fresh = FileDescriptorSet::decode(std::fs::read(&fds).unwrap().as_slice()).unwrap();
        assert!(
            fresh == descriptor_set().unwrap(),
            "vendor/k8s-proto/descriptors.pb.zst is stale: run tests/bin/vendor-k8s-proto"
        );
    }

    /// Group and version name the package, the kind the message; names,
    /// inlined fields and the special types come out as the API shows them.
    #[test]
    fn kinds_names_and_special_types() {
        let s = get();
        let pod = s.kind("v1", "Pod").unwrap();
        assert_eq!(&*pod.name, "k8s.io.api.core.v1.Pod");
        let Ty::Msg(meta) = pod.field(1).unwrap().ty else {
            panic!("Pod.metadata")
        };
        let meta = s.msg(meta);
        assert_eq!(&*meta.name, OBJECT_META);
        assert_eq!(meta.field(8).unwrap().ty, Ty::Time);
        assert_eq!(&*meta.field(8).unwrap().name, "creationTimestamp");
        assert!(matches!(meta.field(11).unwrap().ty, Ty::Map(_)));
        assert!(!meta.field(11).unwrap().repeated);
        assert!(meta.field(14).unwrap().repeated);
        assert_eq!(
            &*s.kind("rbac.authorization.k8s.io/v1", "ClusterRole")
                .unwrap()
                .name,
            "k8s.io.api.rbac.v1.ClusterRole"
        );
        assert_eq!(
            &*s.kind("networking.k8s.io/v1", "NetworkPolicy").unwrap().name,
            "k8s.io.api.networking.v1.NetworkPolicy"
        );
        assert_eq!(s.package("apps", "v1"), Some("k8s.io.api.apps.v1"));
        assert_eq!(
            s.package("internal.apiserver.k8s.io", "v1alpha1"),
            Some("k8s.io.api.apiserverinternal.v1alpha1")
        );
        assert!(s.kind("apps/v1", "Pod").is_none());
        assert!(s.kind("example.com/v1", "Widget").is_none());
        let volume = s.by_name("k8s.io.api.core.v1.Volume").unwrap();
        assert_eq!(&*volume.field(2).unwrap().name, "", "VolumeSource is inlined");
        let hook = s
            .by_name("k8s.io.api.admissionregistration.v1.ValidatingWebhookConfiguration")
            .unwrap();
        assert_eq!(&*hook.field(2).unwrap().name, "webhooks");
        let lease = s.by_name("k8s.io.api.coordination.v1.LeaseSpec").unwrap();
        assert_eq!(lease.field(3).unwrap().ty, Ty::MicroTime);
        let csr = s
            .by_name("k8s.io.api.certificates.v1.CertificateSigningRequestSpec")
            .unwrap();
        let Ty::Map(extra) = csr.field(6).unwrap().ty else {
            panic!("spec.extra")
        };
        assert_eq!(s.msg(extra).field(2).unwrap().ty, Ty::StrList);
        let rev = s.by_name("k8s.io.api.apps.v1.ControllerRevision").unwrap();
        assert_eq!(rev.field(2).unwrap().ty, Ty::RawExtension);
        let port = s.by_name("k8s.io.api.core.v1.ServicePort").unwrap();
        assert_eq!(port.field(4).unwrap().ty, Ty::IntOrString);
        for m in s.messages() {
            assert!(m.fields.windows(2).all(|w| w[0].num < w[1].num), "{}", m.name);
        }
    }

    /// Every group and version the vendored API has is mapped, core to `""`.
    #[test]
    fn every_group_version_is_mapped() {
        let s = get();
        assert_eq!(s.group_versions().count(), 58);
        for (g, v, p) in s.group_versions() {
            assert!(
                s.messages().any(|m| m.name.starts_with(&format!("{p}."))),
                "{g}/{v}: {p}"
            );
        }
        assert_eq!(s.package("", "v1"), Some("k8s.io.api.core.v1"));
    }
}
