//! Waiting on the node: until nothing runs on etcd's data (with the CRI
//! force-stop and the SIGTERM of host processes the operator may choose),
//! until etcd answers with a leader, and until the control plane runs again.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use super::{COMPONENTS, QUORUM_PROBE, RollbackRequested, Runner, Running, changed_err, force_stop};
use crate::exit::Fail;
use crate::host::cri::{self, Cri};
use crate::host::proc::{Held, holders};
use crate::restore::command::Command;
use crate::restore::journal::{Kind, Note, Outcome, Step};
use crate::restore::render;
use crate::restore::settle::{self, Settle};
use crate::restore::stage::StageId;
use crate::restore::view::{Holder, RunEnd, Wait, WaitChoice};

impl Runner<'_> {
    pub(super) async fn remaining_pods(socket: &Path) -> Result<Vec<(String, String)>> {
        let mut c = Cri::connect(socket, Duration::from_secs(5)).await?;
        Ok(c.pods(&[])
            .await?
            .into_iter()
            .filter_map(|p| {
                let md = p.metadata?;
                (md.namespace == "kube-system"
                    && COMPONENTS.iter().any(|c| md.name.starts_with(&format!("{c}-"))))
                .then_some((p.id, md.name))
            })
            .collect())
    }

    /// The running containers that own `held` processes: a process belongs
    /// to a container when its cgroup names the container's id, or it is (or
    /// runs under) the container's main process. Each process with its
    /// container (id, name, pod name, pod sandbox id), when it has one.
    pub(super) async fn owners(socket: &Path, held: &[Held]) -> Result<Vec<Option<[String; 4]>>> {
        let mut c = Cri::connect(socket, Duration::from_secs(5)).await?;
        let ctrs = c
            .containers(&[], Some(cri::pb::ContainerState::ContainerRunning))
            .await?;
        let about = |ctr: &cri::pb::Container| {
            let label = |k: &str| ctr.labels.get(k).cloned().unwrap_or_default();
            [
                ctr.id.clone(),
                label(cri::CONTAINER_NAME),
                label(cri::POD_NAME),
                ctr.pod_sandbox_id.clone(),
            ]
        };
        let mut out: Vec<Option<[String; 4]>> = held
            .iter()
            .map(|h| {
                ctrs.iter()
                    .find(|ctr| crate::host::proc::in_cgroup_of(h.pid, &ctr.id))
                    .map(about)
            })
            .collect();
        if out.iter().all(Option::is_some) {
            return Ok(out);
        }
        // No cgroup names them: ask each container for its main process.
        let mut mains = Vec::new();
        for ctr in &ctrs {
            if let Ok(Some(pid)) = c.container_pid(&ctr.id).await
                && pid > 0
            {
                mains.push((pid, about(ctr)));
            }
        }
        for (h, o) in held.iter().zip(out.iter_mut()) {
            if o.is_none() {
                *o = mains
                    .iter()
                    .find(|(pid, _)| crate::host::proc::descends_from(h.pid, *pid))
                    .map(|(_, a)| a.clone());
            }
        }
        Ok(out)
    }

    /// What still runs on etcd's data, each as it is: control-plane pod
    /// sandboxes (CRI), containers of other pods holding its files, and host
    /// processes holding files under the data and WAL dirs. A process of a
    /// control-plane pod's container is that pod.
    pub(super) fn running(&mut self) -> Result<Running> {
        let dirs: Vec<PathBuf> = self.plan.swaps.iter().map(|s| s.live.clone()).collect();
        let held = holders(&dirs);
        let (pods, owners) = match &self.plan.cri_socket {
            Some(s) => self.rt.block_on(async {
                let pods = Self::remaining_pods(s).await?;
                let owners = if held.is_empty() {
                    Vec::new()
                } else {
                    Self::owners(s, &held).await?
                };
                Ok::<_, anyhow::Error>((pods, owners))
            })?,
            None => (Vec::new(), Vec::new()),
        };
        Ok(super::classify(&pods, held, &owners))
    }

    /// When the last manifest of the run moved out of the manifests dir
    /// (the newest `done` move of stop-control-plane or stop-etcd), if this
    /// session moved it: a move journaled by an earlier session (a run
    /// resumed after the moves) measures nothing of the kubelet.
    fn manifests_moved_out_at(&self) -> Option<std::time::SystemTime> {
        self.journal
            .records
            .get(self.opened_at..)?
            .iter()
            .rev()
            .find(|r| {
                matches!(r.step, Step::Stage(StageId::StopEtcd | StageId::StopControlPlane))
                    && r.kind == Kind::Done
                    && matches!(r.action, Some(crate::restore::journal::Action::Move { .. }))
            })
            .and_then(|r| crate::utc::parse_rfc3339(&r.at))
    }

    /// Right before and after a data-dir rename: nothing may run on the data.
    /// A kubelet that saw a manifest a moment ago can still start its pod;
    /// this is where the swap stops rather than swap under a running etcd.
    pub(super) fn check_nothing_runs(&mut self) -> Result<()> {
        let still = self.running()?;
        if !still.is_empty() {
            let names: Vec<String> = still.iter().map(render::holder).collect();
            bail!(
                "{} appeared while the data dirs were being swapped (a kubelet acting on a manifest it saw earlier?); nothing was overwritten",
                names.join(", ")
            );
        }
        Ok(())
    }

    /// Waits until nothing runs on etcd's data, and stays so for the settle
    /// period: a kubelet that saw a manifest just before it moved may still
    /// start its pod for a while after. The face sees what runs and the time
    /// left each second; past `--wait-timeout` it is asked, and a choice
    /// that cannot work on what runs is refused and asked again.
    ///
    /// The settle period follows the plan's rule ([`settle::decide`]): at
    /// `wait-stopped`, the kubelet's reaction is measured from the last
    /// manifest moved out (its `done` record) until the first poll that saw
    /// it act on the moves (a pod, container or process seen at the first
    /// look gone, or nothing left at all); the period is counted from the
    /// moves, with at least the floor once nothing runs.
    pub(super) fn wait_stopped(&mut self, step: Step) -> Result<Settle> {
        let limit = Duration::from_secs(self.plan.wait_timeout_secs.max(1));
        let rule = self.plan.settle_rule();
        let began = Instant::now();
        // The time since the moves: the wall clock read once against the
        // journal's record, then the monotonic clock, so a clock step while
        // waiting changes nothing.
        let moved_ms = (step == Step::Stage(StageId::WaitStopped))
            .then(|| self.manifests_moved_out_at())
            .flatten()
            .and_then(|at| std::time::SystemTime::now().duration_since(at).ok())
            .and_then(|r| u64::try_from(r.as_millis()).ok());
        let since_moved = || {
            moved_ms.map(|m| m.saturating_add(u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX)))
        };
        let mut start = began;
        let mut quiet: Option<(Instant, Settle)> = None;
        let mut last: Running = Vec::new();
        let mut told: Option<u64> = None;
        // What ran at the first look, and when the kubelet was first seen
        // acting on the moves (one of those gone): its reaction.
        let mut first: Option<Running> = None;
        let mut acted: Option<u64> = None;
        // Something started again while settling, or was stopped by this
        // run (--force-stop, SIGTERM): the whole period from the moment
        // nothing runs; after a stop by this run, nothing measured either.
        let mut again = false;
        let mut intervened = false;
        loop {
            let still = self.running()?;
            if acted.is_none() {
                match &first {
                    _ if still.is_empty() => acted = since_moved(),
                    None => first = Some(still.clone()),
                    Some(f) if f.iter().any(|h| !still.contains(h)) => acted = since_moved(),
                    Some(_) => {}
                }
            }
            if still.is_empty() {
                let (since, decided) = if let Some(q) = quiet {
                    q
                } else {
                    // Counted from the moves, unless something came back
                    // while settling: then the whole period from now.
                    let gone = if again || intervened { None } else { since_moved() };
                    let reaction = if intervened {
                        None
                    } else {
                        acted.or_else(since_moved)
                    };
                    let decided = settle::decide(rule, reaction, gone);
                    self.say(&render::settling(&decided));
                    *quiet.insert((Instant::now(), decided))
                };
                let period = Duration::from_millis(decided.quiet_ms());
                if since.elapsed() >= period {
                    self.say(&format!(
                        "no control-plane pod sandbox left, no process holds the data dir, for {period:.1?}"
                    ));
                    return Ok(decided);
                }
                last.clear();
                std::thread::sleep(Duration::from_millis(50).min(period.saturating_sub(since.elapsed())));
                continue;
            }
            if quiet.take().is_some() {
                again = true;
                self.say("something started again while settling; waiting again");
            }
            let left = limit.saturating_sub(start.elapsed());
            let changed = still != last;
            if changed || told != Some(left.as_secs()) {
                told = Some(left.as_secs());
                self.face.waiting(&Wait {
                    holders: still.clone(),
                    left: Duration::from_secs(left.as_secs()),
                    changed,
                });
            }
            if changed {
                let names: Vec<String> = still.iter().map(render::holder).collect();
                self.log_line(&format!("still running: {}", names.join(", ")));
                last.clone_from(&still);
            }
            if self.stop.load(Ordering::SeqCst) {
                bail!("stopped by a signal while waiting");
            }
            if start.elapsed() > limit {
                match self.face.wait_timeout(&still) {
                    WaitChoice::KeepWaiting => {}
                    WaitChoice::ForceStop if still.iter().any(Holder::by_cri) => {
                        self.force_stop(step, &still)?;
                        intervened = true;
                    }
                    WaitChoice::Terminate if still.iter().any(|h| !h.by_cri()) => {
                        self.terminate(step, &still)?;
                        intervened = true;
                    }
                    WaitChoice::ForceStop | WaitChoice::Terminate => {
                        self.say("that choice cannot work on what still runs; nothing was done");
                        continue;
                    }
                    WaitChoice::Rollback => return Err(RollbackRequested.into()),
                    WaitChoice::Quit => {
                        use std::fmt::Write as _;
                        let names: Vec<String> = still.iter().map(render::holder).collect();
                        // What can work on each, in the message itself: a
                        // stage's failure prints its own `next:`.
                        let mut said = format!("still running after {limit:?}: {}", names.join(", "));
                        if still.iter().any(|h| !h.by_cri()) {
                            let _ = write!(
                                said,
                                "; CRI cannot stop a host process: kill {} yourself, then resume",
                                render::host_pids(&still)
                            );
                        }
                        if still.iter().any(Holder::by_cri) {
                            said.push_str("; pass --force-stop to stop the pods and containers through CRI");
                        }
                        return Err(changed_err(said, self.resume_hint()));
                    }
                }
                start = Instant::now();
                told = None;
                last.clear();
            }
            // Closely at first (the moment everything is gone starts the
            // settle period), then every 200 ms.
            std::thread::sleep(Duration::from_millis(
                if began.elapsed() < Duration::from_secs(5) {
                    50
                } else {
                    200
                },
            ));
        }
    }

    /// Stops the pods and containers among `still` through CRI, each journaled first.
    pub(super) fn force_stop(&mut self, step: Step, still: &[Holder]) -> Result<()> {
        let Some(socket) = self.plan.cri_socket.clone() else {
            bail!("no CRI socket to stop pods through");
        };
        for h in still {
            match h {
                Holder::Pod { name, id } => {
                    self.journal
                        .append(step, Kind::Note, None, force_stop(name.clone()))?;
                    self.say(&format!("stopping pod {name} through CRI"));
                    self.rt.block_on(async {
                        let mut c = Cri::connect(&socket, Duration::from_secs(5)).await?;
                        for ctr in c.containers(&[(cri::POD_NAME, name)], None).await? {
                            let _ = c.stop_container(&ctr.id, Duration::from_secs(2)).await;
                        }
                        c.stop_pod(id).await?;
                        c.remove_pod(id).await
                    })?;
                }
                Holder::Container { name, pod, id, .. } => {
                    self.journal
                        .append(step, Kind::Note, None, force_stop(format!("{pod}/{name}")))?;
                    self.say(&format!("stopping container {name} of pod {pod} through CRI"));
                    self.rt.block_on(async {
                        let mut c = Cri::connect(&socket, Duration::from_secs(5)).await?;
                        c.stop_container(id, Duration::from_secs(2)).await
                    })?;
                }
                Holder::Process { .. } => {}
            }
        }
        Ok(())
    }

    /// Sends SIGTERM to each host process among `still`, each journaled
    /// first and verified again right before (the same PID and start time,
    /// still holding a file under etcd's dirs); one that changed is left alone.
    pub(super) fn terminate(&mut self, step: Step, still: &[Holder]) -> Result<()> {
        let dirs: Vec<PathBuf> = self.plan.swaps.iter().map(|s| s.live.clone()).collect();
        for h in still {
            let Holder::Process {
                pid,
                start,
                cmdline,
                file,
            } = h
            else {
                continue;
            };
            self.journal.append(
                step,
                Kind::Note,
                None,
                Note {
                    terminate: Some(*pid),
                    terminate_start: *start,
                    ..Note::default()
                },
            )?;
            let held = Held {
                pid: *pid,
                start: *start,
                cmdline: cmdline.clone(),
                file: file.clone(),
            };
            match crate::host::proc::terminate(&held, &dirs) {
                Ok(()) => self.say(&format!("sent SIGTERM to {}", render::holder(h))),
                Err(e) => self.say(&format!("{e:#}")),
            }
        }
        Ok(())
    }

    pub(super) fn wait_etcd(&mut self) -> Result<Option<Outcome>> {
        let limit = Duration::from_secs(self.plan.wait_timeout_secs.max(1));
        let start = Instant::now();
        if self.plan.ha() {
            let peer = self.plan.peer_urls.first().cloned().unwrap_or_default();
            let addr = peer
                .split("://")
                .nth(1)
                .unwrap_or(&peer)
                .trim_end_matches('/')
                .to_string();
            loop {
                let up = std::net::ToSocketAddrs::to_socket_addrs(&addr)
                    .ok()
                    .and_then(|mut a| a.next())
                    .is_some_and(|a| {
                        std::net::TcpStream::connect_timeout(&a, Duration::from_secs(1)).is_ok()
                    });
                if up {
                    self.say(&format!("etcd runs and listens for peers on {peer}"));
                    // The member that completes a quorum sees it form within a
                    // few election rounds: it goes on to verify instead of waiting.
                    // In lockstep (`--until` at or past start-etcd) the peers
                    // start in parallel: wait for them as long as etcd may take.
                    let probe = if self.lockstep() {
                        limit.saturating_sub(start.elapsed()).max(QUORUM_PROBE)
                    } else {
                        QUORUM_PROBE.min(limit)
                    };
                    if self.wait_healthy(probe).is_ok() {
                        self.say("cluster formed: a quorum of the restored members has a leader");
                        return Ok(None);
                    }
                    return Ok(Some(Outcome::WaitingForPeers));
                }
                if start.elapsed() > limit {
                    bail!(
                        "etcd's peer listener {peer} did not come up within {limit:?}; look at etcd's container log"
                    );
                }
                self.watch_tick(StageId::StartEtcd)?;
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        self.wait_healthy(limit).map(|_| None)
    }

    /// Waits until this member answers with a leader (a quorum formed); returns the revision.
    pub(super) fn wait_healthy(&mut self, limit: Duration) -> Result<i64> {
        let start = Instant::now();
        let conn = self.connection();
        loop {
            let r = self
                .rt
                .block_on(crate::host::etcd::status(&conn, Duration::from_secs(3)))
                .and_then(|st| {
                    anyhow::ensure!(st.leader != 0, "no leader yet");
                    Ok(st.revision)
                });
            match r {
                Ok(rev) => {
                    self.say(&format!("etcd is healthy at revision {rev}"));
                    return Ok(rev);
                }
                Err(e) if start.elapsed() > limit => {
                    bail!("etcd did not become healthy within {limit:?}: {e:#}");
                }
                Err(_) => {}
            }
            self.watch_tick(StageId::StartEtcd)?;
            // Each poll late is outage: a refused connection costs nothing.
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// An HA member that ended `waiting-for-peers`: once a quorum answers,
    /// record start-etcd as done and go on with verify and start-control-plane.
    pub fn finish_waiting(&mut self, limit: Duration) -> Result<RunEnd> {
        match self.wait_healthy(limit) {
            Ok(_) => {}
            Err(e) => {
                return Err(e.context(Fail::problem(
                    format!("member {} still waits for its peers", self.plan.name),
                    format!(
                        "restore every other member from the same snapshot ({}), then run `{}` again",
                        self.plan.snapshot.display(),
                        Command::rescue(std::iter::once("verify".to_string()).chain(self.plan.node_words()))
                    ),
                )));
            }
        }
        self.journal.append(
            StageId::StartEtcd,
            Kind::StageDone,
            None,
            Note {
                quorum: Some(true),
                ..Note::default()
            },
        )?;
        self.run()
    }

    /// After a finished run: the same checks as the verify stage, read-only.
    pub fn check(&mut self) -> Result<()> {
        self.wait_healthy(Duration::from_secs(5))?;
        self.verify_cluster(false)
    }

    pub(super) fn wait_control_plane(&mut self) -> Result<()> {
        let Some(socket) = self.plan.cri_socket.clone() else {
            return Ok(());
        };
        let want: Vec<String> = self
            .plan
            .control_plane_manifests
            .iter()
            .map(|m| m.trim_end_matches(".yaml").to_string())
            .collect();
        let limit = Duration::from_secs(self.plan.wait_timeout_secs.max(1));
        let start = Instant::now();
        loop {
            let running: Vec<String> = self.rt.block_on(async {
                let mut c = Cri::connect(&socket, Duration::from_secs(5)).await?;
                Ok::<_, anyhow::Error>(
                    c.containers(&[], Some(cri::pb::ContainerState::ContainerRunning))
                        .await?
                        .into_iter()
                        .filter_map(|c| c.labels.get(cri::CONTAINER_NAME).cloned())
                        .collect(),
                )
            })?;
            let missing: Vec<&String> = want.iter().filter(|w| !running.contains(w)).collect();
            if missing.is_empty() {
                self.say(&format!("running again: {}", want.join(", ")));
                return Ok(());
            }
            if start.elapsed() > limit {
                bail!("not running after {limit:?}: {missing:?}; look at kubelet's log");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The serving cluster's revision against the snapshot's, asked just
    /// before the outage begins (bounded to 2 s; `None` when it does not answer).
    pub(super) fn writes_so_far(&self) -> Option<crate::restore::view::WritesSoFar> {
        let conn = self.connection();
        let st = self
            .rt
            .block_on(crate::host::etcd::status(&conn, Duration::from_secs(2)))
            .ok()?;
        Some(crate::restore::view::WritesSoFar {
            live: st.revision,
            snapshot: self.plan.snapshot_revision,
            planned: self.plan.current_revision,
        })
    }
}
