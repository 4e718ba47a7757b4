//! The faces of the engine: what the operator sees and answers.
//!
//! The runner tells a [`Face`] what happens as values (the plan, a stage, a
//! failure, the summary) and asks it for decisions; it holds no logic of its
//! own. Only a renderer turns the values into words: [`super::render`] for
//! text, `tui::view` for the wizard. [`Text`] is the headless face (`--yes`,
//! answers yes to every stage) and the line prompt (`--plain`, accepts only
//! the exact words, so a stray Enter or a typo never changes a node).

use std::io::{BufRead, Write};
use std::time::Duration;

use super::plan::Plan;
use super::render;
use super::stage::StageId;
use super::view::{
    Answer, Failure, Holder, Paused, Phase, Progress, RunStart, StageView, Summary, Wait, WaitChoice,
};

/// Everything the runner shows or asks.
pub trait Face {
    /// The run exists (its journal is open): where it is and how far it got.
    fn begin(&mut self, _run: &RunStart) {}
    /// The plan, before anything changes; returns whether to go on.
    fn plan(&mut self, plan: &Plan) -> Answer;
    /// A stage is next: show it and ask.
    fn stage(&mut self, view: &StageView) -> Answer;
    /// A line of progress or command output.
    fn line(&mut self, text: &str);
    /// How far a long step is (every second or so while it runs).
    fn progress(&mut self, progress: &Progress);
    /// A stage finished and verified.
    fn stage_done(&mut self, id: StageId, took: Duration);
    /// A rollback starts (asked for, or resumed).
    fn rolling_back(&mut self) {}
    /// A stage failed; returns the choice (retry = Yes).
    fn failed(&mut self, failure: &Failure) -> Answer;
    /// What still runs on etcd's data, and the time left before the runner
    /// asks (about every second while it waits, at once when it changes).
    fn waiting(&mut self, _wait: &Wait) {}
    /// `holders` outlived the wait: the choices offered follow from them
    /// ([`render::wait_choices`]); the runner asks again on one that cannot work.
    fn wait_timeout(&mut self, holders: &[Holder]) -> WaitChoice;
    /// The final summary.
    fn summary(&mut self, summary: &Summary);
    /// The session stopped after a stage on purpose (`--until`): the run is
    /// paused, unfinished and resumable.
    fn paused(&mut self, paused: &Paused);
}

/// The text faces: headless (`input` is `None`: every stage is a yes, a
/// failure stops) or the line prompt.
pub struct Text<R: BufRead, W: Write> {
    /// Where answers come from; `None` runs headless.
    pub input: Option<R>,
    /// Where everything goes.
    pub out: W,
    /// `--force-stop` (headless: stop outliving pods through CRI).
    pub force_stop: bool,
}

/// The answers a prompt accepts: exact words (the first letter or the whole word).
const WORDS: [(&str, &str); 7] = [
    ("y", "yes"),
    ("q", "quit"),
    ("r", "rollback"),
    ("w", "wait"),
    ("s", "stop"),
    ("t", "term"),
    ("n", "no"),
];

/// The key of an answer typed at a prompt: `y`/`yes`, `r`/`rollback`, … and
/// nothing else (so `rm` or `yikes` is asked again, never taken for its first letter).
pub fn parse_answer(typed: &str, keys: &[char]) -> Option<char> {
    let t = typed.trim().to_lowercase();
    WORDS
        .iter()
        .find(|(k, w)| t == *k || t == *w || (*w == "rollback" && t == "roll back"))
        .and_then(|(k, _)| k.chars().next())
        .filter(|c| keys.contains(c))
}

impl<R: BufRead, W: Write> Text<R, W> {
    /// Writes lines; a closed output (a pipe read by `head`) is not an error here.
    fn write(&mut self, lines: &[String]) {
        for l in lines {
            let _ = writeln!(self.out, "{l}");
        }
        let _ = self.out.flush();
    }

    /// Asks until the answer is one of `keys`; EOF (or headless) means `q`.
    fn ask(&mut self, question: &str, keys: &[char]) -> char {
        loop {
            let _ = write!(self.out, "{question} ");
            let _ = self.out.flush();
            let Some(input) = self.input.as_mut() else {
                return 'q';
            };
            let mut s = String::new();
            match input.read_line(&mut s) {
                Ok(0) | Err(_) => return 'q',
                Ok(_) => {}
            }
            if let Some(c) = parse_answer(&s, keys) {
                return c;
            }
            let words: Vec<&str> = WORDS
                .iter()
                .filter(|(k, _)| k.chars().next().is_some_and(|c| keys.contains(&c)))
                .map(|(k, _)| *k)
                .collect();
            let _ = writeln!(self.out, "  (type one of {} and Enter)", words.join(", "));
        }
    }

