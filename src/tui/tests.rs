//! Screen tests, gitu style: a scenario is a string of keys, a scripted
//! engine answers like the real runner, and the 80x24 screen is an insta
//! snapshot. Every path, id and time comes from the fixed plan below, so
//! nothing volatile reaches a snapshot.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use ratatui::Terminal;
use ratatui::backend::TestBackend;

use super::app::{self, Action, App, Asked, Cmd, Later, Mark, Mode, Popup, Screen};
use super::face::{Event, Reply};
use super::keys;
use super::picker::{Changes, Checked, Detail, Found, Msg};
use super::view;
use crate::host::etcd::Connection;
use crate::restore::command::Command;
use crate::restore::journal::Outcome;
use crate::restore::plan::{Plan, RestoreTool, Swap, SwapKind, ToolKind};
use crate::restore::render;
use crate::restore::stage::{Order, StageId};
use crate::restore::steps::STAGES;
use crate::restore::view::{
    Answer, Failure, Holder, Phase, Progress, ProgressOf, RunStart, StageView, Summary, Wait, WaitChoice,
};
use crate::snapshot::Integrity;

const RUN: &str = "20260101T000000Z-abcd";

/// A plan for a node under `/node`, as `Plan::compute` would make it.
fn sample_plan() -> Plan {
    let run_dir = PathBuf::from(format!("/node/var/lib/etcd-rescue/runs/{RUN}"));
    let swaps = vec![Swap {
        what: SwapKind::Data,
        live: "/node/var/lib/etcd".into(),
        partial: format!("/node/var/lib/etcd.restore-{RUN}.partial").into(),
        restored: format!("/node/var/lib/etcd.restore-{RUN}").into(),
        incoming: format!("/node/var/lib/etcd.restore-{RUN}").into(),
        old: format!("/node/var/lib/etcd-old-{RUN}").into(),
        inside_mount: false,
    }];
    let tool = RestoreTool {
        name: ToolKind::Etcdutl,
        path: "/usr/local/bin/etcdutl".into(),
        version: "3.5.21".into(),
        found: "PATH".into(),
        bump_revision: true,
        probed: true,
    };
    Plan {
        id: RUN.into(),
        created: "2026-01-01T00:00:00Z".into(),
        root: "/node".into(),
        state_dir: "/node/var/lib/etcd-rescue".into(),
        stash_dir: run_dir.join("manifests"),
        run_dir,
        snapshot: "/node/backup/etcd-20251231.db".into(),
        snapshot_sha256: "625f2f3a0f6569ae625f2f3a0f6569ae".into(),
        snapshot_file: None,
        snapshot_integrity: Integrity::Verified,
        snapshot_revision: 1200,
        snapshot_live_keys: 805,
        snapshot_size: 3 << 20,
        skip_hash_check: false,
        name: "cp1".into(),
        manifests_dir: "/node/etc/kubernetes/manifests".into(),
        control_plane_manifests: vec![
            "kube-apiserver.yaml".into(),
            "kube-controller-manager.yaml".into(),
            "kube-scheduler.yaml".into(),
        ],
        etcd_manifest: "etcd.yaml".into(),
        manifests_before: Vec::new(),
        stray_manifests: Vec::new(),
        cri_socket: Some("/node/run/containerd/containerd.sock".into()),
        kubelet_healthz: "127.0.0.1:10248".into(),
        data_dir: "/node/var/lib/etcd".into(),
        data_dir_link: None,
        settle_ms: 3000,
        settle_measured: false,
        order: Order::Staged,
        wal_dir: None,
        restore_argv: vec![
            "/usr/local/bin/etcdutl".into(),
            "snapshot".into(),
            "restore".into(),
            "/node/backup/etcd-20251231.db".into(),
            "--name=cp1".into(),
            "--initial-cluster=cp1=https://10.0.0.11:2380".into(),
            "--initial-cluster-token=etcd-rescue-625f2f3a0f6569ae".into(),
            "--initial-advertise-peer-urls=https://10.0.0.11:2380".into(),
            format!("--data-dir=/node/var/lib/etcd.restore-{RUN}.partial"),
            "--bump-revision=1000142".into(),
            "--mark-compacted".into(),
        ],
        swaps,
        initial_cluster: "cp1=https://10.0.0.11:2380".into(),
        initial_cluster_token: "etcd-rescue-625f2f3a0f6569ae".into(),
        peer_urls: vec!["https://10.0.0.11:2380".into()],
        other_members: Vec::new(),
        tool,
        uid: 0,
        gid: 0,
        mode: 0o700,
        current_revision: Some(1342),
        bump: Some(crate::restore::plan::bump::Bump {
            to: 1_001_342,
            amount: 1_000_142,
            basis: crate::restore::plan::bump::Basis::Served {
                revision: 1342,
                from: crate::restore::plan::bump::Source::DataDir,
            },
            follow_stop: true,
        }),
        space: None,
        snapshot_source: None,
        connection: Connection {
            endpoints: vec!["https://127.0.0.1:2379".into()],
            cacert: Some("/node/etc/kubernetes/pki/etcd/ca.crt".into()),
            cert: Some("/node/etc/kubernetes/pki/etcd/healthcheck-client.crt".into()),
            key: Some("/node/etc/kubernetes/pki/etcd/healthcheck-client.key".into()),
            dial_timeout_ms: 2000,
            command_timeout_ms: 5000,
        },
        wait_timeout_secs: 120,
        force_stop: false,
        forced: false,
        warnings: vec!["the node runs 2 control-plane replicas of kube-apiserver (HA notes)".into()],
    }
}

