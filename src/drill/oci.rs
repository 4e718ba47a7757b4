//! OCI image archives built by hand, for a container runtime that cannot pull.
//!
//! No image registry is reachable from a drill machine, so the drill builds
//! its images locally: each layer is an uncompressed ustar archive written
//! here, and the images go into one OCI image layout (`oci-layout`,
//! `index.json`, `blobs/sha256/...`) packed as a tar, which
//! `ctr images import` reads. Every timestamp is zero, so the same inputs give
//! the same digests and a second import stores nothing new.

use crate::hex::hex;
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::json;
use sha2::{Digest, Sha256};

/// The annotation containerd names an imported image by.
pub const IMAGE_NAME: &str = "io.containerd.image.name";
/// PATH in every drill image, as in the usual base images.
pub const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

const BLOCK: usize = 512;

/// A minimal ustar writer: directories, regular files and symlinks, owned by root.
pub struct TarWriter<W: Write> {
    out: W,
}

impl<W: Write> TarWriter<W> {
    /// A writer appending entries to `out`.
    pub fn new(out: W) -> Self {
        TarWriter { out }
    }

    /// Adds a directory (`path` without a trailing slash).
    pub fn dir(&mut self, path: &str, mode: u32) -> io::Result<()> {
        self.header(&format!("{path}/"), mode, 0, b'5', "")
    }

    /// Adds a regular file holding `data`.
    pub fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> io::Result<()> {
        self.header(path, mode, data.len() as u64, b'0', "")?;
        self.out.write_all(data)?;
        self.pad(data.len())
    }

    /// Adds a symbolic link to `target`.
    pub fn symlink(&mut self, path: &str, target: &str) -> io::Result<()> {
        self.header(path, 0o777, 0, b'2', target)
    }

    /// Writes the end-of-archive marker and returns the output.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.write_all(&[0u8; BLOCK * 2])?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn pad(&mut self, len: usize) -> io::Result<()> {
        let rest = len % BLOCK;
        if rest != 0 {
            self.out.write_all(&[0u8; BLOCK][..BLOCK - rest])?;
        }
        Ok(())
    }

    fn header(&mut self, path: &str, mode: u32, size: u64, kind: u8, link: &str) -> io::Result<()> {
        let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("{what}: {path}"));
        let (prefix, name) = split_name(path).ok_or_else(|| invalid("path too long for ustar"))?;
        if link.len() > 100 {
            return Err(invalid("link target too long for ustar"));
        }
        let mut h = [0u8; BLOCK];
        put(&mut h[0..100], name.as_bytes());
        put(&mut h[100..108], format!("{mode:07o}\0").as_bytes());
        put(&mut h[108..116], b"0000000\0");
        put(&mut h[116..124], b"0000000\0");
        put(&mut h[124..136], format!("{size:011o}\0").as_bytes());
        put(&mut h[136..148], b"00000000000\0");
        h[148..156].fill(b' ');
        h[156] = kind;
        put(&mut h[157..257], link.as_bytes());
        put(&mut h[257..263], b"ustar\0");
        put(&mut h[263..265], b"00");
        put(&mut h[265..297], b"root");
        put(&mut h[297..329], b"root");
        put(&mut h[345..500], prefix.as_bytes());
        let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
        put(&mut h[148..156], format!("{sum:06o}\0 ").as_bytes());
        self.out.write_all(&h)
    }
}

fn put(field: &mut [u8], value: &[u8]) {
    field[..value.len()].copy_from_slice(value);
}

/// Splits `path` into ustar's prefix (at most 155 bytes) and name (at most 100).
fn split_name(path: &str) -> Option<(&str, &str)> {
    if path.len() <= 100 {
        return Some(("", path));
    }
    let body = path.strip_suffix('/').unwrap_or(path);
    path.match_indices('/')
        .map(|(i, _)| i)
        .filter(|&i| i < body.len())
        .find(|&i| i <= 155 && path.len() - i - 1 <= 100)
        .map(|i| (&path[..i], &path[i + 1..]))
}

/// `sha256:<hex>` of `data`.
pub fn digest(data: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(data)))
}

/// One uncompressed layer: a tar of files, directories and links.
pub struct Layer {
    tar: TarWriter<Vec<u8>>,
    dirs: std::collections::BTreeSet<String>,
}

