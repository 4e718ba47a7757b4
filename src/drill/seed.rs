//! Kubernetes-shaped data for a sandbox etcd: `/registry/<resource>/<namespace>/<name>`
//! keys with values of realistic sizes, then history (updates, deletes) and a
//! compaction, so snapshots, diffs and restores have real work to do.

use anyhow::{Context, Result};
use etcd_client::{Client, CompactionOptions, PutOptions, Txn, TxnOp};
use serde::{Deserialize, Serialize};

/// The namespaces seeded.
pub const NAMESPACES: [&str; 7] = [
    "default",
    "kube-system",
    "kube-public",
    "kube-node-lease",
    "payments",
    "storefront",
    "monitoring",
];

/// Resource types, their share of the keys (per mille) and typical value size in bytes.
const RESOURCES: [(&str, u32, usize); 10] = [
    ("pods", 250, 4200),
    ("replicasets", 100, 2100),
    ("deployments", 80, 2600),
    ("services/specs", 50, 800),
    ("services/endpoints", 50, 650),
    ("configmaps", 100, 3000),
    ("secrets", 100, 1500),
    ("serviceaccounts", 70, 320),
    ("leases", 50, 360),
    ("events", 150, 720),
];

/// How much to seed.
#[derive(Debug, Clone, Copy)]
pub struct SeedSpec {
    /// Namespaced objects to create (namespaces themselves come on top).
    pub keys: usize,
    /// Multiplies every value size (1.0 = typical sizes).
    pub value_scale: f64,
}

/// What was seeded.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeedReport {
    /// Keys alive after seeding.
    pub live_keys: usize,
    /// Bytes of values written in the first pass.
    pub value_bytes: u64,
    /// Keys updated after the first pass.
    pub updated: usize,
    /// Keys deleted after the compaction.
    pub deleted: usize,
    /// The revision compacted at.
    pub compacted_at: i64,
    /// The store's revision at the end.
    pub revision: i64,
}

const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// A small deterministic PRNG, so every drill holds the same shape of data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % (n.max(1) as u64)).unwrap_or(0)
    }
}

/// The API version and kind the API server stores `resource` as.
fn kind_of(resource: &str) -> (&'static str, &'static str) {
    match resource {
        "pods" => ("v1", "Pod"),
        "replicasets" => ("apps/v1", "ReplicaSet"),
        "deployments" => ("apps/v1", "Deployment"),
        "services/specs" => ("v1", "Service"),
        "services/endpoints" => ("v1", "Endpoints"),
        "configmaps" => ("v1", "ConfigMap"),
        "secrets" => ("v1", "Secret"),
        "serviceaccounts" => ("v1", "ServiceAccount"),
        "leases" => ("coordination.k8s.io/v1", "Lease"),
        "events" => ("v1", "Event"),
        "namespaces" => ("v1", "Namespace"),
        _ => ("v1", "Unknown"),
    }
}

/// A JSON object of `resource`'s kind, `size` bytes long: its metadata, and
/// filler where its content would be (`data` for ConfigMaps and Secrets, so
/// `etcd-rescue get` shows a Secret's masked).
fn value(resource: &str, ns: &str, name: &str, size: usize, generation: u32, rng: &mut Rng) -> Vec<u8> {
    let (api_version, kind) = kind_of(resource);
    let namespace = if ns.is_empty() {
        String::new()
    } else {
        format!(",\"namespace\":\"{ns}\"")
    };
    let (body, tail) = match kind {
        "Secret" => ("\"type\":\"Opaque\",\"data\":{\"token\":\"", "\"}}"),
        "ConfigMap" => ("\"data\":{\"config\":\"", "\"}}"),
        _ => ("\"spec\":{\"note\":\"", "\"}}"),
    };
    let head = format!(
        "{{\"kind\":\"{kind}\",\"apiVersion\":\"{api_version}\",\"metadata\":{{\"name\":\"{name}\"{namespace},\"generation\":{generation},\"labels\":{{\"app\":\"{}\"}}}},{body}",
        name.split('-').next().unwrap_or(name)
    );
    let mut v = head.into_bytes();
    while v.len() + tail.len() < size {
        v.push(ALPHABET[rng.below(ALPHABET.len())]);
    }
    v.extend_from_slice(tail.as_bytes());
    v
}

struct Obj {
    key: String,
    kind: &'static str,
    ns: &'static str,
    name: String,
    size: usize,
}

fn plan(spec: SeedSpec, rng: &mut Rng) -> Vec<Obj> {
    let mut out = Vec::with_capacity(spec.keys);
    for (resource, share, size) in RESOURCES {
        let n = spec.keys * share as usize / 1000;
        for i in 0..n {
            let ns = NAMESPACES[rng.below(NAMESPACES.len())];
            let app = ["web", "api", "worker", "cache", "db", "ingress", "metrics"][rng.below(7)];
            let name = format!("{app}-{i}-{:05x}", rng.next() & 0xfffff);
            let jitter = 0.5 + f64::from(u32::try_from(rng.below(1000)).unwrap_or(0)) / 1000.0;
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                clippy::cast_precision_loss
            )]
            let size = ((size as f64) * jitter * spec.value_scale).max(64.0) as usize;
            out.push(Obj {
                key: format!("/registry/{resource}/{ns}/{name}"),
                kind: resource,
                ns,
                name,
                size,
            });
        }
    }
    out
}