fn view(plan: &Plan, i: usize) -> StageView {
    let s = &STAGES[i];
    StageView {
        number: i + 1,
        of: STAGES.len(),
        id: s.id,
        title: s.title,
        why: (s.why)(plan),
        preview: (s.preview)(plan),
        phase: Phase::of(Order::Staged, s.id),
        writes_so_far: None,
    }
}

/// Answers like the runner: the next stage after a yes, a rollback after `r`,
/// nothing after a quit; `fail_at` makes that stage fail once, `hold_at`
/// leaves it running (the test sends its output), `wait_at` has its pods
/// outlive the wait.
struct Engine {
    plan: Plan,
    next: usize,
    fail_at: Option<usize>,
    hold_at: Option<usize>,
    wait_at: Option<usize>,
    /// What outlives the wait at `wait_at`.
    holders: Vec<Holder>,
    ended: bool,
}

/// A control-plane pod still up.
fn pod_holder() -> Holder {
    Holder::Pod {
        name: "etcd-cp1".into(),
        id: "7f3c9a1b2d4e5f60718293a4b5c6d7e8".into(),
    }
}

/// A host process (no container) holding etcd's db.
fn process_holder() -> Holder {
    Holder::Process {
        pid: 4242,
        start: Some(1234),
        cmdline: vec!["sleep".into(), "600".into()],
        file: "/node/var/lib/etcd/member/snap/db".into(),
    }
}

impl Engine {
    fn new() -> Engine {
        Engine {
            plan: sample_plan(),
            next: 0,
            fail_at: None,
            hold_at: None,
            wait_at: None,
            holders: vec![pod_holder(), process_holder()],
            ended: false,
        }
    }

    fn stage(&self) -> Event {
        Event::Stage(view(&self.plan, self.next))
    }

    fn summary(&mut self, outcome: Outcome) -> Event {
        self.ended = true;
        let done = outcome == Outcome::Done;
        Event::Summary(Box::new(Summary {
            run: RUN.into(),
            outcome,
            snapshot: self.plan.snapshot.clone(),
            revision: self.plan.snapshot_revision,
            live_keys: self.plan.snapshot_live_keys,
            member: self.plan.name.clone(),
            revisions_discarded: self.plan.revisions_discarded(),
            kept: if done {
                vec![(SwapKind::Data, format!("/node/var/lib/etcd-old-{RUN}").into())]
            } else {
                Vec::new()
            },
            set_aside: Vec::new(),
            copies: Vec::new(),
            run_dir: self.plan.run_dir.clone(),
            undo: done.then(|| Command::rescue(["rollback", "--root", "/node", "--run", RUN])),
            timings: STAGES
                .iter()
                .take(self.next.min(STAGES.len()))
                .map(|s| (s.id, Duration::from_millis(250)))
                .collect(),
            outage: done.then(|| Duration::from_millis(1500)),
            before_outage: vec![StageId::RestoreSnapshot, StageId::SetOwnership],
            peers: Vec::new(),
            verify: None,
            settle: None,
            late: Vec::new(),
        }))
    }

    fn on(&mut self, r: Reply) -> Vec<Event> {
        match r {
            Reply::Answer(Answer::Yes) if self.next == 0 && !self.ended => {
                let mut v = vec![Event::Begin(RunStart {
                    run_dir: self.plan.run_dir.clone(),
                    done: Vec::new(),
                    rolling_back: false,
                    order: Order::Staged,
                    outage_began: None,
                })];
                v.push(self.stage());
                self.next = usize::MAX;
                v
            }
            Reply::Answer(Answer::Yes) => {
                if self.next == usize::MAX {
                    self.next = 0;
                }
                let id = STAGES[self.next].id;
                if self.hold_at == Some(self.next) {
                    return Vec::new();
                }
                if self.wait_at == Some(self.next) {
                    return vec![Event::WaitTimeout(self.holders.clone())];
                }
                let mut v = vec![Event::Line(format!("applying {id}"))];
                if self.fail_at == Some(self.next) {
                    self.fail_at = None;
                    v.push(Event::Failed(Failure {
                        stage: id,
                        error: "etcdutl exited with exit status: 1; its output is above".into(),
                        journal: format!("/node/var/lib/etcd-rescue/runs/{RUN}/journal.jsonl").into(),
                        resume: Command::rescue(["resume", "--root", "/node"]),
                        rollback: Command::rescue(["rollback", "--root", "/node", "--run", RUN]),
                    }));
                    return v;
                }
                v.push(Event::StageDone {
                    id,
                    took: Duration::from_millis(250),
                });
                self.next += 1;
                v.push(if self.next == STAGES.len() {
                    self.summary(Outcome::Done)
                } else {
                    self.stage()
                });
                v
            }
            Reply::Answer(Answer::Rollback) | Reply::Wait(WaitChoice::Rollback) => {
                vec![
                    Event::RollingBack,
                    Event::Line("moved /node/etc/kubernetes/manifests/etcd.yaml back".into()),
                    self.summary(Outcome::RolledBack),
                ]
            }
            Reply::Wait(WaitChoice::KeepWaiting | WaitChoice::ForceStop | WaitChoice::Terminate) => {
                Vec::new()
            }
            Reply::Answer(Answer::Quit) | Reply::Wait(WaitChoice::Quit) => {
                self.ended = true;
                Vec::new()
            }
        }
    }
}

