//! Member and cluster IDs as etcd derives them (`membership.computeMemberId`,
//! `RaftCluster.genID`), and the cluster a restore bootstraps: the members of
//! `--initial-cluster` with their peer URLs checked and sorted as etcd's
//! `types.NewURLs` and `ServerConfig.VerifyBootstrap` do.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Result, bail};
use sha1::{Digest, Sha1};

/// A member's ID: the first 8 bytes (big-endian) of the sha1 of its peer URLs
/// sorted and joined with nothing between them, then the cluster token.
pub fn member_id(peer_urls: &[String], token: &str) -> u64 {
    let mut urls: Vec<&str> = peer_urls.iter().map(String::as_str).collect();
    urls.sort_unstable();
    let mut h = Sha1::new();
    for u in urls {
        h.update(u.as_bytes());
    }
    h.update(token.as_bytes());
    first_u64(&h.finalize())
}

/// The cluster's ID: the first 8 bytes (big-endian) of the sha1 of the member
/// IDs sorted ascending, each as 8 big-endian bytes.
pub fn cluster_id(member_ids: &[u64]) -> u64 {
    let mut ids = member_ids.to_vec();
    ids.sort_unstable();
    let mut h = Sha1::new();
    for id in ids {
        h.update(id.to_be_bytes());
    }
    first_u64(&h.finalize())
}

fn first_u64(digest: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(b)
}

/// One member of the bootstrapped cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its ID (from its peer URLs and the token).
    pub id: u64,
    /// Its name in `--initial-cluster`.
    pub name: String,
    /// Its peer URLs, sorted as etcd sorts them.
    pub peer_urls: Vec<String>,
}

/// The cluster a restore writes: its members sorted by ID (as etcd lists them),
/// its ID, and which member this data dir is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    /// The members, ascending by ID.
    pub members: Vec<Member>,
    /// The cluster ID.
    pub id: u64,
    /// The index in `members` of the member named by `--name`.
    pub local: usize,
}

/// The cluster `etcdutl snapshot restore --name <name> --initial-cluster <..>
/// --initial-cluster-token <token>` bootstraps, with etcd's refusals: a URL
/// that is not `http(s)://` or `unix(s)://` with `host:port` and no path, a
/// URL given twice, a name missing from the cluster, two members with one ID.
/// Entries with the same name are one member with all their URLs (as etcd's
/// `types.NewURLsMap` reads `a=u1,a=u2`).
pub fn bootstrap(name: &str, initial_cluster: &[(String, Vec<String>)], token: &str) -> Result<Cluster> {
    let mut by_name: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for (n, urls) in initial_cluster {
        for u in urls {
            let u = check_url(u)?;
            if !seen.insert(u.clone()) {
                bail!("the initial cluster has the URL {u} twice: give each peer URL to one member once");
            }
            by_name.entry(n.as_str()).or_default().push(u);
        }
    }
    if by_name.is_empty() {
        bail!("the initial cluster is empty: give every member as name=peer-url");
    }
    if !by_name.contains_key(name) {
        bail!("the member name {name:?} is not in the initial cluster: use one of its names with --name");
    }
    let mut members: Vec<Member> = Vec::new();
    for (n, mut urls) in by_name {
        urls.sort();
        let id = member_id(&urls, token);
        if id == 0 {
            bail!("the member {n:?} gets the ID 0, which etcd cannot use: change its URLs or the token");
        }
        if members.iter().any(|m| m.id == id) {
            bail!("two members of the initial cluster get the ID {id:x}: give them different peer URLs");
        }
        members.push(Member {
            id,
            name: n.to_string(),
            peer_urls: urls,
        });
    }
    members.sort_by_key(|m| m.id);
    let id = cluster_id(&members.iter().map(|m| m.id).collect::<Vec<_>>());
    let local = members.iter().position(|m| m.name == name).unwrap_or_default();
    Ok(Cluster { members, id, local })
}