    fn headless(&self) -> bool {
        self.input.is_none()
    }
}

impl<R: BufRead, W: Write> Face for Text<R, W> {
    fn plan(&mut self, plan: &Plan) -> Answer {
        let lines = render::text(&render::plan(plan));
        self.write(&lines);
        if self.headless() {
            return Answer::Yes;
        }
        match self.ask("\nStart the restore? [y = yes, q = quit]", &['y', 'q']) {
            'y' => Answer::Yes,
            _ => Answer::Quit,
        }
    }
    fn stage(&mut self, view: &StageView) -> Answer {
        let mut lines = vec![format!(
            "\n[{}/{}] {}: {}",
            view.number, view.of, view.id, view.title
        )];
        match view.phase {
            Phase::Serving if view.id != StageId::Preflight => {
                lines.push("  (the cluster still serves: nothing is stopped yet)".into());
            }
            Phase::Outage if view.id == StageId::StopControlPlane => {
                lines.push(
                    "  THE OUTAGE BEGINS: the API server is down from this stage until etcd is verified"
                        .into(),
                );
            }
            _ => {}
        }
        if !self.headless() {
            lines.extend(view.why.iter().map(|w| format!("  {w}")));
        }
        if let Some(w) = &view.writes_so_far {
            lines.push(format!("  {}", render::writes_so_far(w)));
        }
        lines.extend(view.preview.iter().map(|p| format!("    {p}")));
        self.write(&lines);
        if self.headless() {
            return Answer::Yes;
        }
        match self.ask(
            "Apply? [y = yes, r = roll back, q = quit and resume later]",
            &['y', 'r', 'q'],
        ) {
            'y' => Answer::Yes,
            'r' => Answer::Rollback,
            _ => Answer::Quit,
        }
    }
    fn line(&mut self, text: &str) {
        self.write(&[format!("    {text}")]);
    }
    fn progress(&mut self, p: &Progress) {
        // A line every few seconds is enough for a log; the wizard draws every report.
        if p.elapsed.as_secs().is_multiple_of(3) {
            self.write(&[format!("    {}", render::progress(p))]);
        }
    }
    fn stage_done(&mut self, id: StageId, took: Duration) {
        self.write(&[format!("  done: {id}: {took:.1?}")]);
    }
    fn rolling_back(&mut self) {
        self.write(&["  rolling back".to_string()]);
    }
    fn failed(&mut self, failure: &Failure) -> Answer {
        self.write(&render::failure(failure));
        if self.headless() {
            return Answer::Quit;
        }
        match self.ask(
            "[y = retry, r = roll back, q = quit and resume later]",
            &['y', 'r', 'q'],
        ) {
            'y' => Answer::Yes,
            'r' => Answer::Rollback,
            _ => Answer::Quit,
        }
    }
    fn waiting(&mut self, wait: &Wait) {
        // A line when what runs changes, then one every 10 s: enough for a log.
        if wait.changed || wait.left.as_secs().is_multiple_of(10) {
            self.write(&[format!("    {}", render::waiting(wait))]);
        }
    }
    fn wait_timeout(&mut self, holders: &[Holder]) -> WaitChoice {
        self.write(&render::wait_timeout(holders));
        let choices = render::wait_choices(holders);
        if self.headless() {
            return if self.force_stop && choices.contains(&WaitChoice::ForceStop) {
                WaitChoice::ForceStop
            } else {
                WaitChoice::Quit
            };
        }
        let keys: Vec<char> = choices.iter().map(|c| render::wait_key(*c)).collect();
        let said: Vec<String> = choices
            .iter()
            .map(|c| format!("{} = {}", render::wait_key(*c), render::wait_choice(*c, holders)))
            .collect();
        let c = self.ask(&format!("[{}]", said.join(", ")), &keys);
        if c == 't' {
            let pids = render::host_pids(holders);
            let sure = self.ask(&format!("Send SIGTERM to {pids}? [y = yes, n = no]"), &['y', 'n']);
            if sure != 'y' {
                return self.wait_timeout(holders);
            }
        }
        choices
            .into_iter()
            .find(|ch| render::wait_key(*ch) == c)
            .unwrap_or(WaitChoice::Quit)
    }
    fn summary(&mut self, summary: &Summary) {
        let mut lines = vec![String::new()];
        lines.extend(render::text(&render::summary(summary)));
        self.write(&lines);
    }
    fn paused(&mut self, paused: &Paused) {
        let mut lines = vec![String::new()];
        lines.extend(render::text(&render::paused(paused)));
        self.write(&lines);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only exact words answer: a first letter inside another word never does.
    #[test]
    fn prompt_takes_exact_words() {
        let keys = ['y', 'r', 'q'];
        assert_eq!(parse_answer("y\n", &keys), Some('y'));
        assert_eq!(parse_answer(" YES ", &keys), Some('y'));
        assert_eq!(parse_answer("r", &keys), Some('r'));
        assert_eq!(parse_answer("rollback", &keys), Some('r'));
        assert_eq!(parse_answer("roll back", &keys), Some('r'));
        assert_eq!(parse_answer("quit", &keys), Some('q'));
        for bad in ["", "\n", "rm", "yy", "ye", "yikes", "qq", "w", "no"] {
            assert_eq!(parse_answer(bad, &keys), None, "{bad:?}");
        }
    }

    /// The line prompt asks again after a stray Enter or a word it does not know; EOF quits.
    #[test]
    fn plain_prompt_asks_again() {
        let mut out = Vec::new();
        let mut face = Text {
            input: Some(std::io::Cursor::new(b"\nrm\nr\n".to_vec())),
            out: &mut out,
            force_stop: false,
        };
        assert_eq!(face.ask("Apply?", &['y', 'r', 'q']), 'r');
        assert_eq!(face.ask("Apply?", &['y', 'r', 'q']), 'q');
        let said = String::from_utf8(out).unwrap();
        assert_eq!(said.matches("Apply?").count(), 4, "{said}");
        assert!(said.contains("(type one of y, q, r and Enter)"), "{said}");
    }

    /// The line prompt offers only what can work on a host process: `s` (CRI
    /// stop) is asked again, `t` asks before SIGTERM, `n` goes back to the
    /// choices; headless, `--force-stop` does not touch it (quit, exit 3).
    #[test]
    fn wait_prompt_offers_what_can_work() {
        let host = [Holder::Process {
            pid: 4242,
            start: Some(9),
            cmdline: vec!["sleep".into(), "600".into()],
            file: "/var/lib/etcd/member/snap/db".into(),
        }];
        let mut out = Vec::new();
        let mut face = Text {
            input: Some(std::io::Cursor::new(b"s\nt\nn\nt\ny\n".to_vec())),
            out: &mut out,
            force_stop: false,
        };
        assert_eq!(face.wait_timeout(&host), WaitChoice::Terminate);
        let said = String::from_utf8(out).unwrap();
        assert!(
            said.contains("host process PID 4242 (sleep 600) holds /var/lib/etcd/member/snap/db"),
            "{said}"
        );
        assert!(!said.contains("s = "), "{said}");
        assert!(said.contains("t = send SIGTERM to PID 4242"), "{said}");
        assert!(said.contains("(type one of q, r, w, t and Enter)"), "{said}");
        assert_eq!(
            said.matches("Send SIGTERM to PID 4242? [y = yes, n = no]")
                .count(),
            2,
            "{said}"
        );
        let mut headless = Text::<std::io::Empty, Vec<u8>> {
            input: None,
            out: Vec::new(),
            force_stop: true,
        };
        assert_eq!(headless.wait_timeout(&host), WaitChoice::Quit);
        // The countdown: a line when what runs changes, then one every 10 s.
        for (left, changed) in [(119, true), (118, false), (110, false), (109, false)] {
            headless.waiting(&Wait {
                holders: host.to_vec(),
                left: Duration::from_secs(left),
                changed,
            });
        }
        let said = String::from_utf8(headless.out).unwrap();
        assert!(said.contains("still running: host process PID 4242"), "{said}");
        assert!(said.contains("1:59 left") && said.contains("1:50 left"), "{said}");
        assert!(
            !said.contains("1:58 left") && !said.contains("1:49 left"),
            "{said}"
        );
    }
}
