//! What a running drill tells the operator: where each node's files,
//! sockets and logs are, and what to practise.

use std::path::Path;

use super::containerd;
use super::state::{DrillState, Runtime};
use crate::root::Root;

/// What the drill prints once the node is up: where everything is and what to practise.
pub fn practice_text(dir: &Path, state: &DrillState) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "The sandbox is up: etcd {} on {} node(s).",
        state.etcd_version,
        state.nodes.len()
    );
    for n in &state.nodes {
        let root = Root::new(&n.root);
        let _ = writeln!(s, "\n  node {} (root {})", n.spec.name, n.root.display());
        let _ = writeln!(
            s,
            "    manifests   {}",
            root.host("/etc/kubernetes/manifests").display()
        );
        let _ = writeln!(s, "    data dir    {}", root.host("/var/lib/etcd").display());
        let _ = writeln!(
            s,
            "    CRI socket  {} ({})",
            root.host(state.runtime.socket()).display(),
            match state.runtime {
                Runtime::Process => "the drill's process runtime",
                Runtime::Containerd => "containerd",
            }
        );
        if state.runtime == Runtime::Process {
            // The socket answers any gRPC client as containerd does (crictl, Python's grpcio).
            let _ = writeln!(
                s,
                "    crictl      crictl --runtime-endpoint unix://{} ps",
                root.host(state.runtime.socket()).display()
            );
        }
        if state.runtime == Runtime::Containerd {
            let p = containerd::Paths::new(&root);
            let _ = writeln!(
                s,
                "    containerd  root {}, log {}\n    crictl      crictl --runtime-endpoint unix://{} ps",
                p.data.display(),
                p.log.display(),
                p.socket.display()
            );
        }
        let _ = writeln!(
            s,
            "    kubelet     {} (log {})",
            format_args!("http://127.0.0.1:{}/healthz", n.spec.healthz_port),
            root.host("/var/log/drill-kubelet.log").display()
        );
        let pki = root.host("/etc/kubernetes/pki/etcd");
        let _ = writeln!(
            s,
            "    etcdctl     {}/etcdctl --endpoints {} --cacert {p}/ca.crt --cert {p}/healthcheck-client.crt --key {p}/healthcheck-client.key endpoint health",
            state.etcd_bin.display(),
            n.spec.client_url(),
            p = pki.display()
        );
    }
    let _ = writeln!(
        s,
        "\n  kube-apiserver, kube-controller-manager and kube-scheduler are stand-ins: there is no\n  Kubernetes binary here, so they hold their place (and stop like the real ones) but serve nothing."
    );
    let me = self_command();
    if let Some(b) = &state.scenario {
        if b.hidden {
            let _ = writeln!(
                s,
                "\nScenario: something is broken, and this drill does not say what. Find out, then recover."
            );
        } else {
            let _ = writeln!(s, "\nScenario {}: {}", b.scenario.name(), b.scenario.story());
        }
        let _ = writeln!(
            s,
            "\nThe backups are in {}. Recover with the tool, in another terminal, e.g.:",
            dir.join("backup").display()
        );
        for n in &state.nodes {
            let _ = writeln!(
                s,
                "  {me} node --root {}\n  {me} restore --root {} --backup-dir {}{}",
                n.root.display(),
                n.root.display(),
                dir.join("backup").display(),
                if state.nodes.len() > 1 { " --force" } else { "" }
            );
        }
        if state.nodes.len() > 1 {
            let _ = writeln!(
                s,
                "  (every member from the same snapshot; then `{me} verify --root <node>` on each, once a quorum runs)"
            );
        }
        let _ = writeln!(
            s,
            "\nWhen you think the cluster is recovered, grade it (while this drill runs):\n  {me} drill check --dir {}",
            dir.display()
        );
    } else {
        // A bare `drill` broke nothing and did not say so.
        let _ = writeln!(
            s,
            "\nNo scenario was chosen: nothing is broken, the cluster runs as seeded. To rehearse a\nrecovery, stop this drill (Ctrl-C) and start one with a scenario, e.g.:\n  {me} drill --scenario deleted-namespace\n({me} drill --list describes them all; `make drill` runs deleted-namespace.)"
        );
    }
    if let (None, Some(snap)) = (&state.scenario, &state.snapshot) {
        let _ = writeln!(s, "\nSnapshot taken after seeding: {}", snap.display());
        if state.nodes.len() == 1 {
            let _ = writeln!(s, "\nPractise the restore (in another terminal):");
        } else {
            let _ = writeln!(
                s,
                "\nPractise the restore (in another terminal), every member from the same snapshot; the\nfirst members see the rest of the old cluster still working, hence --force:"
            );
        }
        let force = if state.nodes.len() > 1 { " --force" } else { "" };
        for n in &state.nodes {
            let _ = writeln!(
                s,
                "  {me} restore --root {} --snapshot {}{force}",
                n.root.display(),
                snap.display()
            );
        }
    }
    ssh_text(&mut s, dir, state);
    let _ = writeln!(
        s,
        "\nStop with Ctrl-C. If this process is killed, clean up with: {me} drill down --dir {}",
        crate::shell::quote_path(dir)
    );
    s
}

