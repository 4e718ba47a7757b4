//! etcd-rescue: restore etcd on a kubeadm control-plane node from a snapshot.
//!
//! The layers, from the outside in: [`cli`] parses and prints; [`node`]
//! discovers the node under `--root`; [`host`] holds the narrow interfaces to
//! files and programs. See `docs/architecture.md`.

pub mod cli;
pub mod drill;
pub mod exit;
pub mod hex;
pub mod host;
pub mod node;
pub mod restore;
pub mod root;
pub mod snapshot;
pub mod tui;
pub mod units;
pub mod utc;
