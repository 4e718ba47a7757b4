//! The watch from the end of `wait-stopped` until `verify` is done: a
//! thread polls every 20 ms for a control-plane pod whose manifest is still
//! out of the manifests dir (a kubelet acting on a decision taken before the
//! manifest moved, later than the settle period) and for a process holding
//! the set-aside dirs (or the live ones while etcd.yaml is out). The thread
//! only records what it sees; the runner acts on it between its own steps
//! ([`Runner::watch_tick`]): it journals each sighting, stops what CRI can
//! stop, and checks the swap again. So the watch never changes the node
//! under the swap's own checks.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Result, bail};

use super::{Runner, Running};
use crate::host::fs::{exists, tree_meta};
use crate::host::proc::holders;
use crate::restore::journal::Note;
use crate::restore::render;
use crate::restore::stage::StageId;
use crate::restore::view::Holder;

/// How often the watch lists the pods (one CRI call): a late pod's
/// sandbox may live only as long as its kubelet takes to stop it again.
const EVERY: Duration = Duration::from_millis(20);

/// Every how many polls it also looks for processes holding the dirs (a
/// walk of `/proc/*/fd`): every 100 ms.
const HOLDERS_EVERY: u32 = 5;

/// What the watch looks at, taken from the plan.
#[derive(Clone)]
pub(super) struct Scope {
    socket: Option<PathBuf>,
    manifests_dir: PathBuf,
    /// Every manifest of the run (the control plane's and etcd's).
    manifests: Vec<String>,
    etcd_manifest: String,
    /// Each swap's live and set-aside dir.
    dirs: Vec<(PathBuf, PathBuf)>,
}

/// The watch thread and what it saw.
pub(super) struct Watch {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<(SystemTime, Holder)>>>,
    thread: Option<JoinHandle<()>>,
}

impl Watch {
    /// Takes what the thread saw since the last call.
    fn take(&self) -> Vec<(SystemTime, Holder)> {
        self.seen
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default()
    }

    /// Stops the thread and waits for it.
    fn end(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.end();
    }
}

/// Whether `name` is a pod of the manifest `m` (`etcd.yaml`: `etcd-<node>`).
fn pod_of(name: &str, m: &str) -> bool {
    let stem = m.strip_suffix(".yaml").unwrap_or(m);
    name.strip_prefix(stem).is_some_and(|rest| rest.starts_with('-'))
}

impl Scope {
    /// The run's manifests not in the manifests dir now.
    fn out(&self) -> Vec<String> {
        self.manifests
            .iter()
            .filter(|m| !exists(&self.manifests_dir.join(m)))
            .cloned()
            .collect()
    }

    /// What runs that must not: pods whose manifests are out (before and
    /// after the look, so a pod of a manifest just moved back never counts),
    /// and whatever holds a set-aside dir, or a live one while etcd.yaml is out.
    fn scan(&self, rt: &tokio::runtime::Handle, with_holders: bool) -> Result<Running> {
        let before = self.out();
        let etcd_out = before.contains(&self.etcd_manifest);
        let mut dirs: Vec<PathBuf> = Vec::new();
        for (live, old) in &self.dirs {
            if exists(old) {
                dirs.push(old.clone());
            }
            if etcd_out {
                dirs.push(live.clone());
            }
        }
        let held = if with_holders { holders(&dirs) } else { Vec::new() };
        let (pods, owners) = match &self.socket {
            Some(s) => rt.block_on(async {
                let pods = Runner::remaining_pods(s).await?;
                let owners = if held.is_empty() {
                    Vec::new()
                } else {
                    Runner::owners(s, &held).await?
                };
                Ok::<_, anyhow::Error>((pods, owners))
            })?,
            None => (Vec::new(), Vec::new()),
        };
        let after = self.out();
        let counts = |name: &str| before.iter().any(|m| after.contains(m) && pod_of(name, m));
        let pods: Vec<(String, String)> = pods.into_iter().filter(|(_, n)| counts(n)).collect();
        // A live dir counts only while etcd.yaml stayed out the whole look.
        let live_counts = after.contains(&self.etcd_manifest);
        let (held, owners): (Vec<_>, Vec<_>) = held
            .into_iter()
            .zip(owners.into_iter().map(Some).chain(std::iter::repeat(None)))
            .filter(|(h, _)| live_counts || self.dirs.iter().any(|(_, old)| h.file.starts_with(old)))
            .unzip();
        let owners: Vec<Option<[String; 4]>> = owners.into_iter().map(Option::flatten).collect();
        Ok(super::classify(&pods, held, &owners))
    }
}

/// The watch thread's loop: until told to stop, or `limit` passed.
fn watch(
    scope: &Scope,
    rt: &tokio::runtime::Handle,
    stop: &AtomicBool,
    seen: &Mutex<Vec<(SystemTime, Holder)>>,
    limit: Duration,
) {
    let began = Instant::now();
    let mut known: Vec<Holder> = Vec::new();
    let mut polls = 0u32;
    while !stop.load(Ordering::SeqCst) && began.elapsed() < limit {
        polls = polls.wrapping_add(1);
        if let Ok(now) = scope.scan(rt, polls % HOLDERS_EVERY == 1) {
            let at = SystemTime::now();
            for h in now {
                if !known.contains(&h) {
                    known.push(h.clone());
                    if let Ok(mut v) = seen.lock() {
                        v.push((at, h));
                    }
                }
            }
        }
        std::thread::sleep(EVERY);
    }
}

