//! The wizard's [`Face`]: the engine runs on a worker thread and calls this
//! face synchronously; every call becomes an [`Event`] for the UI thread, and
//! every question blocks on the reply channel until the operator answers. If
//! the UI is gone, every question is answered "quit", which the engine turns
//! into a journaled stop at the stage boundary.

use std::sync::mpsc::Receiver;
use std::time::Duration;

use crate::restore::face::Face;
use crate::restore::plan::Plan;
use crate::restore::render::{self, Line};
use crate::restore::stage::StageId;
use crate::restore::view::{
    Answer, Failure, Holder, Paused, Progress, RunStart, StageView, Summary, Wait, WaitChoice,
};

/// What the engine shows or asks, as the UI thread receives it.
#[derive(Debug, Clone)]
pub enum Event {
    /// The run exists: its dir, the stages its journal records done, and
    /// whether a rollback was begun.
    Begin(RunStart),
    /// The plan, rendered with its tones; a question (answered with [`Reply::Answer`]).
    Plan(Vec<Line>),
    /// The next stage; a question.
    Stage(StageView),
    /// A line of progress or command output.
    Line(String),
    /// How far a long step is.
    Progress(Progress),
    /// A stage finished and verified its effect.
    StageDone {
        /// The stage.
        id: StageId,
        /// How long it took.
        took: Duration,
    },
    /// A rollback starts.
    RollingBack,
    /// A stage failed; a question (retry = yes).
    Failed(Failure),
    /// What still runs on etcd's data and the time left of the wait (each second).
    Waiting(Wait),
    /// These outlived `--wait-timeout`; a question (answered with [`Reply::Wait`]).
    WaitTimeout(Vec<Holder>),
    /// The final summary.
    Summary(Box<Summary>),
}

impl Event {
    /// Whether the engine waits for a reply to this event.
    pub fn is_question(&self) -> bool {
        matches!(
            self,
            Event::Plan(_) | Event::Stage(_) | Event::Failed(_) | Event::WaitTimeout(_)
        )
    }
}

/// The operator's reply to a question.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// To the plan, a stage or a failure.
    Answer(Answer),
    /// To pods outliving the wait.
    Wait(WaitChoice),
}

/// A [`Face`] that forwards everything to the UI thread.
pub struct ChannelFace {
    sink: Box<dyn Fn(Event) -> bool + Send>,
    replies: Receiver<Reply>,
}

impl ChannelFace {
    /// A face that hands events to `sink` (false: the UI is gone) and reads answers from `replies`.
    pub fn new(sink: impl Fn(Event) -> bool + Send + 'static, replies: Receiver<Reply>) -> ChannelFace {
        ChannelFace {
            sink: Box::new(sink),
            replies,
        }
    }

    fn ask(&mut self, event: Event) -> Reply {
        if !(self.sink)(event) {
            return Reply::Answer(Answer::Quit);
        }
        self.replies.recv().unwrap_or(Reply::Answer(Answer::Quit))
    }

    fn answer(&mut self, event: Event) -> Answer {
        match self.ask(event) {
            Reply::Answer(a) => a,
            Reply::Wait(_) => Answer::Quit,
        }
    }
}

impl Face for ChannelFace {
    fn begin(&mut self, run: &RunStart) {
        (self.sink)(Event::Begin(run.clone()));
    }
    fn plan(&mut self, plan: &Plan) -> Answer {
        self.answer(Event::Plan(render::plan(plan)))
    }
    fn stage(&mut self, view: &StageView) -> Answer {
        self.answer(Event::Stage(view.clone()))
    }
    fn line(&mut self, text: &str) {
        (self.sink)(Event::Line(text.to_string()));
    }
    fn progress(&mut self, progress: &Progress) {
        (self.sink)(Event::Progress(*progress));
    }
    fn stage_done(&mut self, id: StageId, took: Duration) {
        (self.sink)(Event::StageDone { id, took });
    }
    fn rolling_back(&mut self) {
        (self.sink)(Event::RollingBack);
    }
    fn failed(&mut self, failure: &Failure) -> Answer {
        self.answer(Event::Failed(failure.clone()))
    }
    fn waiting(&mut self, wait: &Wait) {
        (self.sink)(Event::Waiting(wait.clone()));
    }
    fn wait_timeout(&mut self, holders: &[Holder]) -> WaitChoice {
        match self.ask(Event::WaitTimeout(holders.to_vec())) {
            Reply::Wait(w) => w,
            Reply::Answer(_) => WaitChoice::Quit,
        }
    }
    fn summary(&mut self, summary: &Summary) {
        (self.sink)(Event::Summary(Box::new(summary.clone())));
    }
    fn paused(&mut self, paused: &Paused) {
        // The wizard has no --until: a pause is shown as the plain lines of its summary.
        for l in render::text(&render::paused(paused)) {
            (self.sink)(Event::Line(l));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// Each question reaches the UI as an event and returns the UI's reply;
    /// once the UI is gone every question is answered "quit".
    #[test]
    fn questions_block_on_replies_and_quit_without_a_ui() {
        let (etx, erx) = mpsc::channel();
        let (rtx, rrx) = mpsc::channel();
        let mut face = ChannelFace::new(move |e| etx.send(e).is_ok(), rrx);
        let ui = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for e in erx {
                if e.is_question() {
                    let _ = rtx.send(match e {
                        Event::WaitTimeout(_) => Reply::Wait(WaitChoice::KeepWaiting),
                        _ => Reply::Answer(Answer::Rollback),
                    });
                }
                seen.push(
                    format!("{e:?}")
                        .split(['(', ' ', '{'])
                        .next()
                        .unwrap()
                        .to_string(),
                );
            }
            seen
        });
        face.line("hello");
        assert_eq!(face.plan(&crate::restore::plan::example_plan()), Answer::Rollback);
        let pod = Holder::Pod {
            name: "etcd-cp1".into(),
            id: "1a2b".into(),
        };
        assert_eq!(face.wait_timeout(&[pod]), WaitChoice::KeepWaiting);
        face.rolling_back();
        drop(face);
        assert_eq!(ui.join().unwrap(), ["Line", "Plan", "WaitTimeout", "RollingBack"]);
        let (rtx, rrx) = mpsc::channel::<Reply>();
        drop(rtx);
        let mut orphan = ChannelFace::new(|_| false, rrx);
        let failure = Failure {
            stage: StageId::Verify,
            error: "boom".into(),
            journal: "/j".into(),
            resume: crate::restore::command::Command::rescue(["resume"]),
            rollback: crate::restore::command::Command::rescue(["rollback"]),
        };
        assert_eq!(orphan.failed(&failure), Answer::Quit);
        assert_eq!(orphan.wait_timeout(&[]), WaitChoice::Quit);
    }
}
