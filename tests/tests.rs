//! The one integration-test binary: real etcd, real files under temp roots.

#![allow(clippy::unwrap_used)] // the whole crate is test code

mod support;

// `backup` from the sandbox node's etcd (3.5, 3.4): etcdctl's bytes, sidecar, interruptions, retention, timer.
mod backup;
// `backup test`: a backup restored into a sandbox and served by a private etcd; good, cut short, encrypted, undecodable.
mod backup_test;
// The node bundle: backup --with-node-files, restore --node-files onto an empty root, etcd on the restored PKI, refusals, rollback.
mod bundle;
// `certs` on generated kubeadm PKIs: expiry, chains, SANs, permissions.
mod certs;
// `restore --nodes-file`: three drill members behind real sshd, restored in lockstep, resumed, rolled back.
mod fleet;
// `drill --runtime containerd`: a real containerd through CRI, and a clean teardown.
mod containerd;
// `status` on every way etcd can be out of reach (TLS, refused, silent, lost quorum): the cause, never restore.
mod diagnose;
// The sandbox node on the process runtime: manifests in and out, restarts, teardown.
mod drill;
// The native `snapshot restore` against etcdutl 3.5 and etcdctl 3.4, byte for byte, then real etcd on its output.
mod native_restore;
// `etcd-rescue node` on every fixture node, good and broken.
mod node;
// What the tool prints, read back by a shell, bash and a YAML 1.1 reader.
mod output;
// `keys`, `get`, `watch` and `snapshot keys|get`: Kubernetes objects read from etcd, live and offline.
mod registry;
// Whole restores on the sandbox node: the drill's command, crashes, refusals.
mod restore;
// Revisions never go backwards: an informer's watch across a restore, on 3.4 and 3.5.
mod revisions;
// `drill --scenario`: each breaks the sandbox, a headless recovery fixes it, `drill check` grades it.
mod scenarios;
// The native snapshot reader against real etcd 3.4 and 3.5 snapshots, damaged copies, fuzzing.
mod snapshot;
// host::ssh against a real sshd on loopback: exit codes, ssh's own failures, timeouts, send_file, the shared master.
mod ssh;
// `status` on a three-member sandbox: etcdctl's facts, a member down.
mod status;
// The test bed itself: real etcd 3.4 and 3.5 start, answer and stop.
mod testbed;
// Runs paused at a barrier (`--until`) and taken up again: one node, and three members in lockstep.
mod until;
// The wizard end to end in tmux on the sandbox node: full restore, rollback, resume after a kill.
mod tui;
