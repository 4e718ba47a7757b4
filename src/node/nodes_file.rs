//! The fleet file (`--nodes-file`): the control-plane nodes of one cluster as
//! ssh reaches them, read and checked before anything connects; `--nodes
//! cp1,cp2,cp3` is the same list with each name its destination.
//!
//! ```yaml
//! # etcd-rescue fleet file: the control-plane nodes, as ssh reaches them
//! sshConfig: /path/to/ssh_config   # optional: ssh's -F
//! nodes:
//!   - name: cp1
//!     destination: cp1             # a Host alias, user@host, ssh://user@host:port
//!     root: /drill/cp1             # optional: the node's --root (drill nodes share one machine)
//! ```

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::exit::Fail;

/// The nodes of one cluster as ssh reaches them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodesFile {
    /// ssh's `-F` for every node (relative: to the fleet file's dir); ssh's own config when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_config: Option<PathBuf>,
    /// The nodes, in the order they are worked on.
    pub nodes: Vec<FleetNode>,
}

/// One control-plane node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FleetNode {
    /// Its name in what the tool says (unique in the file).
    pub name: String,
    /// Where ssh reaches it: a `Host` alias, `user@host` or `ssh://user@host:port`.
    pub destination: String,
    /// The node's `--root` there (drill nodes share one machine); `/` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<PathBuf>,
}

/// The next step for a fleet file that is refused.
const FIX: &str = "fix the fleet file: `nodes:` lists each control-plane node once, with a `name` and a `destination` ssh reaches";

