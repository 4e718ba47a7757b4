//! Generates the CRI client and server from `assets/proto/cri-runtime-v1.proto` (needs `protoc`),
//! and stamps the binary with its git commit, build date and target for `--version`.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[path = "utc.rs"]
#[allow(dead_code)]
mod utc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "assets/proto/cri-runtime-v1.proto";
    println!("cargo:rerun-if-changed={proto}");
    tonic_prost_build::configure()
        .compile_protos(&[proto], &["assets/proto"])
        .map_err(|e| {
            format!("{e}\nhint: protoc is needed: run `make setup` (apt-get install protobuf-compiler)")
        })?;
    stamp();
    Ok(())
}

/// `ETCD_RESCUE_COMMIT`, `ETCD_RESCUE_BUILD_DATE` and `ETCD_RESCUE_TARGET` for `env!`.
///
/// The commit is `unknown` without git or outside a checkout (a source tarball).
/// The date honours `SOURCE_DATE_EPOCH` for reproducible builds. The target is
/// `ETCD_RESCUE_TARGET` when the build sets it (`make dist` names the glibc it
/// links against: `x86_64-unknown-linux-gnu.2.17`), else cargo's target.
fn stamp() {
    println!("cargo:rerun-if-changed=src/utc.rs");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    println!("cargo:rerun-if-env-changed=ETCD_RESCUE_TARGET");
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    // Rerun when HEAD moves: HEAD itself (a branch switch), the branch's ref
    // (a commit), and packed-refs (a ref packed by gc). In a worktree these live
    // in different git dirs, so ask git where each one is.
    let mut watch = vec![git(&["rev-parse", "--git-path", "HEAD"])];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watch.push(git(&["rev-parse", "--git-path", &branch]));
    }
    watch.push(git(&["rev-parse", "--git-path", "packed-refs"]));
    for p in watch.into_iter().flatten().map(PathBuf::from) {
        // A path that does not exist would make cargo rerun this script on every build.
        if p.exists() {
            println!("cargo:rerun-if-changed={}", p.display());
        }
    }
    let when = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map_or_else(SystemTime::now, |s| UNIX_EPOCH + Duration::from_secs(s));
    let date = utc::rfc3339(when)[..10].to_string();
    let target = std::env::var("ETCD_RESCUE_TARGET")
        .ok()
        .filter(|t| !t.is_empty())
        .or_else(|| std::env::var("TARGET").ok())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=ETCD_RESCUE_COMMIT={commit}");
    println!("cargo:rustc-env=ETCD_RESCUE_BUILD_DATE={date}");
    println!("cargo:rustc-env=ETCD_RESCUE_TARGET={target}");
}

/// One line of git's output, or `None` when git is missing or fails.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !s.is_empty()).then_some(s)
}