/// The wizard on a 80x24 test terminal, with the scripted engine behind it.
struct Ui {
    app: App,
    term: Terminal<TestBackend>,
    engine: Engine,
    replies: Vec<Reply>,
    cmds: Vec<Cmd>,
}

impl Ui {
    fn new(app: App) -> Ui {
        Ui::sized(app, 80, 24)
    }

    fn sized(mut app: App, w: u16, h: u16) -> Ui {
        app.size = (w, h);
        app.later = Later {
            resume: Command::rescue(["resume", "--root", "/node"]),
            rollback: Command::rescue(["rollback", "--root", "/node"]),
        };
        app.now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        let mut ui = Ui {
            app,
            term: Terminal::new(TestBackend::new(w, h)).unwrap(),
            engine: Engine::new(),
            replies: Vec::new(),
            cmds: Vec::new(),
        };
        ui.draw();
        ui
    }

    /// A restore run by the scripted engine, at its plan.
    fn restore() -> Ui {
        let mut ui = Ui::new(App::new(Mode::Restore, Screen::Planning));
        let lines = render::plan(&ui.engine.plan);
        ui.event(Event::Plan(lines));
        ui
    }

    fn draw(&mut self) {
        let app = &self.app;
        self.term.draw(|f| f.render_widget(app, f.area())).unwrap();
        let viewport = view::measure(&self.app);
        super::update::update(&mut self.app, Action::Drawn(Instant::now(), viewport));
    }

    fn act(&mut self, a: Action) {
        let cmds = super::update::update(&mut self.app, a);
        self.draw();
        for c in cmds {
            if let Cmd::Reply(r) = c {
                self.replies.push(r);
                for e in self.engine.on(r) {
                    self.event(e);
                }
            } else {
                self.cmds.push(c);
            }
        }
    }

    fn event(&mut self, e: Event) {
        self.act(Action::Engine(e));
    }

    fn keys(&mut self, keys: &str) -> &mut Ui {
        for k in keys::parse(keys) {
            self.act(Action::Key(k, Instant::now()));
        }
        self
    }

