//! Wakes a task when a directory's entries change (inotify), as kubelet's
//! file source does for the static pod directory: a file created, removed,
//! renamed in or out, or written. Only a wake-up: the caller reads the
//! directory again itself, so a lost or merged event costs nothing but the
//! caller's own fallback poll.

use std::os::fd::AsFd;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use tokio::sync::mpsc;

/// How long the reading thread waits at a time before it looks whether the
/// watch was dropped.
const TICK_MS: u16 = 100;

/// A watch on one directory's entries. Dropping it ends its reading thread
/// within [`TICK_MS`].
pub struct DirWatch {
    rx: mpsc::Receiver<()>,
    done: Arc<AtomicBool>,
}

impl Drop for DirWatch {
    fn drop(&mut self) {
        self.done.store(true, Ordering::SeqCst);
    }
}

impl DirWatch {
    /// Watches `dir` (which must exist).
    pub fn new(dir: &Path) -> Result<DirWatch> {
        let ino = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).context("inotify_init")?;
        ino.add_watch(
            dir,
            AddWatchFlags::IN_CREATE
                | AddWatchFlags::IN_DELETE
                | AddWatchFlags::IN_MOVED_FROM
                | AddWatchFlags::IN_MOVED_TO
                | AddWatchFlags::IN_CLOSE_WRITE
                | AddWatchFlags::IN_ATTRIB
                | AddWatchFlags::IN_DELETE_SELF
                | AddWatchFlags::IN_MOVE_SELF,
        )
        .with_context(|| format!("watching {}", dir.display()))?;
        // One wake-up pending at most: the reader reads the whole directory.
        let (tx, rx) = mpsc::channel(1);
        let done = Arc::new(AtomicBool::new(false));
        let stop = done.clone();
        std::thread::Builder::new()
            .name("dirwatch".into())
            .spawn(move || {
                // Returning drops `tx`: the watcher's next `changed` is an error.
                while !stop.load(Ordering::SeqCst) {
                    let mut fds = [PollFd::new(ino.as_fd(), PollFlags::POLLIN)];
                    match poll(&mut fds, PollTimeout::from(TICK_MS)) {
                        Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
                        Ok(_) if fds[0].revents().is_some_and(|r| r.contains(PollFlags::POLLIN)) => {}
                        Ok(_) | Err(_) => return,
                    }
                    let mut any = false;
                    let mut ended = false;
                    loop {
                        match ino.read_events() {
                            Ok(ev) => {
                                any |= !ev.is_empty();
                                // The directory itself removed or moved away:
                                // this watch sees nothing of what replaces it.
                                ended |= ev.iter().any(|e| {
                                    e.mask.intersects(
                                        AddWatchFlags::IN_IGNORED
                                            | AddWatchFlags::IN_DELETE_SELF
                                            | AddWatchFlags::IN_MOVE_SELF,
                                    )
                                });
                            }
                            Err(nix::errno::Errno::EAGAIN) => break,
                            Err(nix::errno::Errno::EINTR) => {}
                            Err(_) => return,
                        }
                    }
                    if any && matches!(tx.try_send(()), Err(mpsc::error::TrySendError::Closed(()))) {
                        return;
                    }
                    if ended {
                        return;
                    }
                }
            })
            .context("starting the directory watch")?;
        Ok(DirWatch { rx, done })
    }

    /// Returns once something changed in the directory since the last call
    /// (every change before it is taken at once); an error once the watch
    /// ended (the directory removed or moved away, the descriptor failing):
    /// the caller reads the directory on its own from then on.
    pub async fn changed(&mut self) -> Result<()> {
        self.rx.recv().await.context("the directory watch ended")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn on_a_runtime(f: impl std::future::Future<Output = ()>) {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f);
    }

    /// A rename out of the directory and a new file both wake the watcher; a read does not.
    #[test]
    fn a_move_out_and_a_new_file_wake_it() {
        on_a_runtime(async {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().join("manifests");
            std::fs::create_dir(&dir).unwrap();
            std::fs::write(dir.join("etcd.yaml"), "x").unwrap();
            let mut w = DirWatch::new(&dir).unwrap();
            // A write before the watch began is not seen.
            let quiet = tokio::time::timeout(Duration::from_millis(200), w.changed()).await;
            assert!(quiet.is_err(), "nothing changed yet");
            std::fs::rename(dir.join("etcd.yaml"), tmp.path().join("etcd.yaml")).unwrap();
            tokio::time::timeout(Duration::from_secs(5), w.changed())
                .await
                .expect("the move out wakes it")
                .unwrap();
            std::fs::write(dir.join("kube-apiserver.yaml"), "y").unwrap();
            tokio::time::timeout(Duration::from_secs(5), w.changed())
                .await
                .expect("a new file wakes it")
                .unwrap();
            // The rest of that write's events, then only a read: nothing wakes it.
            tokio::time::sleep(Duration::from_millis(300)).await;
            while w.rx.try_recv().is_ok() {}
            assert_eq!(
                std::fs::read_to_string(dir.join("kube-apiserver.yaml")).unwrap(),
                "y"
            );
            let quiet = tokio::time::timeout(Duration::from_millis(300), w.changed()).await;
            assert!(quiet.is_err(), "a read changes nothing");
        });
    }

    /// The directory moved away, then removed: each wakes the watcher once,
    /// then the watch says it ended instead of never waking again.
    #[test]
    fn the_directory_moved_away_ends_the_watch() {
        on_a_runtime(async {
            let tmp = tempfile::tempdir().unwrap();
            for gone in ["moved", "removed"] {
                let dir = tmp.path().join(gone);
                std::fs::create_dir(&dir).unwrap();
                let mut w = DirWatch::new(&dir).unwrap();
                if gone == "moved" {
                    std::fs::rename(&dir, tmp.path().join("elsewhere")).unwrap();
                    std::fs::create_dir(&dir).unwrap();
                } else {
                    std::fs::remove_dir(&dir).unwrap();
                }
                let mut woke = 0;
                let ended = tokio::time::timeout(Duration::from_secs(5), async {
                    while w.changed().await.is_ok() {
                        woke += 1;
                    }
                })
                .await;
                assert!(ended.is_ok(), "{gone}: the watch ended");
                assert!(woke <= 1, "{gone}: woke {woke} times");
            }
        });
    }

    /// A directory that is not there is an error, not a watch that never wakes.
    #[test]
    fn a_missing_directory_is_an_error() {
        on_a_runtime(async {
            let tmp = tempfile::tempdir().unwrap();
            let err = DirWatch::new(&tmp.path().join("nope")).err().expect("an error");
            assert!(format!("{err:#}").contains("nope"), "{err:#}");
        });
    }
}
