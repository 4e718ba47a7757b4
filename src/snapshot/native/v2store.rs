//! The member JSON etcd marshals (`json.Marshal(*Member)`: the ConfChange
//! contexts in the WAL and, in 3.5, the db's `members` bucket) and the v2
//! store etcd saves in the `.snap` file after a restore: a fresh
//! `v2store.New("/0", "/1")` into which `RaftCluster.AddMember` created
//! `/0/members/<hex id>/raftAttributes` for each member in ID order, saved with
//! `store.Save()` (Go's `encoding/json` of the store, map keys sorted, the
//! watcher hub's 1000-slot event queue included).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::ids::{Cluster, Member};

/// The zero `time.Time` Go prints for a permanent node.
const PERMANENT: &str = "0001-01-01T00:00:00Z";
/// The capacity of the v2 store's event history (`newWatchHub(1000)`).
const HISTORY: usize = 1000;

/// A string as Go's `encoding/json` writes it: `<`, `>`, `&`, U+2028 and U+2029
/// escaped as `\u….`, control characters other than `\n`, `\r`, `\t` as `\u00XX`.
pub fn go_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn go_strings(v: &[String]) -> String {
    let items: Vec<String> = v.iter().map(|s| go_string(s)).collect();
    format!("[{}]", items.join(","))
}

/// `json.Marshal(member)`: `{"id":<decimal>,"peerURLs":[…],"name":"…"}` (the
/// name left out when empty, `isLearner` and `clientURLs` always left out for a
/// restored voter that never started).
pub fn member_json(m: &Member) -> String {
    let mut s = format!("{{\"id\":{},\"peerURLs\":{}", m.id, go_strings(&m.peer_urls));
    if !m.name.is_empty() {
        let _ = write!(s, ",\"name\":{}", go_string(&m.name));
    }
    s.push('}');
    s
}

/// `json.Marshal(member.RaftAttributes)`: `{"peerURLs":[…]}`.
pub fn raft_attributes_json(m: &Member) -> String {
    format!("{{\"peerURLs\":{}}}", go_strings(&m.peer_urls))
}

/// One v2 store node as Go marshals `node` (Path, CreatedIndex, ModifiedIndex,
/// ExpireTime, Value, Children; `Children` null for a key, a sorted object for a dir).
enum Node {
    Dir(u64, BTreeMap<String, Node>),
    Key(u64, String),
}

fn write_node(out: &mut String, path: &str, node: &Node) {
    let (index, value) = match node {
        Node::Dir(i, _) => (*i, ""),
        Node::Key(i, v) => (*i, v.as_str()),
    };
    let _ = write!(
        out,
        "{{\"Path\":{},\"CreatedIndex\":{index},\"ModifiedIndex\":{index},\"ExpireTime\":\"{PERMANENT}\",\"Value\":{},\"Children\":",
        go_string(path),
        go_string(value)
    );
    match node {
        Node::Key(..) => out.push_str("null"),
        Node::Dir(_, children) => {
            out.push('{');
            for (i, (name, child)) in children.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let child_path = if path == "/" {
                    format!("/{name}")
                } else {
                    format!("{path}/{name}")
                };
                let _ = write!(out, "{}:", go_string(name));
                write_node(out, &child_path, child);
            }
            out.push('}');
        }
    }
    out.push('}');
}

