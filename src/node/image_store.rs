//! The etcd image's own files in the container runtime's image store, found
//! through the runtime's metadata, never by searching every layer: any image
//! on the node (a workload's included) could ship a `usr/local/bin/etcdutl`,
//! and the tool runs what it finds as root.
//!
//! containerd: the image named in `etcd.yaml` (`v1/k8s.io/images/<ref>` in
//! `meta.db`), its manifest and config in the content store, the chain IDs of
//! its layers, their snapshots (`v1/k8s.io/snapshots/overlayfs/<chainID>`),
//! and the overlayfs snapshotter's own `metadata.db` for each snapshot's
//! directory. CRI-O (containers/storage): `overlay-images/images.json` names
//! the image's top layer, `overlay-layers/layers.json` its parents. The
//! layers are searched from the top, as the container would see them. Reads
//! only; bbolt files through the tool's own reader.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sha2::Digest;

use crate::root::Root;
use crate::snapshot::bbolt::Db;

const CONTAINERD: &str = "/var/lib/containerd";
const CRIO: &str = "/var/lib/containers/storage";

/// A tool found in the etcd image's layers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The file on this machine.
    pub path: PathBuf,
    /// Where it was found, as the plan says it (`the etcd image registry.k8s.io/etcd:3.5.15-0 in containerd's store`).
    pub found: String,
}

/// Why nothing usable was found in an image store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Missing {
    /// No store of that runtime on this node.
    NoStore,
    /// The store does not know the image, or its metadata could not be read.
    NoImage(String),
    /// The image's layers have no such file.
    NotInImage,
    /// A file is there but it is not safe to run as root.
    Unsafe(String),
}

/// `usr/local/bin/<tool>` in the layers of `image`, as containerd, then CRI-O, stores them.
pub fn find(root: &Root, image: &str, tool: &str) -> Result<Found, Vec<Missing>> {
    let mut why = Vec::new();
    for (store, layers) in [
        ("containerd's store", containerd_layers(root, image)),
        ("CRI-O's store", crio_layers(root, image)),
    ] {
        match layers {
            Ok(dirs) => match in_layers(&dirs, tool) {
                Ok(path) => {
                    return Ok(Found {
                        path,
                        found: format!("the etcd image {image} in {store}"),
                    });
                }
                Err(m) => why.push(m),
            },
            Err(m) => why.push(m),
        }
    }
    Err(why)
}

/// The first layer (from the top) holding `usr/local/bin/<tool>`, when it is safe to run.
fn in_layers(dirs: &[PathBuf], tool: &str) -> Result<PathBuf, Missing> {
    for d in dirs.iter().rev() {
        let p = d.join("usr/local/bin").join(tool);
        if std::fs::symlink_metadata(&p).is_ok() {
            return safe(d, &p).map(|()| p);
        }
    }
    Err(Missing::NotInImage)
}

/// Root-owned, not group- or world-writable, a regular file, no symlink on the way from its layer.
fn safe(layer: &Path, p: &Path) -> Result<(), Missing> {
    let mut at = layer.to_path_buf();
    let rel = p.strip_prefix(layer).unwrap_or(p);
    let mut check = vec![at.clone()];
    for c in rel.components() {
        at.push(c);
        check.push(at.clone());
    }
    for q in check {
        let md =
            std::fs::symlink_metadata(&q).map_err(|e| Missing::Unsafe(format!("{}: {e}", q.display())))?;
        if md.file_type().is_symlink() {
            return Err(Missing::Unsafe(format!("{} is a symlink", q.display())));
        }
        if md.uid() != 0 || md.mode() & 0o022 != 0 {
            return Err(Missing::Unsafe(format!(
                "{} is owned by uid {} with mode {:o}: only a root-owned file that only root may change is run as root",
                q.display(),
                md.uid(),
                md.mode() & 0o7777
            )));
        }
    }
    if !std::fs::symlink_metadata(p).is_ok_and(|m| m.is_file()) {
        return Err(Missing::Unsafe(format!("{} is not a regular file", p.display())));
    }
    Ok(())
}

/// An image reference as containerd stores it (`etcd:3.5` → `docker.io/library/etcd:3.5`).
pub fn normalize_ref(image: &str) -> String {
    let (name, digest) = image.split_once('@').map_or((image, None), |(n, d)| (n, Some(d)));
    let first = name.split('/').next().unwrap_or("");
    let has_domain =
        name.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let mut full = match (has_domain, name.contains('/')) {
        (true, _) => name.to_string(),
        (false, true) => format!("docker.io/{name}"),
        (false, false) => format!("docker.io/library/{name}"),
    };
    let last = full.rsplit('/').next().unwrap_or("");
    if digest.is_none() && !last.contains(':') {
        full.push_str(":latest");
    }
    if let Some(d) = digest {
        full.push('@');
        full.push_str(d);
    }
    full
}