impl Default for Layer {
    fn default() -> Self {
        Layer::new()
    }
}

impl Layer {
    /// An empty layer.
    pub fn new() -> Layer {
        Layer {
            tar: TarWriter::new(Vec::new()),
            dirs: std::collections::BTreeSet::new(),
        }
    }

    /// Adds the parent directories of `path` not added yet (mode 0755).
    fn parents(&mut self, path: &str) -> io::Result<()> {
        let mut at = 0;
        while let Some(i) = path[at..].find('/') {
            let dir = &path[..at + i];
            if self.dirs.insert(dir.to_string()) {
                self.tar.dir(dir, 0o755)?;
            }
            at += i + 1;
        }
        Ok(())
    }

    /// Adds a file at `path` (relative, like `usr/local/bin/etcd`) holding `data`.
    pub fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> io::Result<&mut Layer> {
        self.parents(path)?;
        self.tar.file(path, mode, data)?;
        Ok(self)
    }

    /// Adds a copy of the host file `from` at `path`, with its permission bits.
    pub fn copy(&mut self, path: &str, from: &Path) -> Result<&mut Layer> {
        use std::os::unix::fs::PermissionsExt;
        let data = std::fs::read(from).with_context(|| format!("reading {}", from.display()))?;
        let mode = std::fs::metadata(from)?.permissions().mode() & 0o7777;
        self.file(path, mode, &data)?;
        Ok(self)
    }

    /// Adds a symbolic link at `path` to `target`.
    pub fn symlink(&mut self, path: &str, target: &str) -> io::Result<&mut Layer> {
        self.parents(path)?;
        self.tar.symlink(path, target)?;
        Ok(self)
    }

    /// The finished layer blob.
    pub fn finish(self) -> io::Result<Blob> {
        Ok(Blob::new(self.tar.finish()?))
    }
}

/// Content with its digest.
#[derive(Clone)]
pub struct Blob {
    /// The bytes.
    pub data: std::sync::Arc<Vec<u8>>,
    /// `sha256:<hex>`.
    pub digest: String,
}

impl Blob {
    /// Wraps `data`, computing its digest.
    pub fn new(data: Vec<u8>) -> Blob {
        Blob {
            digest: digest(&data),
            data: std::sync::Arc::new(data),
        }
    }

    fn descriptor(&self, media_type: &str) -> serde_json::Value {
        json!({"mediaType": media_type, "digest": self.digest, "size": self.data.len()})
    }
}

/// One image: its full name, its layers (bottom first) and how it starts.
pub struct Image {
    /// The reference containerd stores it under, e.g. `registry.k8s.io/etcd:3.5.1-0`.
    pub name: String,
    /// The layers, bottom first.
    pub layers: Vec<Blob>,
    /// The image's entrypoint (empty for none).
    pub entrypoint: Vec<String>,
    /// The image's default arguments.
    pub cmd: Vec<String>,
}

