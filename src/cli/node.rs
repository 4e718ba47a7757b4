//! What the tool finds on this node: `node` (manifests, data dirs, the
//! client connection, tools) and `certs` (expiry, signatures, SANs and who
//! can read keys and backups), each with its table.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;

use super::{Cli, Format, human_bytes, print};
use crate::exit::{self, Code};
use crate::node::NodeReport;
use crate::root::Root;

/// `node`: what is discovered about this control-plane node.
pub(super) fn node(cli: &Cli, root: &Root, write_out: Format, cri_endpoint: Option<&Path>) -> Result<Code> {
    let report = NodeReport::discover(root, cri_endpoint, &cli.conn.args())?;
    print(write_out, &report, node_table)?;
    Ok(Code::Done)
}

/// `certs`: exit 1 on a critical finding or a certificate expiring within `warn_days`.
pub(super) fn certs(root: &Root, warn_days: u64, backup_dir: &[PathBuf], write_out: Format) -> Result<Code> {
    let dirs = crate::tui::picker::backup_dirs(root, backup_dir);
    let mut r = crate::node::certs::check(
        root,
        Duration::from_secs(warn_days.saturating_mul(86_400)),
        &dirs,
        std::time::SystemTime::now(),
    );
    if let Some((bundle, taken)) = crate::backup::bundle::newest_in(&dirs) {
        r.not_in_bundle = crate::node::certs::not_in_bundle(root, &bundle, taken);
    }
    print(write_out, &r, certs_table)?;
    if !r.ok {
        let critical = r
            .findings()
            .filter(|f| f.severity == crate::node::certs::Severity::Critical)
            .count();
        let expiring = r
            .findings()
            .filter(|f| f.kind == crate::node::certs::Kind::Expiring)
            .count();
        return Err(exit::Fail::problem(
            format!("{critical} critical finding(s), {expiring} certificate(s) expiring within {warn_days} days"),
            "renew with `kubeadm certs renew all` on this node, then restart the static pods (move each manifest out of the manifests dir and back) and update admin kubeconfigs; fix the permissions listed (chmod 600, chown root:root)",
        )
        .into());
    }
    Ok(Code::Done)
}

fn certs_table(r: &crate::node::certs::Report) -> String {
    use crate::node::certs::{Cert, residual};
    let when = |c: &Cert| {
        c.expires.as_deref().map_or_else(
            || "-".to_string(),
            |e| e.get(..16).unwrap_or(e).replace('T', " ") + " UTC",
        )
    };
    let left = |c: &Cert| c.residual_seconds.map_or_else(|| "-".to_string(), residual);
    let marks = |c: &Cert| {
        c.problems
            .iter()
            .map(|p| p.message.as_str())
            .collect::<Vec<_>>()
            .join("; ")
    };
    // One row: the CA column only for leaf certificates.
    let row = |t: &mut String, c: &Cert, with_ca: bool| {
        let ca = if with_ca {
            format!("{:<22} ", c.ca)
        } else {
            String::new()
        };
        let _ = writeln!(
            t,
            "{:<26} {:<25} {:<14} {ca}{:<19} {}",
            c.name,
            if c.present { when(c) } else { "!MISSING!".into() },
            left(c),
            if c.externally_managed { "yes" } else { "no" },
            marks(c)
        );
    };
    let mut t = format!(
        "{:<26} {:<25} {:<14} {:<22} {:<19} PROBLEMS\n",
        "CERTIFICATE", "EXPIRES", "RESIDUAL TIME", "CERTIFICATE AUTHORITY", "EXTERNALLY MANAGED"
    );
    for c in &r.certificates {
        row(&mut t, c, true);
    }
    let _ = writeln!(
        t,
        "\n{:<26} {:<25} {:<14} {:<19} PROBLEMS",
        "CERTIFICATE AUTHORITY", "EXPIRES", "RESIDUAL TIME", "EXTERNALLY MANAGED"
    );
    for c in &r.authorities {
        row(&mut t, c, false);
    }
    if !r.keys.is_empty() {
        t.push_str("\nKEY PAIRS\n");
        for k in &r.keys {
            let severity = format!("{:?}", k.finding.severity).to_lowercase();
            let _ = writeln!(t, "  {severity:<8} {}", k.finding.message);
        }
    }
    if !r.not_in_bundle.is_empty() {
        t.push_str("\nNOT IN ANY NODE BUNDLE\n");
        for n in &r.not_in_bundle {
            let _ = writeln!(
                t,
                "  warning  {} issued {}, after the newest node bundle {} ({}): take `etcd-rescue backup --with-node-files` so a rebuilt node gets it",
                n.path.display(),
                n.not_before,
                n.bundle.display(),
                n.bundle_taken
            );
        }
    }
    if r.permissions.is_empty() {
        t.push_str("\npermissions: keys, kubeconfigs, pki dirs and snapshots are private\n");
    } else {
        t.push_str("\nPERMISSIONS\n");
        for p in &r.permissions {
            let _ = writeln!(
                t,
                "  {:<8} {} (mode {}, uid {}): {}",
                format!("{:?}", p.finding.severity).to_lowercase(),
                p.path.display(),
                p.mode,
                p.uid,
                p.finding.message
            );
        }
    }
    t
}

fn opt<T: std::fmt::Display>(v: Option<&T>) -> String {
    v.map_or_else(|| "-".to_string(), ToString::to_string)
}

fn path(v: Option<&PathBuf>) -> String {
    v.map_or_else(|| "-".to_string(), |p| p.display().to_string())
}