async fn put_batches(client: &mut Client, ops: Vec<TxnOp>) -> Result<()> {
    // etcd's default --max-txn-ops is 128.
    let mut it = ops.into_iter().peekable();
    let mut set = tokio::task::JoinSet::new();
    while it.peek().is_some() {
        let batch: Vec<TxnOp> = it.by_ref().take(128).collect();
        let mut kv = client.kv_client();
        set.spawn(async move { kv.txn(Txn::new().and_then(batch)).await });
        if set.len() >= 4
            && let Some(r) = set.join_next().await
        {
            r.context("seeding task")?.context("seeding etcd")?;
        }
    }
    while let Some(r) = set.join_next().await {
        r.context("seeding task")?.context("seeding etcd")?;
    }
    Ok(())
}

/// Seeds `client`'s cluster: namespaces, objects, updates, a compaction, deletes.
pub async fn seed(client: &mut Client, spec: SeedSpec) -> Result<SeedReport> {
    let mut rng = Rng(0x5eed_cafe_f00d_d00d);
    let lease = client
        .lease_grant(3600, None)
        .await
        .context("granting the events lease")?
        .id();
    let mut ops: Vec<TxnOp> = NAMESPACES
        .iter()
        .map(|ns| {
            TxnOp::put(
                format!("/registry/namespaces/{ns}"),
                value("namespaces", "", ns, 400, 1, &mut rng),
                None,
            )
        })
        .collect();
    let objs = plan(spec, &mut rng);
    let mut value_bytes = 0u64;
    for o in &objs {
        let v = value(o.kind, o.ns, &o.name, o.size, 1, &mut rng);
        value_bytes += v.len() as u64;
        let opts = (o.kind == "events").then(|| PutOptions::new().with_lease(lease));
        ops.push(TxnOp::put(o.key.clone(), v, opts));
    }
    put_batches(client, ops).await?;
    // History: a fifth of pods, deployments and leases change.
    let updates: Vec<&Obj> = objs
        .iter()
        .filter(|o| matches!(o.kind, "pods" | "deployments" | "leases"))
        .filter(|_| rng.below(5) == 0)
        .collect();
    let ops = updates
        .iter()
        .map(|o| {
            TxnOp::put(
                o.key.clone(),
                value(o.kind, o.ns, &o.name, o.size, 2, &mut rng),
                None,
            )
        })
        .collect();
    put_batches(client, ops).await?;
    let rev = client
        .get("/registry/namespaces/default", None)
        .await?
        .header()
        .map_or(0, etcd_client::ResponseHeader::revision);
    let compacted_at = rev / 2;
    if compacted_at > 0 {
        client
            .compact(compacted_at, Some(CompactionOptions::new().with_physical()))
            .await
            .context("compacting")?;
    }
    // Deletes after the compaction, so the snapshot holds tombstones.
    let deletes: Vec<&Obj> = objs
        .iter()
        .filter(|o| matches!(o.kind, "pods" | "events"))
        .filter(|_| rng.below(20) == 0)
        .collect();
    let ops = deletes
        .iter()
        .map(|o| TxnOp::delete(o.key.clone(), None))
        .collect();
    put_batches(client, ops).await?;
    let resp = client
        .get(
            "/registry/",
            Some(etcd_client::GetOptions::new().with_prefix().with_count_only()),
        )
        .await?;
    Ok(SeedReport {
        live_keys: usize::try_from(resp.count()).unwrap_or(0),
        value_bytes,
        updated: updates.len(),
        deleted: deletes.len(),
        compacted_at,
        revision: resp.header().map_or(0, etcd_client::ResponseHeader::revision),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Every seeded value is a JSON object of its resource's kind, exactly
    /// the size asked; a Secret's filler is in `data`, where `get` masks it.
    #[test]
    fn values_are_objects_of_their_kind() {
        let mut rng = Rng(7);
        for (resource, _, size) in RESOURCES {
            let v = value(resource, "payments", "web-0-abcde", size, 1, &mut rng);
            assert_eq!(v.len(), size, "{resource}");
            let o: serde_json::Value = serde_json::from_slice(&v).unwrap();
            assert_eq!(o["kind"], kind_of(resource).1, "{resource}");
            assert_eq!(o["metadata"]["namespace"], "payments");
        }
        let s: serde_json::Value =
            serde_json::from_slice(&value("secrets", "a", "b", 300, 1, &mut rng)).unwrap();
        assert!(s["data"]["token"].as_str().unwrap().len() > 100);
        let ns: serde_json::Value =
            serde_json::from_slice(&value("namespaces", "", "prod", 400, 1, &mut rng)).unwrap();
        assert_eq!(ns["kind"], "Namespace");
        assert!(ns["metadata"].get("namespace").is_none(), "cluster-scoped");
    }
}