impl Runner<'_> {
    fn watch_scope(&self) -> Scope {
        Scope {
            socket: self.plan.cri_socket.clone(),
            manifests_dir: self.plan.manifests_dir.clone(),
            manifests: self
                .plan
                .control_plane_manifests
                .iter()
                .chain(std::iter::once(&self.plan.etcd_manifest))
                .cloned()
                .collect(),
            etcd_manifest: self.plan.etcd_manifest.clone(),
            dirs: self
                .plan
                .swaps
                .iter()
                .map(|s| (s.live.clone(), s.old.clone()))
                .collect(),
        }
    }

    /// Starts the watch unless it runs.
    pub(super) fn start_watch(&mut self) {
        if self.watch.is_some() {
            return;
        }
        let scope = self.watch_scope();
        let rt = self.rt.handle().clone();
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        // Bounded: the stages it covers each end within --wait-timeout.
        let limit = Duration::from_secs(self.plan.wait_timeout_secs.max(1)).saturating_mul(4);
        let thread = {
            let (stop, seen) = (stop.clone(), seen.clone());
            std::thread::Builder::new()
                .name("late-pod-watch".into())
                .spawn(move || watch(&scope, &rt, &stop, &seen, limit))
                .ok()
        };
        self.watch = Some(Watch { stop, seen, thread });
    }

    /// Stops the watch (once `verify` is done) and acts on its last sightings.
    pub(super) fn end_watch(&mut self, id: StageId) -> Result<()> {
        if let Some(w) = self.watch.as_mut() {
            w.end();
        }
        let r = self.watch_tick(id);
        self.watch = None;
        r
    }

    /// Acts on what the watch saw since the last tick: each sighting
    /// journaled (a `late` note) and told, what still runs stopped through
    /// CRI (as `--force-stop` does), and the dirs checked against the
    /// shapes `wait-stopped` recorded and the swap left.
    pub(super) fn watch_tick(&mut self, id: StageId) -> Result<()> {
        let Some(w) = self.watch.as_ref() else {
            return Ok(());
        };
        let seen = w.take();
        if seen.is_empty() {
            return Ok(());
        }
        for (at, h) in &seen {
            self.journal.append(
                id,
                crate::restore::journal::Kind::Note,
                None,
                Note {
                    late: Some(format!(
                        "{} (seen {})",
                        render::holder(h),
                        crate::utc::rfc3339(*at)
                    )),
                    ..Note::default()
                },
            )?;
            self.say(&render::late(h));
        }
        let now = self.watch_scope().scan(self.rt.handle(), true)?;
        if now.iter().any(Holder::by_cri) {
            self.force_stop(id.into(), &now)?;
        }
        self.check_swap_intact()
    }

    /// The dirs as `wait-stopped` and the swap left them: a set-aside dir
    /// (or a live one not swapped yet) with the shape recorded at
    /// `wait-stopped`, a swapped live dir still the one moved in.
    fn check_swap_intact(&mut self) -> Result<()> {
        let b = self.baseline();
        for s in self.plan.swaps.clone() {
            let swapped = exists(&s.old);
            let at = if swapped { &s.old } else { &s.live };
            if let Some(want) = b.meta(s.what)
                && tree_meta(at)? != want
            {
                bail!(
                    "the {} dir {} changed after wait-stopped (a late pod or process wrote to it); stop what runs on it, then roll back",
                    s.what,
                    at.display()
                );
            }
            if swapped {
                let same = |a: &Path, b: &Path| {
                    use std::os::unix::fs::MetadataExt;
                    match (std::fs::metadata(a), std::fs::metadata(b)) {
                        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
                        _ => false,
                    }
                };
                if !exists(&s.live) || same(&s.live, &s.old) {
                    bail!(
                        "the {} dir {} is no longer the restored one; roll back",
                        s.what,
                        s.live.display()
                    );
                }
                if let Some(ino) = self.swapped.iter().find(|(p, _)| *p == s.live).map(|(_, i)| *i) {
                    use std::os::unix::fs::MetadataExt;
                    if std::fs::metadata(&s.live).map(|m| (m.dev(), m.ino())).ok() != Some(ino) {
                        bail!(
                            "the {} dir {} was replaced after the swap; roll back",
                            s.what,
                            s.live.display()
                        );
                    }
                }
            }
            self.say(&format!(
                "{} dir {} as wait-stopped and the swap left it",
                s.what,
                at.display()
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::pod_of;

    /// A static pod is named after its manifest and the node; nothing else matches.
    #[test]
    fn pods_are_matched_to_their_manifest() {
        assert!(pod_of("etcd-cp1", "etcd.yaml"));
        assert!(pod_of("kube-apiserver-cp1", "kube-apiserver.yaml"));
        assert!(!pod_of("etcdx-cp1", "etcd.yaml"));
        assert!(!pod_of("etcd", "etcd.yaml"));
        assert!(!pod_of("kube-apiserver-cp1", "kube-scheduler.yaml"));
    }
}
