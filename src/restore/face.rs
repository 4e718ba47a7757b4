//! The faces of the engine: what the operator sees and answers.
//!
//! The runner calls a [`Face`] for everything the operator must see or
//! decide; it holds no logic of its own. Headless (`--yes`) answers yes to
//! every stage; the line prompt (`--plain`) asks on the terminal and accepts
//! only `y`, so a stray Enter never changes a node.

use std::io::{BufRead, Write};
use std::path::Path;

/// The operator's answer at a stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Apply the stage.
    Yes,
    /// Roll the run back.
    Rollback,
    /// Stop here; resume later.
    Quit,
}

/// What to do when pods outlive `--wait-timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitChoice {
    /// Wait another period.
    KeepWaiting,
    /// Stop the remaining pods through CRI.
    ForceStop,
    /// Roll back.
    Rollback,
    /// Stop here (exit 3).
    Quit,
}

/// What a stage looks like before it runs.
#[derive(Debug, Clone)]
pub struct StageView {
    /// Position, from 1.
    pub number: usize,
    /// Stages in all.
    pub of: usize,
    /// Stable id.
    pub id: &'static str,
    /// Title.
    pub title: &'static str,
    /// Why.
    pub why: Vec<String>,
    /// Exact paths and commands.
    pub preview: Vec<String>,
}

/// Everything the runner shows or asks.
pub trait Face {
    /// The run's directory (journal, stash, logs), once the run exists; the
    /// wizard reads the finished stages from its journal and saves its
    /// transcript there.
    fn run_dir(&mut self, _dir: &Path) {}
    /// The plan, before anything changes; returns whether to go on.
    fn plan(&mut self, lines: &[String]) -> Answer;
    /// A stage is next: show it and ask.
    fn stage(&mut self, view: &StageView) -> Answer;
    /// A line of progress or command output.
    fn line(&mut self, text: &str);
    /// A stage finished and verified.
    fn stage_done(&mut self, id: &str, summary: &str);
    /// A stage failed; returns the choice (retry = Yes).
    fn failed(&mut self, id: &str, error: &str, resume: &str) -> Answer;
    /// Pods outlived the wait.
    fn wait_timeout(&mut self, still: &[String]) -> WaitChoice;
    /// The final summary.
    fn summary(&mut self, lines: &[String]);
}

/// `--yes`: no questions.
pub struct Headless {
    /// `--force-stop`.
    pub force_stop: bool,
}

impl Face for Headless {
    fn plan(&mut self, lines: &[String]) -> Answer {
        for l in lines {
            println!("{l}");
        }
        Answer::Yes
    }
    fn stage(&mut self, view: &StageView) -> Answer {
        println!("\n[{}/{}] {}: {}", view.number, view.of, view.id, view.title);
        for p in &view.preview {
            println!("    {p}");
        }
        Answer::Yes
    }
    fn line(&mut self, text: &str) {
        println!("    {text}");
    }
    fn stage_done(&mut self, id: &str, summary: &str) {
        println!("  done: {id}: {summary}");
    }
    fn failed(&mut self, id: &str, error: &str, resume: &str) -> Answer {
        eprintln!("  FAILED: {id}: {error}\n  {resume}");
        Answer::Quit
    }
    fn wait_timeout(&mut self, still: &[String]) -> WaitChoice {
        eprintln!("  still running after --wait-timeout: {}", still.join(", "));
        if self.force_stop {
            WaitChoice::ForceStop
        } else {
            WaitChoice::Quit
        }
    }
    fn summary(&mut self, lines: &[String]) {
        println!();
        for l in lines {
            println!("{l}");
        }
    }
}

/// `--plain`: a line prompt on stdin/stdout.
pub struct Plain<R: BufRead, W: Write> {
    /// Where answers come from.
    pub input: R,
    /// Where everything goes.
    pub out: W,
}

impl<R: BufRead, W: Write> Plain<R, W> {
    /// Asks until the answer is one of `keys` (first letter); EOF means `q`.
    fn ask(&mut self, question: &str, keys: &[char]) -> char {
        loop {
            let _ = write!(self.out, "{question} ");
            let _ = self.out.flush();
            let mut s = String::new();
            match self.input.read_line(&mut s) {
                Ok(0) | Err(_) => return 'q',
                Ok(_) => {}
            }
            let s = s.trim().to_lowercase();
            if let Some(c) = s.chars().next()
                && s.len() <= 3
                && keys.contains(&c)
            {
                return c;
            }
            let _ = writeln!(self.out, "  (type one of {keys:?} and Enter)");
        }
    }
}

impl<R: BufRead, W: Write> Face for Plain<R, W> {
    fn plan(&mut self, lines: &[String]) -> Answer {
        for l in lines {
            let _ = writeln!(self.out, "{l}");
        }
        match self.ask("\nStart the restore? [y = yes, q = quit]", &['y', 'q']) {
            'y' => Answer::Yes,
            _ => Answer::Quit,
        }
    }
    fn stage(&mut self, view: &StageView) -> Answer {
        let _ = writeln!(
            self.out,
            "\n[{}/{}] {}: {}",
            view.number, view.of, view.id, view.title
        );
        for w in &view.why {
            let _ = writeln!(self.out, "  {w}");
        }
        for p in &view.preview {
            let _ = writeln!(self.out, "    {p}");
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
        let _ = writeln!(self.out, "    {text}");
    }
    fn stage_done(&mut self, id: &str, summary: &str) {
        let _ = writeln!(self.out, "  done: {id}: {summary}");
    }
    fn failed(&mut self, id: &str, error: &str, resume: &str) -> Answer {
        let _ = writeln!(self.out, "  FAILED: {id}: {error}\n  {resume}");
        match self.ask(
            "[y = retry, r = roll back, q = quit and resume later]",
            &['y', 'r', 'q'],
        ) {
            'y' => Answer::Yes,
            'r' => Answer::Rollback,
            _ => Answer::Quit,
        }
    }
    fn wait_timeout(&mut self, still: &[String]) -> WaitChoice {
        let _ = writeln!(self.out, "  still running: {}", still.join(", "));
        match self.ask(
            "[w = keep waiting, s = stop them through CRI, r = roll back, q = quit]",
            &['w', 's', 'r', 'q'],
        ) {
            'w' => WaitChoice::KeepWaiting,
            's' => WaitChoice::ForceStop,
            'r' => WaitChoice::Rollback,
            _ => WaitChoice::Quit,
        }
    }
    fn summary(&mut self, lines: &[String]) {
        let _ = writeln!(self.out);
        for l in lines {
            let _ = writeln!(self.out, "{l}");
        }
    }
}