/// `store.Save()` of the v2 store a restore builds: the members' raftAttributes
/// under `/0/members`, created at indexes 1..=n in ID order, `/1` empty.
pub fn store_json(cluster: &Cluster) -> String {
    let n = cluster.members.len();
    let mut members = BTreeMap::new();
    let mut events = Vec::with_capacity(n);
    for (i, m) in cluster.members.iter().enumerate() {
        let index = i as u64 + 1;
        let id = format!("{:x}", m.id);
        let attrs = raft_attributes_json(m);
        events.push(format!(
            "{{\"action\":\"create\",\"node\":{{\"key\":{},\"value\":{},\"modifiedIndex\":{index},\"createdIndex\":{index}}}}}",
            go_string(&format!("/0/members/{id}/raftAttributes")),
            go_string(&attrs)
        ));
        let leaf = BTreeMap::from([("raftAttributes".to_string(), Node::Key(index, attrs))]);
        members.insert(id, Node::Dir(index, leaf));
    }
    let zero = BTreeMap::from([("members".to_string(), Node::Dir(1, members))]);
    let root = Node::Dir(
        0,
        BTreeMap::from([
            ("0".to_string(), Node::Dir(0, zero)),
            ("1".to_string(), Node::Dir(0, BTreeMap::new())),
        ]),
    );
    let mut out = String::from("{\"Root\":");
    write_node(&mut out, "/", &root);
    let slots: Vec<String> = events
        .into_iter()
        .chain(std::iter::repeat_n("null".to_string(), HISTORY.saturating_sub(n)))
        .collect();
    let _ = write!(
        out,
        ",\"WatcherHub\":{{\"EventHistory\":{{\"Queue\":{{\"Events\":[{}],\"Size\":{n},\"Front\":0,\"Back\":{n},\"Capacity\":{HISTORY}}},\"StartIndex\":1,\"LastIndex\":{n}}}}}",
        slots.join(",")
    );
    let _ = write!(
        out,
        ",\"CurrentIndex\":{n},\"Stats\":{{\"getsSuccess\":0,\"getsFail\":0,\"setsSuccess\":0,\"setsFail\":0,\"deleteSuccess\":0,\"deleteFail\":0,\"updateSuccess\":0,\"updateFail\":0,\"createSuccess\":{n},\"createFail\":0,\"compareAndSwapSuccess\":0,\"compareAndSwapFail\":0,\"compareAndDeleteSuccess\":0,\"compareAndDeleteFail\":0,\"expireCount\":0,\"watchers\":0}},\"CurrentVersion\":2}}"
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one() -> Cluster {
        Cluster {
            members: vec![Member {
                id: 0x9852_1e8c_6c48_c6da,
                name: "m1".into(),
                peer_urls: vec!["http://10.0.0.1:2380".into()],
            }],
            id: 0x2921_2d93_26a3_e0dc,
            local: 0,
        }
    }

    /// The context etcdutl 3.5.1 and etcdctl 3.4.23 put in the ConfChange (read
    /// from the WAL of the restore in `ids::tests::one_member_ids_match_etcdutl`).
    #[test]
    fn member_json_is_gos() {
        assert_eq!(
            member_json(&one().members[0]),
            r#"{"id":10975868830316283610,"peerURLs":["http://10.0.0.1:2380"],"name":"m1"}"#
        );
        assert_eq!(
            go_string("a<b>&\"\\\n\u{1}"),
            r#""a\u003cb\u003e\u0026\"\\\n\u0001""#
        );
    }

    /// The start of that restore's `.snap` JSON, byte for byte, and the whole
    /// of it as a JSON value of the right shape.
    #[test]
    fn store_json_is_etcds() {
        let s = store_json(&one());
        assert!(s.starts_with(
            r#"{"Root":{"Path":"/","CreatedIndex":0,"ModifiedIndex":0,"ExpireTime":"0001-01-01T00:00:00Z","Value":"","Children":{"0":{"Path":"/0","CreatedIndex":0,"ModifiedIndex":0,"ExpireTime":"0001-01-01T00:00:00Z","Value":"","Children":{"members":{"Path":"/0/members","CreatedIndex":1,"ModifiedIndex":1,"ExpireTime":"0001-01-01T00:00:00Z","Value":"","Children":{"98521e8c6c48c6da":{"Path":"/0/members/98521e8c6c48c6da","CreatedIndex":1,"ModifiedIndex":1,"ExpireTime":"0001-01-01T00:00:00Z","Value":"","Children":{"raftAttributes":{"Path":"/0/members/98521e8c6c48c6da/raftAttributes","CreatedIndex":1,"ModifiedIndex":1,"ExpireTime":"0001-01-01T00:00:00Z","Value":"{\"peerURLs\":[\"http://10.0.0.1:2380\"]}","Children":null}}}}}}},"1":{"Path":"/1","CreatedIndex":0,"ModifiedIndex":0,"ExpireTime":"0001-01-01T00:00:00Z","Value":"","Children":{}}}},"WatcherHub":{"EventHistory":{"Queue":{"Events":[{"action":"create","node":{"key":"/0/members/98521e8c6c48c6da/raftAttributes","value":"{\"peerURLs\":[\"http://10.0.0.1:2380\"]}","modifiedIndex":1,"createdIndex":1}},null,"#
        ));
        assert!(s.ends_with(
            r#"null],"Size":1,"Front":0,"Back":1,"Capacity":1000},"StartIndex":1,"LastIndex":1}},"CurrentIndex":1,"Stats":{"getsSuccess":0,"getsFail":0,"setsSuccess":0,"setsFail":0,"deleteSuccess":0,"deleteFail":0,"updateSuccess":0,"updateFail":0,"createSuccess":1,"createFail":0,"compareAndSwapSuccess":0,"compareAndSwapFail":0,"compareAndDeleteSuccess":0,"compareAndDeleteFail":0,"expireCount":0,"watchers":0},"CurrentVersion":2}"#
        ));
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(
            v["WatcherHub"]["EventHistory"]["Queue"]["Events"]
                .as_array()
                .unwrap()
                .len(),
            1000
        );
        assert_eq!(
            s.len(),
            6455,
            "the .snap of that restore is 6488 bytes, 33 of them framing"
        );
    }
}
