//! etcd-rescue: restore etcd on a kubeadm control-plane node from a snapshot.
//!
//! The layers, from the outside in: [`cli`] parses and prints; [`node`]
//! discovers the node under `--root`; [`host`] holds the narrow interfaces to
//! files and programs. See `docs/architecture.md`.

pub mod backup;
pub mod cli;
pub mod drill;
pub mod exit;
pub mod hex;
pub mod host;
pub mod maintenance;
pub mod node;
pub mod registry;
pub mod restore;
pub mod root;
pub mod shell;
pub mod snapshot;
pub mod status;
pub mod text;
pub mod tui;
pub mod units;
pub mod utc;
pub mod wire;
pub mod yaml;

/// The version and commit, as backups' sidecars record it.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("ETCD_RESCUE_COMMIT"),
    ")"
);

#[cfg(test)]
mod layering;
