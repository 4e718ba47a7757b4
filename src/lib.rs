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

/// The version and commit, as backups' sidecars record it.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("ETCD_RESCUE_COMMIT"),
    ")"
);

#[cfg(test)]
mod layering {
    use std::path::Path;

    /// The modules a layer may not use: imports point one way, `cli` → `tui`
    /// → `restore` → `node`/`snapshot` → `host`/`root`/`exit`, with `drill`,
    /// `backup`, `registry`, `status` and `maintenance` beside `restore`
    /// (docs/architecture.md).
    const FORBIDDEN: &[(&str, &[&str])] = &[
        ("host", &["restore", "tui", "cli", "drill", "node", "registry"]),
        ("node", &["restore", "tui", "cli", "drill", "registry"]),
        ("snapshot", &["restore", "tui", "cli", "drill", "registry"]),
        ("root", &["restore", "tui", "cli", "drill"]),
        ("exit", &["restore", "tui", "cli", "drill"]),
        ("units", &["restore", "tui", "cli", "drill"]),
        ("restore", &["tui", "cli", "drill", "backup"]),
        ("backup", &["tui", "cli", "drill", "restore"]),
        ("drill", &["tui", "cli", "restore"]),
        ("tui", &["cli"]),
        ("registry", &["restore", "tui", "cli", "drill", "backup"]),
        ("status", &["restore", "tui", "cli", "drill"]),
        ("maintenance", &["restore", "tui", "cli", "drill"]),
    ];

    fn sources(module: &str) -> Vec<std::path::PathBuf> {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut v = vec![src.join(format!("{module}.rs"))];
        if let Ok(rd) = walkdir::WalkDir::new(src.join(module))
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
        {
            v.extend(rd.into_iter().map(walkdir::DirEntry::into_path));
        }
        v.retain(|p| p.extension().is_some_and(|e| e == "rs") && p.is_file());
        v
    }

    #[test]
    fn imports_point_one_way() {
        let mut wrong = Vec::new();
        for (layer, banned) in FORBIDDEN {
            for file in sources(layer) {
                let text = std::fs::read_to_string(&file).unwrap();
                for b in *banned {
                    if text.contains(&format!("crate::{b}::")) || text.contains(&format!("crate::{b};")) {
                        wrong.push(format!("{} uses {b}", file.display()));
                    }
                }
            }
        }
        assert!(wrong.is_empty(), "layering broken: {wrong:#?}");
    }

    /// The wizard's state does not call its drawing: the view reports what it
    /// drew (`Action::Drawn`), so the app/view loop stays one way.
    #[test]
    fn wizard_state_does_not_use_the_view() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/tui/app.rs");
        let text = std::fs::read_to_string(src).unwrap();
        assert!(!text.contains("view::"), "tui/app.rs calls into the view");
    }
}