/// The OCI architecture name of this machine.
pub fn architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Writes `images` as one OCI image layout tar at `path`.
pub fn write_archive(path: &Path, images: &[Image]) -> Result<()> {
    const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    let mut blobs: BTreeMap<String, Blob> = BTreeMap::new();
    let mut index = Vec::new();
    for img in images {
        let config = json!({
            "architecture": architecture(),
            "os": "linux",
            "created": "1970-01-01T00:00:00Z",
            "config": {
                "Env": [PATH_ENV],
                "Entrypoint": img.entrypoint,
                "Cmd": img.cmd,
                "WorkingDir": "/",
            },
            "rootfs": {
                "type": "layers",
                "diff_ids": img.layers.iter().map(|l| l.digest.clone()).collect::<Vec<_>>(),
            },
            "history": img.layers.iter().map(|_| json!({"created_by": "etcd-rescue drill"})).collect::<Vec<_>>(),
        });
        let config = Blob::new(serde_json::to_vec(&config)?);
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": config.descriptor("application/vnd.oci.image.config.v1+json"),
            "layers": img.layers.iter()
                .map(|l| l.descriptor("application/vnd.oci.image.layer.v1.tar"))
                .collect::<Vec<_>>(),
        });
        let manifest = Blob::new(serde_json::to_vec(&manifest)?);
        let tag = img.name.rsplit_once(':').map_or("latest", |(_, t)| t);
        let mut desc = manifest.descriptor(MANIFEST);
        desc["annotations"] = json!({
            IMAGE_NAME: img.name,
            "org.opencontainers.image.ref.name": tag,
        });
        desc["platform"] = json!({"architecture": architecture(), "os": "linux"});
        index.push(desc);
        for b in img.layers.iter().cloned().chain([config, manifest]) {
            blobs.insert(b.digest.clone(), b);
        }
    }
    let index = json!({"schemaVersion": 2, "manifests": index});
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut tar = TarWriter::new(io::BufWriter::new(file));
    let write = |tar: &mut TarWriter<_>| -> io::Result<()> {
        tar.file("oci-layout", 0o644, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        tar.dir("blobs", 0o755)?;
        tar.dir("blobs/sha256", 0o755)?;
        for (d, b) in &blobs {
            let hex = d.trim_start_matches("sha256:");
            tar.file(&format!("blobs/sha256/{hex}"), 0o644, &b.data)?;
        }
        tar.file("index.json", 0o644, &serde_json::to_vec(&index)?)?;
        Ok(())
    };
    write(&mut tar)
        .and_then(|()| tar.finish().map(drop))
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GNU tar reads what the writer writes: names, long names, modes, links and contents.
    #[test]
    fn gnu_tar_reads_the_archive() {
        let dir = tempfile::tempdir().unwrap();
        let long = format!("a/{}/{}/file", "d".repeat(60), "e".repeat(60));
        let mut layer = Layer::new();
        layer
            .file("usr/local/bin/tool", 0o755, b"#!/bin/sh\necho hi\n")
            .unwrap()
            .symlink("bin/sh", "busybox")
            .unwrap()
            .file(&long, 0o644, &[7u8; 1000])
            .unwrap();
        let blob = layer.finish().unwrap();
        let tar = dir.path().join("layer.tar");
        std::fs::write(&tar, &*blob.data).unwrap();
        let out = std::process::Command::new("tar")
            .args(["-tvf"])
            .arg(&tar)
            .output()
            .unwrap();
        let listing = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(
            listing.contains("-rwxr-xr-x root/root        18 1970-01-01 00:00 usr/local/bin/tool"),
            "{listing}"
        );
        assert!(listing.contains("bin/sh -> busybox"), "{listing}");
        assert!(listing.contains(&long), "{listing}");
        let x = std::process::Command::new("tar")
            .arg("-xf")
            .arg(&tar)
            .arg("-C")
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(x.success());
        assert_eq!(std::fs::read(dir.path().join(&long)).unwrap(), vec![7u8; 1000]);
    }

    /// A path that fits neither ustar field is refused, not truncated.
    #[test]
    fn overlong_name_is_refused() {
        let mut t = TarWriter::new(Vec::new());
        assert!(t.file(&"x".repeat(300), 0o644, b"").is_err());
    }

    /// The archive is an OCI image layout naming each image for containerd, and is reproducible.
    #[test]
    fn archive_names_images_and_is_reproducible() {
        let dir = tempfile::tempdir().unwrap();
        let mut layer = Layer::new();
        layer.file("bin/x", 0o755, b"x").unwrap();
        let layer = layer.finish().unwrap();
        let images = || {
            vec![
                Image {
                    name: "registry.k8s.io/a:1".into(),
                    layers: vec![layer.clone()],
                    entrypoint: vec!["/bin/x".into()],
                    cmd: vec![],
                },
                Image {
                    name: "registry.k8s.io/b:2".into(),
                    layers: vec![layer.clone()],
                    entrypoint: vec![],
                    cmd: vec![],
                },
            ]
        };
        let (a, b) = (dir.path().join("a.tar"), dir.path().join("b.tar"));
        write_archive(&a, &images()).unwrap();
        write_archive(&b, &images()).unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        let x = std::process::Command::new("tar")
            .arg("-xf")
            .arg(&a)
            .arg("-C")
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(x.success());
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("index.json")).unwrap()).unwrap();
        let names: Vec<&str> = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["annotations"][IMAGE_NAME].as_str().unwrap())
            .collect();
        assert_eq!(names, ["registry.k8s.io/a:1", "registry.k8s.io/b:2"]);
        let hex = layer.digest.trim_start_matches("sha256:");
        assert!(dir.path().join("blobs/sha256").join(hex).is_file());
    }
}
