//! The restored cluster's members: decided from this member, the
//! snapshot's members, etcd.yaml's `--initial-cluster` and what was typed.

use std::collections::BTreeMap;

use anyhow::Result;

use super::{Options, refuse};
use crate::node::Node;

/// The cluster a restore brings up, decided from this member, the snapshot's
/// members, etcd.yaml's `--initial-cluster` and what was typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    /// `--initial-cluster` for the restore.
    pub initial_cluster: String,
    /// The other members (name, peer URL).
    pub other_members: Vec<(String, String)>,
    /// What the operator must know.
    pub warnings: Vec<String>,
}

/// Decides the restored cluster's membership, or refuses (exit 2): a
/// snapshot from another cluster (this member absent, or at other peer URLs)
/// needs `--force`; a planned cluster without this member is refused.
/// Typed `--initial-cluster` wins; else the snapshot's members with this
/// node's own peer URLs; else etcd.yaml's.
pub fn membership(
    name: &str,
    own_peer: &[String],
    snap_members: &[(String, Vec<String>)],
    manifest_cluster: &[(String, String)],
    typed: Option<&str>,
    force: bool,
) -> Result<Membership> {
    let mut warnings = Vec::new();
    let from_snapshot: Vec<(String, String)> = snap_members
        .iter()
        .filter(|(n, _)| !n.is_empty())
        .flat_map(|(n, urls)| urls.iter().map(move |u| (n.clone(), u.clone())))
        .collect();
    let initial_cluster = if let Some(ic) = typed {
        ic.to_string()
    } else if !from_snapshot.is_empty() {
        // The snapshot's members, with this node's own peer URLs from its manifest.
        let mut pairs: Vec<(String, String)> =
            from_snapshot.iter().filter(|(n, _)| n != name).cloned().collect();
        if from_snapshot.iter().any(|(n, _)| n == name) {
            pairs.extend(own_peer.iter().map(|u| (name.to_string(), u.clone())));
        }
        pairs.sort();
        join_cluster(&pairs)
    } else {
        join_cluster(manifest_cluster)
    };
    let planned = crate::node::manifest::parse_initial_cluster(&initial_cluster).map_err(|e| {
        refuse(
            format!("--initial-cluster {initial_cluster:?} is not name=URL,...: {e:#}"),
            "give it as name1=https://10.0.0.1:2380,name2=https://10.0.0.2:2380",
        )
    })?;
    if !planned.iter().any(|e| e.name == name) {
        return Err(refuse(
            format!(
                "this node's etcd --name {name} is not among the members of the planned --initial-cluster {initial_cluster}"
            ),
            "pass --initial-cluster listing this member (its name and peer URL from etcd.yaml)",
        ));
    }
    if !from_snapshot.is_empty() && !from_snapshot.iter().any(|(n, _)| n == name) && !force {
        return Err(refuse(
            format!(
                "the snapshot's members ({}) do not include this node's etcd {name}: is it from another cluster?",
                from_snapshot
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "restore a snapshot of this cluster, or pass --force (with --initial-cluster) if you mean to",
        ));
    }
    if let Some((n, urls)) = snap_members.iter().find(|(n, _)| n == name) {
        let mut theirs = urls.clone();
        theirs.sort();
        let mut ours = own_peer.to_vec();
        ours.sort();
        if theirs != ours && !force {
            return Err(refuse(
                format!(
                    "the snapshot's member {n} has peer URLs {} but this node's etcd.yaml says {}: is the snapshot from another cluster or node?",
                    theirs.join(","),
                    ours.join(",")
                ),
                "restore a snapshot of this cluster, or pass --force if the node's address changed on purpose",
            ));
        }
    }
    let mut sorted_manifest = manifest_cluster.to_vec();
    sorted_manifest.sort();
    let mut sorted_planned: Vec<(String, String)> = planned
        .iter()
        .map(|e| (e.name.clone(), e.peer_url.clone()))
        .collect();
    sorted_planned.sort();
    if sorted_manifest != sorted_planned {
        warnings.push(format!(
            "the planned --initial-cluster {initial_cluster} differs from etcd.yaml's {}",
            join_cluster(manifest_cluster)
        ));
    }
    let other_members: Vec<(String, String)> =
        sorted_planned.into_iter().filter(|(n, _)| n != name).collect();
    if !other_members.is_empty() && typed.is_none() {
        warnings.push(format!(
            "{} other members are planned: this member waits for them (restore each from this snapshot). If they are gone for good, pass --initial-cluster {name}={} to start a one-member cluster and add members later",
            other_members.len(),
            own_peer.first().map_or("PEER_URL", String::as_str)
        ));
    }
    Ok(Membership {
        initial_cluster,
        other_members,
        warnings,
    })
}

fn join_cluster(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(n, u)| format!("{n}={u}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Members and their peer URLs as a map (for comparisons in tests and verify).
pub fn cluster_map(ic: &str) -> BTreeMap<String, Vec<String>> {
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for e in crate::node::manifest::parse_initial_cluster(ic).unwrap_or_default() {
        m.entry(e.name).or_default().push(e.peer_url);
    }
    m
}

/// The cluster the restore brings up and its token, from this node and the
/// snapshot's members (name, peer URLs); the membership's warnings, and that
/// typed endpoints replace the member's own, go to `warnings`.
pub(super) fn plan_cluster(
    node: &Node,
    opts: &Options,
    snap: &[(String, Vec<String>)],
    snapshot_sha256: &str,
    warnings: &mut Vec<String>,
) -> Result<(Membership, String)> {
    let own_peer = &node.etcd.initial_advertise_peer_urls;
    let manifest_cluster: Vec<(String, String)> = node
        .etcd
        .initial_cluster
        .iter()
        .map(|e| (e.name.clone(), e.peer_url.clone()))
        .collect();
    let mut m = membership(
        &node.etcd.name,
        own_peer,
        snap,
        &manifest_cluster,
        opts.initial_cluster.as_deref(),
        opts.force,
    )?;
    warnings.append(&mut m.warnings);
    if !opts.conn.endpoints.is_empty() {
        warnings.push(format!(
            "the endpoints {} (--endpoints or ETCDCTL_ENDPOINTS) replace this member's own for the live checks and verify",
            opts.conn.endpoints.join(",")
        ));
    }
    let token = opts
        .initial_cluster_token
        .clone()
        .unwrap_or_else(|| format!("etcd-rescue-{}", &snapshot_sha256[..16]));
    Ok((m, token))
}