fn node_table(report: &NodeReport) -> String {
    let node = &report.node;
    let e = &node.etcd;
    let mut s = String::new();
    let mut kv = |k: &str, v: String| {
        let _ = writeln!(s, "  {k:<22}{v}");
    };
    kv("root", report.root.display().to_string());
    kv("kubelet config", path(node.kubelet.config.as_ref()));
    kv(
        "static pod path",
        node.kubelet.static_pod_path.display().to_string(),
    );
    kv("kubelet healthz", node.kubelet.healthz.clone());
    kv(
        "CRI endpoint",
        node.kubelet.cri.as_ref().map_or_else(
            || "none found".to_string(),
            |c| {
                format!(
                    "{} ({}, {})",
                    c.socket.display(),
                    serde_json::to_value(c.source)
                        .map(|v| v.as_str().unwrap_or("").to_string())
                        .unwrap_or_default(),
                    if c.exists { "present" } else { "missing" }
                )
            },
        ),
    );
    let mut out = format!(
        "Node\n{s}\nManifests ({})\n",
        node.kubelet.static_pod_path.display()
    );
    for m in &node.manifests {
        let what = if m.loaded_by_kubelet {
            opt(m.component.as_ref())
        } else {
            "ignored by kubelet".into()
        };
        let _ = writeln!(out, "  {:<30} {what}", m.file);
        if let Some(d) = &m.danger {
            let _ = writeln!(out, "  {:<30} DANGER: {d}", "");
        }
    }
    let _ = write!(out, "\netcd member {}\n{}", e.name, etcd_member(report));
    for (title, d) in [
        ("Data dir", Some(&report.data_dir)),
        ("WAL dir", report.wal_dir.as_ref()),
    ] {
        let Some(d) = d else { continue };
        let _ = writeln!(out, "\n{title} on the host");
        let _ = writeln!(out, "  {:<22}{}", "real path", d.real_path.display());
        if !d.exists {
            let _ = writeln!(out, "  {:<22}missing", "exists");
            continue;
        }
        let _ = writeln!(out, "  {:<22}{}", "mount point", d.mount_point);
        let _ = writeln!(
            out,
            "  {:<22}{}:{} {}",
            "owner, mode",
            opt(d.uid.as_ref()),
            opt(d.gid.as_ref()),
            opt(d.mode.as_ref())
        );
        let _ = writeln!(out, "  {:<22}{}", "size", human_bytes(d.size_bytes));
        let _ = writeln!(
            out,
            "  {:<22}{}, {} inodes",
            "free on filesystem",
            human_bytes(d.fs_free_bytes),
            d.fs_free_inodes
        );
    }
    let c = &node.connection;
    let _ = writeln!(out, "\nClient connection");
    let _ = writeln!(out, "  {:<22}{}", "endpoints", c.endpoints.join(","));
    for (k, v) in [("CA", &c.cacert), ("cert", &c.cert), ("key", &c.key)] {
        let _ = writeln!(out, "  {k:<22}{}", path(v.as_ref()));
    }
    let _ = writeln!(out, "\nTools on PATH");
    if report.tools.is_empty() {
        let _ = writeln!(out, "  none (etcdutl or etcdctl is needed to restore)");
    }
    for t in &report.tools {
        let _ = writeln!(
            out,
            "  {:<22}{} ({})",
            t.name,
            t.path.display(),
            opt(t.version.as_ref())
        );
    }
    out
}

/// The `etcd member` section of the node table: etcd.yaml's member, and the
/// cluster its WAL belongs to.
fn etcd_member(report: &NodeReport) -> String {
    let e = &report.node.etcd;
    let mut s = String::new();
    let mut kv = |k: &str, v: String| {
        let _ = writeln!(s, "  {k:<22}{v}");
    };
    let mapped = |m: &crate::node::manifest::MappedPath| {
        if m.container == m.host {
            format!("{} (volume {})", m.host.display(), m.volume)
        } else {
            format!(
                "{} -> host {} (volume {})",
                m.container.display(),
                m.host.display(),
                m.volume
            )
        }
    };
    kv(
        "image",
        format!("{} (etcd {})", e.image, opt(e.etcd_version.as_ref())),
    );
    kv("data dir", mapped(&e.data_dir));
    kv(
        "cluster id",
        report
            .cluster_id
            .clone()
            .unwrap_or_else(|| "- (no WAL in the data dir)".into()),
    );
    kv("wal dir", e.wal_dir.as_ref().map_or("-".into(), mapped));
    for (k, v) in [
        ("cert file", &e.cert_file),
        ("key file", &e.key_file),
        ("trusted CA", &e.trusted_ca_file),
        ("peer cert file", &e.peer_cert_file),
        ("peer key file", &e.peer_key_file),
        ("peer trusted CA", &e.peer_trusted_ca_file),
    ] {
        kv(k, v.as_ref().map_or("-".into(), mapped));
    }
    kv("client cert auth", e.client_cert_auth.to_string());
    kv(
        "initial cluster",
        e.initial_cluster
            .iter()
            .map(|c| format!("{}={}", c.name, c.peer_url))
            .collect::<Vec<_>>()
            .join(","),
    );
    kv("cluster state", e.initial_cluster_state.clone());
    kv("peer URLs", e.initial_advertise_peer_urls.join(","));
    kv("listen client URLs", e.listen_client_urls.join(","));
    kv("advertise client", e.advertise_client_urls.join(","));
    kv("quota backend bytes", opt(e.quota_backend_bytes.as_ref()));
    kv(
        "run as",
        format!("{}:{}", opt(e.run_as_user.as_ref()), opt(e.run_as_group.as_ref())),
    );
    s
}
