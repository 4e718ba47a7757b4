//! The restore tool: where it is found (`--etcdutl`, PATH, the node, the
//! etcd image), what it is, and whether it can restore this snapshot.

use std::path::{Path, PathBuf};

use anyhow::Result;

use super::{Options, RestoreTool, ToolChoice, ToolKind, refuse};
use crate::host::etcdutl;
use crate::root::Root;

/// Finds the restore tool as an operator would: `--etcdutl`, PATH, the
/// node's own `/usr/local/bin`, the etcd image named in `etcd.yaml` as the
/// runtime unpacked it (found through the runtime's metadata), then etcdctl
/// (3.4/3.5 can restore too). With `probe` false (`--dry-run`), nothing but
/// `--etcdutl` and PATH is run: the version is then the image tag's.
pub fn find_tool(
    root: &Root,
    typed: Option<&Path>,
    image: &str,
    image_version: Option<&str>,
    probe: bool,
) -> Result<RestoreTool> {
    let mut candidates: Vec<(PathBuf, String, bool)> = Vec::new();
    let mut not_found = Vec::new();
    if let Some(p) = typed {
        if !p.is_file() {
            return Err(refuse(
                format!("--etcdutl {} does not exist", p.display()),
                "give the path of an etcdutl binary, or leave --etcdutl out to search PATH and the node",
            ));
        }
        candidates.push((p.to_path_buf(), "--etcdutl".into(), true));
    } else {
        if let Some(p) = etcdutl::which("etcdutl") {
            candidates.push((p, "PATH".into(), true));
        }
        for d in ["/usr/local/bin", "/usr/bin"] {
            let p = root.host(d).join("etcdutl");
            if root.dir() != Path::new("/") && p.is_file() {
                candidates.push((p, "the node's ".to_string() + d, false));
            }
        }
        match crate::node::image_store::find(root, image, "etcdutl") {
            Ok(f) => candidates.push((f.path, f.found, false)),
            Err(why) => not_found.extend(why.into_iter().filter_map(|m| match m {
                crate::node::image_store::Missing::NoStore => None,
                crate::node::image_store::Missing::NotInImage => {
                    Some(format!("the image {image} has no usr/local/bin/etcdutl"))
                }
                crate::node::image_store::Missing::NoImage(w)
                | crate::node::image_store::Missing::Unsafe(w) => Some(w),
            })),
        }
        if let Some(p) = etcdutl::which("etcdctl") {
            candidates.push((p, "PATH (etcdctl fallback)".into(), true));
        }
        if root.dir() != Path::new("/") {
            let p = root.host("/usr/local/bin/etcdctl");
            if p.is_file() {
                candidates.push((p, "the node's /usr/local/bin (etcdctl fallback)".into(), false));
            }
        }
    }
    let Some((path, found, on_path)) = candidates.into_iter().next() else {
        return Err(refuse(
            format!(
                "no etcdutl or etcdctl found (looked at PATH, the node's /usr/local/bin and the etcd image {image} in the runtime's store{})",
                if not_found.is_empty() {
                    String::new()
                } else {
                    format!(": {}", not_found.join("; "))
                }
            ),
            format!(
                "install etcdutl {} (from the etcd release tarball) and pass --etcdutl PATH",
                image_version.unwrap_or("of the cluster's version")
            ),
        ));
    };
    let name = if path
        .file_name()
        .is_some_and(|n| n.to_string_lossy().contains("etcdctl"))
    {
        ToolKind::Etcdctl
    } else {
        ToolKind::Etcdutl
    };
    if !probe && !on_path {
        return Ok(RestoreTool {
            name,
            path,
            version: image_version.unwrap_or("unknown").to_string(),
            found: format!("{found}; not run by --dry-run, version from the image tag"),
            bump_revision: false,
            probed: false,
        });
    }
    let version = etcdutl::version_of(&path).ok_or_else(|| {
        refuse(
            format!("{} does not say its version", path.display()),
            "check that it is an etcdutl or etcdctl binary that runs on this machine",
        )
    })?;
    let help = etcdutl::restore_help(&path).unwrap_or_default();
    Ok(RestoreTool {
        name,
        path,
        version,
        found,
        bump_revision: help.contains("--bump-revision") && help.contains("--mark-compacted"),
        probed: true,
    })
}

/// The restore tool `--restore-tool` asks for: etcdutl (or etcdctl 3.4)
/// found and fit for this snapshot, else (`auto`) the native restore, with
/// the reason in its `found`.
pub(super) fn choose(
    root: &Root,
    opts: &Options,
    image: &str,
    image_version: Option<&str>,
    cluster_version: &str,
    warnings: &mut Vec<String>,
) -> Result<RestoreTool> {
    if opts.restore_tool == ToolChoice::Native {
        return Ok(native("--restore-tool native".into()));
    }
    let found = find_tool(root, opts.etcdutl.as_deref(), image, image_version, !opts.dry_run)
        .and_then(|t| check_tool(&t, cluster_version).map(|()| t));
    match found {
        Ok(t) => Ok(t),
        Err(e) if opts.restore_tool == ToolChoice::Auto && opts.etcdutl.is_none() => {
            let why = e
                .downcast_ref::<crate::exit::Fail>()
                .map_or_else(|| format!("{e:#}"), |f| f.message.clone());
            warnings.push(format!(
                "{why}: this program restores the snapshot itself (the native restore); pass --restore-tool etcdutl with --etcdutl PATH to use etcd's own"
            ));
            Ok(native(format!("{why}: the native restore")))
        }
        Err(e) => Err(e),
    }
}

/// The native restore: this very program, `snapshot restore`.
fn native(found: String) -> RestoreTool {
    RestoreTool {
        name: ToolKind::Native,
        path: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("etcd-rescue")),
        version: env!("CARGO_PKG_VERSION").to_string(),
        found,
        bump_revision: true,
        probed: true,
    }
}

/// Refuses a tool older than the snapshot's etcd (or an etcdctl of another
/// minor version), and says what the plan does not know of it or it lacks.
pub(super) fn check_tool(tool: &RestoreTool, cluster_version: &str) -> Result<()> {
    if let (Some(have), Some(need)) = (minor(&tool.version), minor(cluster_version)) {
        if have < need {
            return Err(refuse(
                format!(
                    "{} {} is older than the snapshot's etcd {cluster_version}",
                    tool.name, tool.version
                ),
                format!(
                    "use an etcdutl {}.{} or newer (pass --etcdutl PATH)",
                    need.0, need.1
                ),
            ));
        }
        if tool.name == ToolKind::Etcdctl && have != need {
            return Err(refuse(
                format!(
                    "only etcdctl {} was found, of another minor version than the snapshot's etcd {cluster_version}",
                    tool.version
                ),
                format!("install etcdutl {}.{} and pass --etcdutl PATH", need.0, need.1),
            ));
        }
    }
    Ok(())
}

fn minor(v: &str) -> Option<(u32, u32)> {
    let mut it = v.trim_start_matches('v').split('.');
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}
