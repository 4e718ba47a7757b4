//! One action applied to the wizard's state: keys go to `key_input`, engine
//! and picker reports to `engine_events`, the rest (frames drawn, ticks,
//! resizes, signals, the engine's return) change the state here. The state
//! (`app`) knows none of them, so the handlers point one way at it.

use super::app::{Action, App, Cmd, Engine, Screen, Stop};
use super::{engine_events, key_input};

/// Changes the state for one action; returns what the event loop must do.
pub fn update(app: &mut App, action: Action) -> Vec<Cmd> {
    match action {
        Action::Key(ev, at) => key_input::key(app, &ev, at),
        Action::Engine(ev) => engine_events::engine(app, ev),
        Action::Picker(msg) => engine_events::picked(app, msg),
        Action::Drawn(at, viewport) => {
            app.viewport = viewport;
            app.scroll = app.scroll.min(viewport.limit());
            for shown in [
                app.question.as_mut().map(|q| &mut q.shown),
                app.popup.as_mut().map(|p| &mut p.shown),
            ]
            .into_iter()
            .flatten()
            {
                shown.get_or_insert(at);
            }
            Vec::new()
        }
        Action::Tick(now) => {
            app.ticks += 1;
            app.now = now;
            Vec::new()
        }
        Action::Resize(w, h) => {
            app.size = (w, h);
            Vec::new()
        }
        Action::Signal(why) => {
            app.notice = Some(format!("{why}: stopping at the next stage boundary"));
            app.log(format!("{} {why}", app.stamp()));
            if app.engine != Engine::Running {
                app.exit = true;
                return Vec::new();
            }
            app.stopping = Some(Stop::Signal(why));
            app.popup = None;
            if app.question.is_some() {
                return vec![app.reply_quit()];
            }
            Vec::new()
        }
        Action::Finished => {
            app.engine = Engine::Returned;
            if !matches!(app.screen, Screen::Summary(_)) || app.stopping.is_some() {
                app.exit = true;
            }
            Vec::new()
        }
    }
}