/// The platform's architecture as OCI names it.
fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn bucket(db: &Db, path: &[&[u8]]) -> Option<BTreeMap<Vec<u8>, Vec<u8>>> {
    let mut out = BTreeMap::new();
    let found = db
        .for_each(path, &mut |k: &[u8], v: &[u8], is_bucket: bool| {
            if !is_bucket {
                out.insert(k.to_vec(), v.to_vec());
            }
            std::ops::ControlFlow::Continue(())
        })
        .ok()?;
    found.then_some(out)
}

fn blob(store: &Path, digest: &str) -> Result<serde_json::Value, Missing> {
    let hex = digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| Missing::NoImage(format!("unexpected digest {digest:?}")))?;
    let path = store
        .join("io.containerd.content.v1.content/blobs/sha256")
        .join(hex);
    let bytes = std::fs::read(&path).map_err(|e| Missing::NoImage(format!("{}: {e}", path.display())))?;
    if crate::hex::hex(&sha2::Sha256::digest(&bytes)) != hex {
        return Err(Missing::NoImage(format!(
            "{} does not match its digest",
            path.display()
        )));
    }
    serde_json::from_slice(&bytes).map_err(|e| Missing::NoImage(format!("{}: {e}", path.display())))
}

/// The chain IDs of layers with these diff IDs (the OCI image spec's rule).
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => format!(
                "sha256:{}",
                crate::hex::hex(&sha2::Sha256::digest(format!("{prev} {d}")))
            ),
        };
        out.push(next);
    }
    out
}

/// The etcd image's layer dirs in containerd's overlayfs store, bottom first.
fn containerd_layers(root: &Root, image: &str) -> Result<Vec<PathBuf>, Missing> {
    let store = root.host(CONTAINERD);
    let meta_path = store.join("io.containerd.metadata.v1.bolt/meta.db");
    if !meta_path.is_file() {
        return Err(Missing::NoStore);
    }
    let meta = Db::open(&meta_path).map_err(|e| Missing::NoImage(format!("{}: {e}", meta_path.display())))?;
    let wanted = normalize_ref(image);
    let target = [image.to_string(), wanted.clone()]
        .iter()
        .find_map(|r| bucket(&meta, &[b"v1", b"k8s.io", b"images", r.as_bytes(), b"target"]))
        .ok_or_else(|| Missing::NoImage(format!("containerd does not know the image {wanted}")))?;
    let digest = target
        .get(b"digest".as_slice())
        .map(|d| String::from_utf8_lossy(d).into_owned())
        .ok_or_else(|| Missing::NoImage(format!("the image {wanted} has no target digest")))?;
    let mut doc = blob(&store, &digest)?;
    if let Some(list) = doc.get("manifests").and_then(|m| m.as_array()) {
        let pick = list
            .iter()
            .find(|m| m["platform"]["os"] == "linux" && m["platform"]["architecture"] == oci_arch())
            .or_else(|| list.first())
            .and_then(|m| m["digest"].as_str())
            .ok_or_else(|| Missing::NoImage(format!("the image {wanted}'s index lists no manifest")))?
            .to_string();
        doc = blob(&store, &pick)?;
    }
    let config = doc["config"]["digest"]
        .as_str()
        .ok_or_else(|| Missing::NoImage(format!("the image {wanted}'s manifest has no config")))?
        .to_string();
    let config = blob(&store, &config)?;
    let diff_ids: Vec<String> = config["rootfs"]["diff_ids"]
        .as_array()
        .map(|a| a.iter().filter_map(|d| d.as_str().map(String::from)).collect())
        .unwrap_or_default();
    let snap_path = store.join("io.containerd.snapshotter.v1.overlayfs/metadata.db");
    let snaps =
        Db::open(&snap_path).map_err(|e| Missing::NoImage(format!("{}: {e}", snap_path.display())))?;
    let mut dirs = Vec::new();
    for chain in chain_ids(&diff_ids) {
        let name = bucket(
            &meta,
            &[b"v1", b"k8s.io", b"snapshots", b"overlayfs", chain.as_bytes()],
        )
        .and_then(|b| b.get(b"name".as_slice()).cloned())
        .ok_or_else(|| Missing::NoImage(format!("the layer {chain} of {wanted} is not unpacked")))?;
        let id = bucket(&snaps, &[b"v1", b"snapshots", &name])
            .and_then(|b| {
                b.get(b"id".as_slice())
                    .and_then(|v| crate::wire::varint(v, &mut 0).ok())
            })
            .ok_or_else(|| {
                Missing::NoImage(format!(
                    "the overlayfs snapshotter does not know {}",
                    String::from_utf8_lossy(&name)
                ))
            })?;
        dirs.push(
            store
                .join("io.containerd.snapshotter.v1.overlayfs/snapshots")
                .join(id.to_string())
                .join("fs"),
        );
    }
    Ok(dirs)
}

