//! The failure scenarios a drill can run, and the record of what one broke
//! and what recovering means (kept in `drill.json`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::ValueEnum;
use serde::{Deserialize, Serialize};

/// A way the sandbox breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// A namespace and everything in it deleted after the last backup.
    DeletedNamespace,
    /// etcd's database damaged: etcd crash-loops.
    CorruptDataDir,
    /// The newest backup is corrupt; the one before it is good.
    BadBackup,
    /// A leftover etcd.yaml.bak makes kubelet run a second etcd on the same data.
    StrayManifest,
    /// Three members; two lose their data: no quorum, the API is down (HA).
    LostQuorum,
    /// The namespace deleted, and the data dir's filesystem nearly full: the restore's pre-flight refuses (root: a tmpfs).
    FullDisk,
    /// One of the above, not said which: find out what broke.
    Random,
}

impl Scenario {
    /// Every scenario a drill can run (not `random`, which picks one of these).
    pub const ALL: [Scenario; 6] = [
        Scenario::DeletedNamespace,
        Scenario::CorruptDataDir,
        Scenario::BadBackup,
        Scenario::StrayManifest,
        Scenario::LostQuorum,
        Scenario::FullDisk,
    ];

    /// The size of the filesystem the scenario gives etcd's data dir: room
    /// for etcd and its 64 MiB WAL segment, the filler, then a restore beside
    /// the old data once the filler is gone.
    pub fn data_fs_size(self) -> Option<u64> {
        (self == Scenario::FullDisk).then_some(256 << 20)
    }

    /// The members the sandbox needs for it (`random`: one, and it picks among the one-member scenarios).
    pub fn members(self) -> usize {
        if self == Scenario::LostQuorum { 3 } else { 1 }
    }

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::DeletedNamespace => "deleted-namespace",
            Scenario::CorruptDataDir => "corrupt-data-dir",
            Scenario::BadBackup => "bad-backup",
            Scenario::StrayManifest => "stray-manifest",
            Scenario::LostQuorum => "lost-quorum",
            Scenario::FullDisk => "full-disk",
            Scenario::Random => "random",
        }
    }

    /// What happens, for `drill --list` (and the trainee, unless random).
    pub fn story(self) -> &'static str {
        match self {
            Scenario::DeletedNamespace => {
                "Someone ran `kubectl delete namespace payments` after the last backup: the namespace and everything in it is gone. Bring it back from the backup (`etcd-rescue snapshot diff` shows what the restore returns)."
            }
            Scenario::CorruptDataDir => {
                "etcd's database on the node is damaged and etcd crash-loops: the API is down. Restore the member from the last good snapshot."
            }
            Scenario::BadBackup => {
                "The payments namespace was deleted, and the newest backup is corrupt (a flipped byte). Notice it, and restore from the previous good one."
            }
            Scenario::StrayManifest => {
                "The payments namespace was deleted, and someone left etcd.yaml.bak in the manifests dir: kubelet runs a second etcd on the same data. See it (`etcd-rescue node` flags it), deal with it, then restore."
            }
            Scenario::LostQuorum => {
                "A three-member cluster: two members' data is destroyed and their etcd crash-loops; the last one has no quorum and the API is down. Restore all three members from one snapshot."
            }
            Scenario::FullDisk => {
                "The payments namespace was deleted, and the filesystem of etcd's data dir is nearly full (someone left a big copy there). The restore's pre-flight refuses: find what fills it, make room, then restore."
            }
            Scenario::Random => {
                "One of the one-member scenarios, not said which: find out what broke, then recover."
            }
        }
    }

    /// What `drill check` looks at, in the trainee's words.
    pub fn recovered_means(self) -> &'static str {
        match self {
            Scenario::DeletedNamespace | Scenario::BadBackup => {
                "every key of the payments namespace is back as the good backup holds it (its value and revisions: restored, not put back by hand), etcd answers with a leader, the members are right, the old data dir is kept"
            }
            Scenario::CorruptDataDir => {
                "etcd answers with a leader and holds the last good snapshot's keys with their values and revisions, the members are right, the damaged data dir is kept"
            }
            Scenario::StrayManifest => {
                "no stray etcd manifest in the manifests dir, every key of the payments namespace is back, etcd answers with a leader, the old data dir is kept"
            }
            Scenario::LostQuorum => {
                "every member answers with a leader, three members in one cluster, the last good snapshot's keys there, every old data dir kept"
            }
            Scenario::FullDisk => {
                "every key of the payments namespace is back, etcd answers with a leader, the old data dir is kept"
            }
            Scenario::Random => "what the scenario it picked means",
        }
    }
}

/// What a scenario broke and what recovering means, kept in `drill.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Broken {
    /// The scenario run (never `random`: the one it picked).
    pub scenario: Scenario,
    /// `random` picked it: the trainee was not told.
    #[serde(default)]
    pub hidden: bool,
    /// When the sandbox was broken (RFC 3339): the recovery clock starts there.
    pub at: String,
    /// Keys that must be there again.
    #[serde(default)]
    pub keys_back: Vec<String>,
    /// Keys under `/registry/` the good snapshot holds (`corrupt-data-dir`).
    #[serde(default)]
    pub live_keys: u64,
    /// The good snapshot.
    pub good_snapshot: Option<PathBuf>,
    /// The corrupt one (`bad-backup`).
    #[serde(default)]
    pub bad_snapshot: Option<PathBuf>,
    /// The stray manifest (`stray-manifest`).
    #[serde(default)]
    pub stray: Option<PathBuf>,
    /// What fills the data dir's filesystem (`full-disk`).
    #[serde(default)]
    pub filler: Option<PathBuf>,
    /// Each key that must be back (`keys_back`, or every key under `/registry/`
    /// for the scenarios that count `live_keys`) as the good snapshot holds it:
    /// [`super::scenario::grade`] counts a key back only with this value and these revisions.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub expected: BTreeMap<String, Expected>,
}

/// A key as the drill seeded it, recorded when the sandbox was broken (nothing
/// writes between the snapshot and the break, so the good snapshot holds the
/// same).
///
/// Why revisions: a restore from a snapshot brings every key back with the
/// `create_revision` and `mod_revision` it had in the snapshot (etcd assigns
/// them when a key is written, and `snapshot restore`, with or without
/// `--bump-revision`, keeps them), while any write through etcd's API, by
/// `etcdctl put` or a program, gives the key a new revision above the break's.
/// So matching revisions say the cluster is the restored one, not hand-patched,
/// and unlike a restore run's journal (a file the trainee can edit, or a run
/// from any snapshot) they cannot be faked through the API. The value's sha256
/// says the content is the seeded one (`junk` put back under each
/// deleted key was graded recovered).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Expected {
    /// The value's sha256, hex.
    pub sha256: String,
    /// The revision that created the key.
    pub create_revision: i64,
    /// The revision of its last change.
    pub mod_revision: i64,
}

impl Expected {
    /// What `kv` holds now.
    pub fn of(kv: &etcd_client::KeyValue) -> Expected {
        use sha2::Digest;
        Expected {
            sha256: crate::hex::hex(&sha2::Sha256::digest(kv.value())),
            create_revision: kv.create_revision(),
            mod_revision: kv.mod_revision(),
        }
    }
}