/// What `drill --ssh` adds: how to reach each node and the one fleet restore command.
fn ssh_text(s: &mut String, dir: &Path, state: &DrillState) {
    use std::fmt::Write;
    if state.ssh.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "\nEach node has an sshd on loopback (the fleet file {} names them):",
        dir.join("nodes.yaml").display()
    );
    for r in &state.ssh {
        let _ = writeln!(
            s,
            "  ssh -F {} {}    # {}, sshd pid {}",
            crate::shell::quote_path(&dir.join("ssh_config")),
            r.node,
            r.address,
            r.pid
        );
    }
    if let Some(snap) = state
        .scenario
        .as_ref()
        .and_then(|b| b.good_snapshot.as_ref())
        .or(state.snapshot.as_ref())
    {
        let _ = writeln!(
            s,
            "Restore every node from here, over ssh:\n  {}",
            fleet_command(dir, snap)
        );
    }
}

/// The one command that restores every node of a `drill --ssh` over ssh, from its fleet file.
pub fn fleet_command(dir: &Path, snapshot: &Path) -> String {
    format!(
        "{} restore --nodes-file {} --snapshot {}",
        self_command(),
        crate::shell::quote_path(&dir.join("nodes.yaml")),
        crate::shell::quote_path(snapshot)
    )
}

/// How to call this binary in printed commands: `etcd-rescue` when that is
/// what PATH finds, else its full path (as after `make drill`).
fn self_command() -> String {
    let me = std::env::current_exe()
        .ok()
        .and_then(|p| std::fs::canonicalize(p).ok());
    let on_path = crate::host::etcdutl::which("etcd-rescue").and_then(|p| std::fs::canonicalize(p).ok());
    match (me, on_path) {
        (Some(a), Some(b)) if a == b => "etcd-rescue".into(),
        (Some(a), _) => a.display().to_string(),
        _ => "etcd-rescue".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A drill without `--scenario` says so and names one to try;
    /// one with a scenario does not.
    #[test]
    fn a_drill_without_a_scenario_says_so() {
        let mut state: DrillState = serde_json::from_str(
            r#"{"pid":0,"release":"3.5","etcdVersion":"3.5.1","etcdBin":"/x","nodes":[],"snapshot":"/d/backup/s.db"}"#,
        )
        .unwrap();
        let t = practice_text(Path::new("/d"), &state);
        assert!(t.contains("No scenario was chosen: nothing is broken"), "{t}");
        assert!(t.contains(" drill --scenario deleted-namespace"), "{t}");
        assert!(t.contains("Snapshot taken after seeding: /d/backup/s.db"), "{t}");
        state.scenario = Some(super::super::broken::Broken {
            scenario: super::super::broken::Scenario::DeletedNamespace,
            hidden: false,
            at: String::new(),
            keys_back: Vec::new(),
            live_keys: 0,
            good_snapshot: None,
            bad_snapshot: None,
            stray: None,
            filler: None,
            expected: std::collections::BTreeMap::new(),
        });
        let t = practice_text(Path::new("/d"), &state);
        assert!(!t.contains("No scenario was chosen"), "{t}");
    }
}