/// The etcd image's layer dirs in CRI-O's containers/storage, bottom first.
fn crio_layers(root: &Root, image: &str) -> Result<Vec<PathBuf>, Missing> {
    let store = root.host(CRIO);
    let images = store.join("overlay-images/images.json");
    if !images.is_file() {
        return Err(Missing::NoStore);
    }
    let read = |p: &Path| -> Result<serde_json::Value, Missing> {
        let b = std::fs::read(p).map_err(|e| Missing::NoImage(format!("{}: {e}", p.display())))?;
        serde_json::from_slice(&b).map_err(|e| Missing::NoImage(format!("{}: {e}", p.display())))
    };
    let wanted = normalize_ref(image);
    let all = read(&images)?;
    let top = all
        .as_array()
        .into_iter()
        .flatten()
        .find(|i| {
            i["names"]
                .as_array()
                .is_some_and(|n| n.iter().any(|n| *n == image || *n == wanted.as_str()))
        })
        .and_then(|i| i["layer"].as_str())
        .ok_or_else(|| Missing::NoImage(format!("CRI-O's store does not know the image {wanted}")))?
        .to_string();
    let layers = read(&store.join("overlay-layers/layers.json"))?;
    let parents: BTreeMap<String, Option<String>> = layers
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| {
            Some((
                l["id"].as_str()?.to_string(),
                l["parent"].as_str().map(String::from),
            ))
        })
        .collect();
    let mut chain = Vec::new();
    let mut at = Some(top);
    while let Some(id) = at {
        if chain.len() > 256 || id.contains('/') || id.starts_with('.') {
            return Err(Missing::NoImage(format!(
                "CRI-O's layer list for {wanted} does not make sense"
            )));
        }
        at = parents.get(&id).cloned().flatten();
        chain.push(store.join("overlay").join(&id).join("diff"));
    }
    chain.reverse();
    Ok(chain)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// References are completed as containerd stores them.
    #[test]
    fn refs_normalize() {
        assert_eq!(
            normalize_ref("registry.k8s.io/etcd:3.5.15-0"),
            "registry.k8s.io/etcd:3.5.15-0"
        );
        assert_eq!(normalize_ref("etcd:3.5"), "docker.io/library/etcd:3.5");
        assert_eq!(normalize_ref("bitnami/etcd"), "docker.io/bitnami/etcd:latest");
        assert_eq!(normalize_ref("localhost:5000/etcd"), "localhost:5000/etcd:latest");
    }

    /// Chain IDs follow the OCI rule: the first is the diff ID, then sha256("prev next").
    #[test]
    fn chain_ids_follow_the_spec() {
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        let c = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(c[0], a);
        assert_eq!(
            c[1],
            format!(
                "sha256:{}",
                crate::hex::hex(&sha2::Sha256::digest(format!("{a} {b}")))
            )
        );
    }

    /// A file that is not root's, is writable by others, or sits behind a symlink is not run.
    #[test]
    fn only_root_owned_files_are_taken() {
        let d = tempfile::tempdir().unwrap();
        let layer = d.path().join("fs");
        std::fs::create_dir_all(layer.join("usr/local/bin")).unwrap();
        let tool = layer.join("usr/local/bin/etcdutl");
        std::fs::write(&tool, "x").unwrap();
        crate::host::fs::set_mode(&tool, 0o755).unwrap();
        let dirs = vec![layer.clone()];
        if nix::unistd::geteuid().is_root() {
            assert_eq!(in_layers(&dirs, "etcdutl"), Ok(tool.clone()));
            crate::host::fs::set_mode(&tool, 0o777).unwrap();
            assert!(matches!(in_layers(&dirs, "etcdutl"), Err(Missing::Unsafe(_))));
            crate::host::fs::remove_regular(&tool).unwrap();
            std::os::unix::fs::symlink("/bin/true", &tool).unwrap();
            assert!(matches!(in_layers(&dirs, "etcdutl"), Err(Missing::Unsafe(_))));
        } else {
            assert!(matches!(in_layers(&dirs, "etcdutl"), Err(Missing::Unsafe(_))));
        }
        assert_eq!(in_layers(&dirs, "etcdctl"), Err(Missing::NotInImage));
    }
}