    fn screen(&self) -> String {
        let buf = self.term.backend().buffer();
        let mut out = String::new();
        for y in 0..buf.area.height {
            let mut line = String::new();
            for x in 0..buf.area.width {
                line.push_str(buf[(x, y)].symbol());
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Runs `keys` on a restore from its plan and returns the screen.
fn scenario(keys: &str) -> Ui {
    let mut ui = Ui::restore();
    ui.keys(keys);
    ui
}

/// The plan review: node, warnings, revisions discarded, every stage's commands, `y` to start.
#[test]
fn plan_review() {
    let ui = Ui::restore();
    assert!(matches!(ui.app.screen, Screen::Plan(_)));
    insta::assert_snapshot!(ui.screen());
}

/// Scrolling the plan shows the stages' exact commands further down; each
/// path and flag is whole on one line (never `/node/var/lib/` / `etcd-rescue/…`).
#[test]
fn plan_review_scrolled() {
    let ui = scenario("<pgdn><pgdn><down><down><down><down>");
    assert!(ui.replies.is_empty());
    let screen = ui.screen();
    insta::assert_snapshot!(screen);
    let words: Vec<&str> = screen.split_whitespace().collect();
    for w in [
        "/node/var/lib/etcd.restore-20260101T000000Z-abcd",
        "/node/var/lib/etcd-rescue/runs/20260101T000000Z-abcd/manifests/etcd.yaml",
    ] {
        assert!(words.contains(&w), "{w} not whole on a line:\n{screen}");
    }
    for w in &words {
        assert!(!w.ends_with('/'), "a path cut after a slash: {w}\n{screen}");
        // Wider than the whole screen: one line, its start and its file name kept.
        if w.contains('…') {
            let name = w.rsplit('/').next().unwrap_or_default();
            assert!(
                w.starts_with("/node/") && name.starts_with("kube-"),
                "{w}\n{screen}"
            );
        }
    }
}

/// `q` on the plan cancels before any change.
#[test]
fn plan_quit_cancels() {
    let ui = scenario("q");
    assert_eq!(ui.replies, [Reply::Answer(Answer::Quit)]);
}

/// `y` on the plan starts the run: the first stage asks, with the runbook down the side.
#[test]
fn first_stage() {
    let ui = scenario("y");
    assert!(matches!(ui.app.screen, Screen::Stage { .. }));
    insta::assert_snapshot!(ui.screen());
}

/// Enter (and any other key) never applies a stage.
#[test]
fn enter_does_not_apply() {
    let ui = scenario("y<enter><enter>xY ");
    assert_eq!(ui.replies, [Reply::Answer(Answer::Yes)]);
    assert!(matches!(ui.app.screen, Screen::Stage { .. }));
}

/// A key read before the question was on screen is discarded; the same key afterwards counts.
#[test]
fn keys_before_the_question_are_discarded() {
    let mut ui = scenario("y");
    let early = Instant::now().checked_sub(Duration::from_secs(1)).unwrap();
    let y = keys::parse("y")[0];
    ui.act(Action::Key(y, early));
    assert_eq!(ui.replies.len(), 1, "the early y was discarded");
    let mut fresh = App::new(Mode::Restore, Screen::Planning);
    super::update::update(&mut fresh, Action::Engine(Event::Stage(view(&sample_plan(), 0))));
    assert!(
        super::update::update(&mut fresh, Action::Key(y, Instant::now())).is_empty(),
        "not drawn yet"
    );
    ui.keys("y");
    assert_eq!(ui.replies.len(), 2);
}

/// While a stage runs its output streams in, the stage marked running.
#[test]
fn applying_shows_live_output() {
    let mut ui = Ui::restore();
    ui.engine.hold_at = Some(1);
    ui.keys("yyy");
    assert!(matches!(
        ui.app.screen,
        Screen::Applying {
            stage: StageId::RestoreSnapshot,
            ..
        }
    ));
    assert_eq!(ui.app.rows[1].mark, Mark::Running);
    for l in [
        "still running: pod etcd-cp1, pod kube-apiserver-cp1",
        "$ /usr/local/bin/etcdutl snapshot restore /node/backup/etcd-20251231.db --name=cp1",
        "2026-01-01T00:00:01Z info snapshot/v3_snapshot.go:248 restoring snapshot",
        "2026-01-01T00:00:02Z info membership/cluster.go:421 added member",
        "2026-01-01T00:00:02Z info snapshot/v3_snapshot.go:269 restored snapshot",
    ] {
        ui.event(Event::Line(l.into()));
    }
    ui.event(Event::Progress(Progress {
        what: ProgressOf::Restore,
        done: 600 << 20,
        total: 1200 << 20,
        elapsed: Duration::from_secs(3),
    }));
    insta::assert_snapshot!(ui.screen());
}

/// After a stage, the next one asks and says how the previous one ended.
#[test]
fn next_stage_shows_previous_result() {
    let ui = scenario("yyy");
    let Screen::Stage { view, previous } = &ui.app.screen else {
        panic!("not on a stage: {:?}", ui.app.screen);
    };
    assert_eq!(view.id, StageId::SetOwnership);
    assert_eq!(previous.as_ref().map(|p| p.id), Some(StageId::RestoreSnapshot));
    insta::assert_snapshot!(ui.screen());
}

/// `r` asks before rolling back.
#[test]
fn rollback_asks_first() {
    let ui = scenario("yyyr");
    assert_eq!(ui.app.popup.map(|p| p.what), Some(Popup::Rollback));
    assert_eq!(ui.replies.len(), 3);
    insta::assert_snapshot!(ui.screen());
}

/// `r` then `n` goes back to the stage; `r` then `y` rolls back and ends on the summary.
#[test]
fn rollback_at_a_stage() {
    let ui = scenario("yyyrn");
    assert_eq!(ui.app.popup, None);
    assert_eq!(ui.replies.len(), 3);
    let ui = scenario("yyyry");
    assert_eq!(ui.replies.last(), Some(&Reply::Answer(Answer::Rollback)));
    assert!(matches!(ui.app.screen, Screen::Summary(_)));
    assert!(ui.cmds.contains(&Cmd::Save));
    insta::assert_snapshot!(ui.screen());
}

/// A failed stage: what failed, the journal, the exact resume command, and the choices.
#[test]
fn failure_screen() {
    let mut ui = Ui::restore();
    ui.engine.fail_at = Some(1);
    ui.keys("yyy");
    assert!(matches!(ui.app.screen, Screen::Failed { .. }));
    insta::assert_snapshot!(ui.screen());
}

/// `y` on a failure retries the stage.
#[test]
fn failure_retry() {
    let mut ui = Ui::restore();
    ui.engine.fail_at = Some(1);
    ui.keys("yyyy");
    let Screen::Stage { view, .. } = &ui.app.screen else {
        panic!("not on a stage: {:?}", ui.app.screen);
    };
    assert_eq!(view.id, StageId::SetOwnership);
    assert_eq!(ui.app.rows[1].mark, Mark::Done);
}

/// Pods outliving the wait: keep waiting, stop them, roll back or stop here.
#[test]
fn wait_timeout() {
    let mut ui = Ui::restore();
    ui.engine.wait_at = Some(5);
    ui.keys("yyyyyyy");
    assert_eq!(ui.app.question.map(|q| q.what), Some(Asked::Wait));
    assert_eq!(ui.app.rows[5].mark, Mark::Running);
    insta::assert_snapshot!(ui.screen());
    ui.keys("w");
    assert_eq!(ui.replies.last(), Some(&Reply::Wait(WaitChoice::KeepWaiting)));
    assert!(matches!(
        ui.app.screen,
        Screen::Applying {
            stage: StageId::WaitStopped,
            ..
        }
    ));
}

/// A host process outliving the wait is named as it is
/// (PID, command line, the file it holds); CRI stop is not offered for it,
/// `s` does nothing, and `t` asks before sending SIGTERM.
#[test]
fn wait_timeout_host_process() {
    let mut ui = Ui::restore();
    ui.engine.wait_at = Some(5);
    ui.engine.holders = vec![process_holder()];
    ui.keys("yyyyyyy");
    assert_eq!(ui.app.question.map(|q| q.what), Some(Asked::Wait));
    let screen = ui.screen();
    insta::assert_snapshot!(screen);
    assert!(screen.contains("PID 4242 (sleep 600)"), "{screen}");
    assert!(
        !screen.contains("s stop"),
        "no CRI stop for a host process: {screen}"
    );
    assert!(!screen.contains("pods still up"), "{screen}");
    let n = ui.replies.len();
    ui.keys("s");
    assert_eq!(ui.replies.len(), n, "s does nothing for a host process");
    ui.keys("t");
    assert_eq!(ui.app.popup.map(|p| p.what), Some(Popup::Terminate));
    assert!(ui.screen().contains("Send SIGTERM?"), "{}", ui.screen());
    assert_eq!(ui.replies.len(), n, "t asks first");
    ui.keys("n");
    assert_eq!(ui.app.popup, None);
    ui.keys("ty");
    assert_eq!(ui.replies.last(), Some(&Reply::Wait(WaitChoice::Terminate)));
    assert!(matches!(
        ui.app.screen,
        Screen::Applying {
            stage: StageId::WaitStopped,
            ..
        }
    ));
}

/// While `wait-stopped` waits, the screen names what still runs and counts down
/// the time left before it asks.
#[test]
fn waiting_counts_down() {
    let mut ui = Ui::restore();
    ui.engine.hold_at = Some(5);
    ui.keys("yyyyyyy");
    let wait = |left| {
        Event::Waiting(Wait {
            holders: vec![process_holder()],
            left: Duration::from_secs(left),
            changed: left == 120,
        })
    };
    ui.event(wait(120));
    ui.event(wait(114));
    let screen = ui.screen();
    insta::assert_snapshot!(screen);
    assert!(screen.contains("1:54 left"), "{screen}");
    ui.event(wait(113));
    assert!(ui.screen().contains("1:53 left"), "{}", ui.screen());
}

/// A whole run: `y` at the plan and at every stage ends on the summary with the timings.
#[test]
fn full_run_summary() {
    let ui = scenario(&"y".repeat(STAGES.len() + 1));
    assert!(matches!(ui.app.screen, Screen::Summary(_)));
    assert!(ui.app.rows.iter().all(|r| r.mark == Mark::Done));
    assert!(
        ui.app
            .transcript
            .iter()
            .any(|l| l.contains("answer: apply start-control-plane")),
        "{:?}",
        ui.app.transcript
    );
    insta::assert_snapshot!(ui.screen());
}

/// Ctrl-C asks before abandoning.
#[test]
fn ctrl_c_asks() {
    let ui = scenario("yy<c-c>");
    assert_eq!(ui.app.popup.map(|p| p.what), Some(Popup::Stop));
    insta::assert_snapshot!(ui.screen());
}

/// Ctrl-C then `n` goes on; then `y` stops at the boundary: the question is answered "quit".
#[test]
fn ctrl_c_then_stop() {
    let ui = scenario("yy<c-c>n");
    assert_eq!(ui.app.popup, None);
    assert!(ui.app.stopping.is_none());
    let ui = scenario("yy<c-c>y");
    assert_eq!(ui.replies.last(), Some(&Reply::Answer(Answer::Quit)));
    assert!(ui.app.stopping.is_some());
}

/// Ctrl-C confirmed while a stage runs: nothing is interrupted, the next question is answered "quit".
#[test]
fn ctrl_c_while_applying_stops_at_the_boundary() {
    let mut ui = Ui::restore();
    ui.engine.hold_at = Some(1);
    ui.keys("yyy");
    assert!(matches!(ui.app.screen, Screen::Applying { .. }));
    ui.keys("<c-c>y");
    assert!(ui.app.stopping.is_some());
    assert_eq!(ui.replies.len(), 3, "nothing answered while the stage runs");
    ui.event(Event::StageDone {
        id: STAGES[1].id,
        took: Duration::from_millis(250),
    });
    ui.engine.next = 2;
    let next = ui.engine.stage();
    ui.event(next);
    assert_eq!(ui.replies.last(), Some(&Reply::Answer(Answer::Quit)));
    ui.act(Action::Finished);
    assert!(ui.app.exit);
}

/// SIGTERM answers a pending question "quit" and ends the wizard once the engine returns.
#[test]
fn sigterm_stops_at_the_boundary() {
    let mut ui = scenario("yy");
    ui.act(Action::Signal("SIGTERM".into()));
    assert_eq!(ui.replies.last(), Some(&Reply::Answer(Answer::Quit)));
    assert!(!ui.app.exit);
    ui.act(Action::Finished);
    assert!(ui.app.exit);
}

/// `?` lists the keys of the screen below.
#[test]
fn help() {
    let ui = scenario("y?");
    assert_eq!(ui.app.popup.map(|p| p.what), Some(Popup::Help));
    insta::assert_snapshot!(ui.screen());
    let mut ui = ui;
    ui.keys("?");
    assert_eq!(ui.app.popup, None);
}

/// `resume`: the stages the journal records done are marked, the next one asks
/// (at 100 columns, where its paths stand whole beside the runbook).
#[test]
fn resume_marks_done_stages() {
    let mut ui = Ui::sized(App::new(Mode::Resume, Screen::Planning), 100, 24);
    insta::assert_snapshot!("resume_opening", ui.screen());
    ui.event(Event::Begin(RunStart {
        run_dir: sample_plan().run_dir,
        done: STAGES[..4].iter().map(|s| s.id).collect(),
        rolling_back: false,
        order: Order::Staged,
        outage_began: None,
    }));
    ui.event(Event::Stage(view(&sample_plan(), 4)));
    insta::assert_snapshot!(ui.screen());
}

/// `etcd-rescue rollback` shows the run and asks before starting.
#[test]
fn rollback_command_confirms() {
    let app = App::new(
        Mode::Rollback,
        Screen::ConfirmRollback(vec![
            format!("run       {RUN}"),
            format!("journal   /node/var/lib/etcd-rescue/runs/{RUN}/journal.jsonl"),
            "snapshot  /node/backup/etcd-20251231.db".into(),
            "state     ended: done".into(),
        ]),
    );
    let mut ui = Ui::new(app);
    insta::assert_snapshot!(ui.screen());
    ui.keys("y");
    assert_eq!(ui.cmds, [Cmd::Start(None)]);
    assert!(matches!(ui.app.screen, Screen::RollingBack { .. }));
}

fn picker_ui() -> Ui {
    let mut ui = Ui::new(App::new(Mode::Restore, Screen::Picker));
    insta::assert_snapshot!("picker_looking", ui.screen());
    let t = |s: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600 - s);
    let found = |p: &str, size: u64, age: u64| Found {
        path: PathBuf::from(p),
        size,
        modified: t(age),
        remote: p.starts_with("s3://"),
    };
    ui.act(Action::Picker(Msg::Found {
        files: vec![
            found("/node/backup/etcd-20251231.db", 3 << 20, 3600),
            found("/node/backup/daily/etcd-20251230.db", 3 << 20, 90_000),
            found("/node/backup/etcd-copied-member-db", 2 << 20, 200_000),
            found(
                "s3://etcd-backups/prod/snapshot-20251228T000000Z.db",
                3 << 20,
                300_000,
            ),
        ],
        dirs: vec![
            "/node/backup".into(),
            "/node/var/backups/etcd".into(),
            "s3://etcd-backups/prod".into(),
        ],
        data_dir: Some("/node/var/lib/etcd".into()),
        remote_errors: Vec::new(),
    }));
    ui
}

/// The picker: snapshots newest first with size, age and the native status as it comes in.
#[test]
fn picker() {
    let mut ui = picker_ui();
    assert_eq!(ui.cmds, [Cmd::Detail("/node/backup/etcd-20251231.db".into())]);
    let ok = |rev, keys| Checked {
        ok: true,
        integrity: Some(Integrity::Verified),
        revision: rev,
        keys,
        message: "the database is sound (sha256 verified)".into(),
        sealed: false,
    };
    ui.act(Action::Picker(Msg::Checked(0, Ok(ok(1200, 1024)))));
    ui.act(Action::Picker(Msg::Checked(
        1,
        Ok(Checked {
            ok: false,
            integrity: Some(Integrity::Mismatch),
            message: "the sha256 trailer does not match".into(),
            ..ok(1100, 990)
        }),
    )));
    ui.act(Action::Picker(Msg::Detail(
        "/node/backup/etcd-20251231.db".into(),
        Box::new(Ok(Detail {
            members: vec!["cp1 https://10.0.0.11:2380".into()],
            live_keys: 805,
            compact_revision: 1100,
            resources: vec![
                ("pods".into(), 300),
                ("configmaps".into(), 120),
                ("secrets".into(), 80),
            ],
            diff: Ok(Changes {
                current: "/node/var/lib/etcd/member/snap/db".into(),
                current_revision: 1342,
                brought_back: 2,
                lost: 14,
                changed: 30,
                unchanged: 761,
                groups: vec![
                    ("pods".into(), Some("default".into()), 0, 10, 20),
                    ("configmaps".into(), Some("kube-system".into()), 2, 4, 10),
                ],
            }),
        })),
    )));
    insta::assert_snapshot!(ui.screen());
    ui.keys("j<enter>");
    assert!(ui.app.notice.is_some(), "a damaged snapshot is not taken");
    assert!(matches!(ui.app.screen, Screen::Picker));
    ui.act(Action::Picker(Msg::Checked(
        2,
        Ok(Checked {
            integrity: Some(Integrity::Absent),
            ..ok(1000, 900)
        }),
    )));
    ui.keys("j<enter>");
    assert!(
        ui.app
            .notice
            .as_ref()
            .is_some_and(|n| n.contains("--skip-hash-check")),
        "a copy without a trailer needs --skip-hash-check"
    );
    // An encrypted backup needs the key: without --identity the wizard says so and waits.
    ui.act(Action::Picker(Msg::Checked(
        2,
        Ok(Checked {
            sealed: true,
            message: "encrypted (age); verified when saved".into(),
            ..ok(1000, 900)
        }),
    )));
    ui.keys("<enter>");
    assert!(
        ui.app
            .notice
            .as_ref()
            .is_some_and(|n| n.contains("--identity FILE")),
        "an encrypted backup needs --identity"
    );
    assert!(matches!(ui.app.screen, Screen::Picker));
    ui.app.identity = true;
    ui.keys("<enter>");
    assert!(matches!(ui.app.screen, Screen::Planning));
    assert_eq!(
        ui.cmds.last(),
        Some(&Cmd::Start(Some("/node/backup/etcd-copied-member-db".into())))
    );
}

/// The cursor starts on the newest verified snapshot, not on a newer damaged
/// one, and follows the checks as they come in until the operator moves it.
#[test]
fn picker_starts_on_the_newest_verified() {
    let mut ui = picker_ui();
    let checked = |ok: bool, integrity| Checked {
        ok,
        integrity: Some(integrity),
        revision: 1,
        keys: 1,
        message: String::new(),
        sealed: false,
    };
    assert_eq!(ui.app.picker.selected, 0);
    ui.act(Action::Picker(Msg::Checked(
        0,
        Ok(checked(false, Integrity::Mismatch)),
    )));
    assert_eq!(ui.app.picker.selected, 1, "off the damaged one, onto the next");
    ui.act(Action::Picker(Msg::Checked(
        1,
        Ok(checked(true, Integrity::Verified)),
    )));
    assert_eq!(ui.app.picker.selected, 1, "the newest verified one");
    assert_eq!(
        ui.cmds.last(),
        Some(&Cmd::Detail("/node/backup/daily/etcd-20251230.db".into())),
        "its contents are read"
    );
    ui.keys("k");
    assert_eq!(ui.app.picker.selected, 0, "the operator may still choose it");
    ui.act(Action::Picker(Msg::Checked(
        2,
        Ok(checked(true, Integrity::Absent)),
    )));
    assert_eq!(
        ui.app.picker.selected, 0,
        "once moved, the cursor stays where the operator put it"
    );
}

/// No snapshot anywhere: the picker says where it looked and what to pass.
#[test]
fn picker_nothing_found() {
    let mut ui = Ui::new(App::new(Mode::Restore, Screen::Picker));
    ui.act(Action::Picker(Msg::Found {
        files: Vec::new(),
        dirs: vec!["/node/backup".into(), "/node/var/backups/etcd".into()],
        data_dir: None,
        remote_errors: vec!["s3://etcd-backups/prod: AccessDenied".into()],
    }));
    insta::assert_snapshot!(ui.screen());
    ui.keys("q");
    assert!(ui.app.exit);
}

/// Wider and narrower terminals: the panes follow; below 64 columns the runbook gives way.
#[test]
fn resize() {
    let mut ui = scenario("yyy");
    let app = ui.app.clone();
    let mut wide = Ui::sized(app.clone(), 100, 30);
    wide.draw();
    insta::assert_snapshot!("resize_100x30", wide.screen());
    let mut narrow = Ui::sized(app, 60, 20);
    narrow.draw();
    insta::assert_snapshot!("resize_60x20", narrow.screen());
    ui.act(Action::Resize(60, 20));
    assert_eq!(ui.app.size, (60, 20));
}

/// Without colour every state still reads from text: no cell has a colour.
#[test]
fn no_color() {
    let mut ui = scenario("yyy");
    ui.app.color = false;
    ui.draw();
    let buf = ui.term.backend().buffer();
    for c in &buf.content {
        assert_eq!(c.fg, ratatui::style::Color::Reset);
        assert_eq!(c.bg, ratatui::style::Color::Reset);
    }
    assert!(ui.screen().contains("[x] restore-snapshot"));
    assert!(ui.screen().contains("[>] set-ownership"));
}

/// The transcript records the plan, every stage with its answer and output, and the summary.
#[test]
fn transcript() {
    let ui = scenario(&"y".repeat(STAGES.len() + 1));
    let t = ui.app.transcript.join("\n");
    for want in [
        "Restore plan",
        "[2/10] restore-snapshot",
        "answer: apply verify",
        "applying verify",
        "done: verify",
        "Run ",
    ] {
        assert!(t.contains(want), "{want} missing from:\n{t}");
    }
}

/// A detail the reader skipped (the operator moved on) is asked for again when its snapshot is highlighted again.
#[test]
fn picker_skipped_detail_is_asked_again() {
    let mut ui = picker_ui();
    ui.keys("j");
    ui.act(Action::Picker(Msg::Skipped(
        "/node/backup/etcd-20251231.db".into(),
    )));
    ui.cmds.clear();
    ui.keys("k");
    assert_eq!(ui.cmds, [Cmd::Detail("/node/backup/etcd-20251231.db".into())]);
}

/// Command output is drawn safely: tabs expand, escape sequences and control characters go.
#[test]
fn output_is_cleaned() {
    assert_eq!(app::clean("2026Z\tinfo\tmsg"), "2026Z   info    msg");
    assert_eq!(app::clean("\u{1b}[31mred\u{1b}[0m\r\u{7}"), "red");
}

/// Quitting while a resume opens its journal never claims "nothing was changed":
/// the node may be half restored, so it asks, as at a stage.
#[test]
fn quit_while_a_resume_opens_asks_instead_of_claiming_no_change() {
    let q = keys::parse("q")[0];
    let mut resume = App::new(Mode::Resume, Screen::Planning);
    super::update::update(&mut resume, Action::Key(q, Instant::now()));
    assert_eq!(resume.popup.map(|p| p.what), Some(Popup::Stop));
    assert!(
        resume
            .notice
            .as_deref()
            .is_none_or(|n| !n.contains("nothing was changed"))
    );
    // A restore still computing its plan has changed nothing and says so.
    let mut planning = App::new(Mode::Restore, Screen::Planning);
    super::update::update(&mut planning, Action::Key(q, Instant::now()));
    assert_eq!(planning.popup, None);
    assert_eq!(
        planning.notice.as_deref(),
        Some("cancelling: nothing was changed")
    );
}

/// The outage on screen: the stage that begins it says so before `y`; inside
/// it the top line and the stage show the clock since the first manifest went
/// out; the stages before it say the cluster still serves.
#[test]
fn outage_clock() {
    let mut ui = scenario("yy");
    assert!(
        ui.screen()
            .contains("The cluster still serves: nothing is stopped yet.")
    );
    ui.keys("yy");
    let Screen::Stage { view, .. } = &ui.app.screen else {
        panic!("not on a stage: {:?}", ui.app.screen);
    };
    assert_eq!(view.id, StageId::StopControlPlane);
    assert!(ui.app.outage.is_none(), "nothing is stopped before y");
    insta::assert_snapshot!("outage_begins", ui.screen());
    ui.keys("y");
    let began = ui.app.outage.expect("the outage began with y").0;
    ui.act(Action::Tick(began + Duration::from_secs(12)));
    insta::assert_snapshot!("outage_running", ui.screen());
    ui.keys("yyyyy");
    ui.act(Action::Tick(began + Duration::from_secs(15)));
    let (_, ended) = ui.app.outage.unwrap();
    assert_eq!(ended, Some(began + Duration::from_secs(12)), "verify ended it");
    assert!(ui.screen().contains("Outage over: 0:12"), "{}", ui.screen());
}

/// At 80 columns the runbook gives way when a path would not
/// stand whole beside it, so every word is whole on a line; wider, it stays.
#[test]
fn runbook_gives_way_to_whole_words() {
    let ui = scenario("yy");
    let Screen::Stage { view, .. } = &ui.app.screen else {
        panic!("not on a stage: {:?}", ui.app.screen);
    };
    assert_eq!(view.id, StageId::RestoreSnapshot);
    let screen = ui.screen();
    assert!(!screen.contains("[x] preflight"), "{screen}");
    let flag = format!("--data-dir=/node/var/lib/etcd.restore-{RUN}.partial");
    assert!(screen.split_whitespace().any(|w| w == flag), "{screen}");
    let mut wide = Ui::sized(ui.app.clone(), 120, 30);
    wide.draw();
    let screen = wide.screen();
    assert!(screen.contains("[x] preflight"), "{screen}");
    assert!(screen.split_whitespace().any(|w| w == flag), "{screen}");
}
