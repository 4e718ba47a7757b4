//! Stand-ins for kube-apiserver, kube-controller-manager and kube-scheduler.
//!
//! There is no Kubernetes binary on a drill machine, so the control-plane pods
//! other than etcd run this program under the component's name (the binary is
//! linked as `kube-apiserver` etc., so `ps` and `/proc/*/comm` show that name).
//! It holds its place until stopped. `DRILL_IGNORE_SIGTERM=1` makes it ignore
//! SIGTERM and `DRILL_STOP_DELAY_SECONDS=N` makes it take N seconds to stop,
//! so slow and stuck shutdowns can be rehearsed. It exits by itself when the
//! runtime that started it goes away, so a killed drill leaves none behind.

use std::process::ExitCode;
use std::time::Duration;

/// The names this binary answers to as a stand-in.
pub const NAMES: [&str; 3] = ["kube-apiserver", "kube-controller-manager", "kube-scheduler"];

/// Runs as the stand-in called `name` until stopped.
pub fn run(name: &str) -> ExitCode {
    let ignore = std::env::var("DRILL_IGNORE_SIGTERM").is_ok_and(|v| v == "1");
    let delay = std::env::var("DRILL_STOP_DELAY_SECONDS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(Duration::ZERO, Duration::from_secs);
    println!(
        "{name} (etcd-rescue drill stand-in, pid {}): the drill has no {name} binary; this process holds its place",
        std::process::id()
    );
    crate::host::rt::block_on(async move {
        let parent = nix::unistd::getppid();
        let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else {
            return ExitCode::FAILURE;
        };
        loop {
            tokio::select! {
                _ = term.recv() => {
                    if ignore {
                        println!("{name}: SIGTERM ignored (drill.etcd-rescue/ignore-sigterm)");
                        continue;
                    }
                    println!("{name}: SIGTERM, stopping in {delay:?}");
                    tokio::time::sleep(delay).await;
                    return ExitCode::SUCCESS;
                }
                () = tokio::time::sleep(Duration::from_secs(1)) => {
                    if nix::unistd::getppid() != parent {
                        println!("{name}: the runtime that started it is gone; exiting");
                        return ExitCode::SUCCESS;
                    }
                }
            }
        }
    })
    .unwrap_or(ExitCode::FAILURE)
}