impl NodesFile {
    /// Reads and checks the fleet file at `path` ([`NodesFile::parse`]); a relative
    /// `sshConfig` is taken relative to the file's dir.
    ///
    /// # Errors
    /// The file unreadable, or refused by [`NodesFile::parse`] (the error names it).
    pub fn read(path: &Path) -> Result<NodesFile> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Fail::before_change(
                format!("cannot read the fleet file {}: {e}", path.display()),
                "name an existing file with --nodes-file",
            )
        })?;
        let mut f = NodesFile::parse(&text).with_context(|| format!("reading {}", path.display()))?;
        if let Some(c) = &f.ssh_config
            && c.is_relative()
        {
            f.ssh_config = Some(path.parent().unwrap_or(Path::new(".")).join(c));
        }
        Ok(f)
    }

    /// Parses and checks a fleet file's text: no unknown field, at least one node,
    /// names unique and one word, destinations ssh would not read as an option,
    /// roots absolute.
    ///
    /// # Errors
    /// What is refused, naming the node.
    pub fn parse(text: &str) -> Result<NodesFile> {
        let f: NodesFile = yaml_serde::from_str(text)
            .map_err(|e| Fail::before_change(format!("not a fleet file: {e}"), FIX))?;
        f.check()?;
        Ok(f)
    }

    /// The list `--nodes` takes (`cp1,cp2,root@10.0.0.3`): each entry its node's
    /// destination and name (less an `ssh://`), no ssh config, no root.
    ///
    /// # Errors
    /// An empty list or entry, or what [`NodesFile::parse`] refuses.
    pub fn from_list(list: &str) -> Result<NodesFile> {
        let nodes = list
            .split(',')
            .map(str::trim)
            .map(|d| FleetNode {
                name: d.strip_prefix("ssh://").unwrap_or(d).to_string(),
                destination: d.to_string(),
                root: None,
            })
            .collect();
        let f = NodesFile {
            ssh_config: None,
            nodes,
        };
        f.check()?;
        Ok(f)
    }

    /// Refuses an empty list, a node without a name or a destination, a name twice, a
    /// destination ssh would read as an option (or not one word), a relative root.
    fn check(&self) -> Result<()> {
        if self.nodes.is_empty() {
            bail!(Fail::before_change("the fleet lists no node", FIX));
        }
        let mut seen = BTreeSet::new();
        for (i, n) in self.nodes.iter().enumerate() {
            let bad_word = |s: &str| s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control());
            if bad_word(&n.name) || n.name.contains('/') {
                bail!(Fail::before_change(
                    format!(
                        "node {} has the name {:?}: a name is one word without `/`",
                        i + 1,
                        n.name
                    ),
                    FIX
                ));
            }
            if !seen.insert(n.name.as_str()) {
                bail!(Fail::before_change(
                    format!("the node name {} is listed twice", n.name),
                    FIX
                ));
            }
            if bad_word(&n.destination) || n.destination.starts_with('-') {
                bail!(Fail::before_change(
                    format!(
                        "node {} has the destination {:?}, which ssh cannot take",
                        n.name, n.destination
                    ),
                    FIX
                ));
            }
            if let Some(r) = &n.root
                && !r.is_absolute()
            {
                bail!(Fail::before_change(
                    format!(
                        "node {} has the root {}, which is not absolute",
                        n.name,
                        r.display()
                    ),
                    FIX
                ));
            }
        }
        Ok(())
    }

    /// The file's text, commented as a person would write it (reads back as `self`).
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let word = |s: &str| {
            crate::yaml::to_string(&serde_json::Value::String(s.to_string()))
                .trim_end()
                .to_string()
        };
        let path = |p: &Path| word(&p.display().to_string());
        let mut s = String::from("# etcd-rescue fleet file: the control-plane nodes, as ssh reaches them\n");
        if let Some(c) = &self.ssh_config {
            let _ = writeln!(s, "sshConfig: {}", path(c));
        }
        s.push_str("nodes:\n");
        for (i, n) in self.nodes.iter().enumerate() {
            let first = i == 0;
            let _ = writeln!(s, "  - name: {}", word(&n.name));
            let _ = writeln!(
                s,
                "    destination: {}{}",
                word(&n.destination),
                if first {
                    "    # a Host alias in sshConfig, or user@host, ssh://user@host:port"
                } else {
                    ""
                }
            );
            if let Some(r) = &n.root {
                let _ = writeln!(
                    s,
                    "    root: {}{}",
                    path(r),
                    if first {
                        "    # drill nodes share one machine; absent on a real fleet"
                    } else {
                        ""
                    }
                );
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A drill's fleet file reads back as written, comments and all; a relative
    /// sshConfig is taken from the file's dir.
    #[test]
    fn a_rendered_file_reads_back() {
        let f = NodesFile {
            ssh_config: Some(PathBuf::from("/d/ssh_config")),
            nodes: ["cp1", "cp2", "cp3"]
                .iter()
                .map(|n| FleetNode {
                    name: (*n).to_string(),
                    destination: (*n).to_string(),
                    root: Some(PathBuf::from(format!("/d/{n}"))),
                })
                .collect(),
        };
        let text = f.render();
        assert!(text.starts_with("# etcd-rescue fleet file"), "{text}");
        assert!(text.contains("destination: cp1    # a Host alias"), "{text}");
        assert_eq!(NodesFile::parse(&text).unwrap(), f);
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("nodes.yaml");
        crate::host::fs::write_durably(
            &p,
            b"sshConfig: ssh_config\nnodes:\n  - {name: a, destination: 'root@10.0.0.1'}\n",
            0o600,
        )
        .unwrap();
        let r = NodesFile::read(&p).unwrap();
        assert_eq!(r.ssh_config, Some(d.path().join("ssh_config")));
        assert_eq!(r.nodes[0].root, None);
        assert!(NodesFile::read(&d.path().join("missing.yaml")).is_err());
    }

    /// Unknown fields (at the top or in a node), an empty list, a name twice, a
    /// destination like an option and a relative root are each refused, naming what.
    #[test]
    fn what_a_fleet_file_refuses() {
        let cases = [
            (
                "nodes:\n  - {name: a, destination: a}\nsshConfg: x\n",
                "unknown field",
            ),
            (
                "nodes:\n  - {name: a, destination: a, user: root}\n",
                "unknown field",
            ),
            ("nodes: []\n", "no node"),
            ("sshConfig: x\n", "missing field"),
            (
                "nodes:\n  - {name: a, destination: a}\n  - {name: a, destination: b}\n",
                "listed twice",
            ),
            (
                "nodes:\n  - {name: a, destination: -oProxyCommand=x}\n",
                "ssh cannot take",
            ),
            ("nodes:\n  - {name: 'a b', destination: a}\n", "one word"),
            (
                "nodes:\n  - {name: a, destination: a, root: rel}\n",
                "not absolute",
            ),
        ];
        for (text, why) in cases {
            let e = format!("{:#}", NodesFile::parse(text).unwrap_err());
            assert!(e.contains(why), "{text:?}: {e}");
        }
    }

    /// `--nodes` names each node by its destination (less `ssh://`); an empty entry or
    /// list, or a destination twice, is refused.
    #[test]
    fn a_list_of_destinations() {
        let f = NodesFile::from_list("cp1, root@10.0.0.2,ssh://admin@cp3:2222").unwrap();
        let names: Vec<&str> = f.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["cp1", "root@10.0.0.2", "admin@cp3:2222"]);
        assert_eq!(f.nodes[1].destination, "root@10.0.0.2");
        assert_eq!(f.nodes[2].destination, "ssh://admin@cp3:2222");
        assert!(f.ssh_config.is_none());
        for bad in ["", "cp1,,cp2", "cp1,cp1"] {
            assert!(NodesFile::from_list(bad).is_err(), "{bad:?}");
        }
    }
}