/// A peer URL as etcd accepts it (trimmed): scheme http, https, unix or unixs,
/// a `host:port` authority, no path. etcd then keeps Go's `url.URL.String()`
/// of it, which for such a URL is the text itself once the scheme is lowercase
/// and nothing needs escaping; anything else is refused here rather than
/// guessed.
fn check_url(raw: &str) -> Result<String> {
    let u = raw.trim();
    let Some((scheme, rest)) = u.split_once("://") else {
        bail!("the peer URL {u:?} has no scheme: write it as http://host:port");
    };
    if !["http", "https", "unix", "unixs"].contains(&scheme) {
        bail!("the peer URL {u:?} must start with http://, https://, unix:// or unixs://");
    }
    let host = rest.split(['?', '#']).next().unwrap_or_default();
    if host.contains('/') {
        bail!("the peer URL {u:?} must not have a path: give only scheme://host:port");
    }
    let port_ok = host
        .rsplit_once(':')
        .is_some_and(|(h, p)| !h.is_empty() && !p.contains(']') && p.chars().all(|c| c.is_ascii_digit()));
    if !port_ok {
        bail!("the peer URL {u:?} does not have the form host:port");
    }
    let plain = |c: char| c.is_ascii_alphanumeric() || "-._~:[]".contains(c);
    if !host.chars().all(plain) || host.len() != rest.len() {
        bail!("the peer URL {u:?} has characters etcd would rewrite: give a plain scheme://host:port");
    }
    Ok(u.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(ToString::to_string).collect()
    }

    /// IDs printed by etcdutl 3.5.1: `etcdutl snapshot restore s.db --data-dir r
    /// --name m1 --initial-cluster m1=http://10.0.0.1:2380 --initial-cluster-token tok
    /// --initial-advertise-peer-urls http://10.0.0.1:2380` logs
    /// `"cluster-id": "29212d9326a3e0dc"` and `"added-peer-id": "98521e8c6c48c6da"`
    /// (etcdctl 3.4.23 logs the same two).
    #[test]
    fn one_member_ids_match_etcdutl() {
        let m = member_id(&s(&["http://10.0.0.1:2380"]), "tok");
        assert_eq!(m, 0x9852_1e8c_6c48_c6da);
        assert_eq!(cluster_id(&[m]), 0x2921_2d93_26a3_e0dc);
    }

    /// etcd's default single member (`--initial-cluster default=http://localhost:2380`,
    /// token `etcd-cluster`) is 8e9e05c52164694d in cluster cdf818194e3a8c32, as every
    /// fresh `etcd` prints.
    #[test]
    fn etcd_default_member_ids() {
        let m = member_id(&s(&["http://localhost:2380"]), "etcd-cluster");
        assert_eq!(m, 0x8e9e_05c5_2164_694d);
        assert_eq!(cluster_id(&[m]), 0xcdf8_1819_4e3a_8c32);
    }

    /// Three members from etcdutl 3.5.1 (`--initial-cluster
    /// a=http://10.0.0.1:2380,b=http://10.0.0.2:2380,c=http://10.0.0.3:2380
    /// --initial-cluster-token tok3 --name a`): see `three_member_ids_match_etcdutl`'s
    /// constants, from its `added member` log lines (`"cluster-id": "65e3bbc62b1298a8"`).
    #[test]
    fn three_member_ids_match_etcdutl() {
        let ids: Vec<u64> = [
            "http://10.0.0.1:2380",
            "http://10.0.0.2:2380",
            "http://10.0.0.3:2380",
        ]
        .iter()
        .map(|u| member_id(&s(&[u]), "tok3"))
        .collect();
        assert_eq!(ids, THREE_IDS);
        assert_eq!(cluster_id(&ids), THREE_CLUSTER);
        let mut rev = ids.clone();
        rev.reverse();
        assert_eq!(cluster_id(&rev), THREE_CLUSTER, "order does not matter");
    }

    /// a, b, c in that order; etcdutl logs them sorted by ID (b, c, a).
    const THREE_IDS: [u64; 3] = [
        0xba3d_8e58_5d4e_3172,
        0x2af8_15ba_216b_5750,
        0x64a1_2af4_69d3_c35e,
    ];
    const THREE_CLUSTER: u64 = 0x65e3_bbc6_2b12_98a8;

    #[test]
    fn url_order_does_not_change_the_id() {
        let a = member_id(&s(&["http://b:1", "http://a:1"]), "t");
        let b = member_id(&s(&["http://a:1", "http://b:1"]), "t");
        assert_eq!(a, b);
    }

    #[test]
    fn bootstrap_sorts_members_and_refuses_what_etcd_refuses() {
        let ic = vec![
            ("a".to_string(), s(&["http://10.0.0.1:2380"])),
            ("b".to_string(), s(&["http://10.0.0.2:2380"])),
        ];
        let c = bootstrap("b", &ic, "t").unwrap();
        assert!(c.members[0].id < c.members[1].id);
        assert_eq!(c.members[c.local].name, "b");
        assert!(bootstrap("z", &ic, "t").is_err());
        let dup = vec![
            ("a".to_string(), s(&["http://10.0.0.1:2380"])),
            ("b".to_string(), s(&["http://10.0.0.1:2380"])),
        ];
        assert!(bootstrap("a", &dup, "t").is_err());
        for bad in [
            "10.0.0.1:2380",
            "ftp://h:1",
            "http://h:1/p",
            "http://h",
            "http://h:x",
        ] {
            let ic = vec![("a".to_string(), s(&[bad]))];
            assert!(bootstrap("a", &ic, "t").is_err(), "{bad}");
        }
        let two = vec![
            ("a".to_string(), s(&["http://h:2"])),
            ("a".to_string(), s(&["http://h:1"])),
        ];
        let c = bootstrap("a", &two, "t").unwrap();
        assert_eq!(c.members[0].peer_urls, s(&["http://h:1", "http://h:2"]));
    }
}
