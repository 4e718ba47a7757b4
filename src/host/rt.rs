//! The one way the synchronous engine runs async work (the etcd client, S3,
//! CRI, HTTP): [`block_on`] builds a current-thread runtime with time and I/O
//! for the call and drops it after, so no runtime outlives the work it ran
//! and no caller nests one inside another. [`multi_thread`] is for the one
//! caller that spawns tasks which must run while it blocks.

use std::future::Future;

/// Run `fut` to completion on a fresh current-thread runtime.
///
/// # Errors
/// When the runtime cannot be built (no file descriptors left).
pub fn block_on<F: Future>(fut: F) -> anyhow::Result<F::Output> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(rt.block_on(fut))
}

/// A multi-thread runtime (two workers) for work that spawns tasks.
///
/// # Errors
/// When the runtime cannot be built.
pub fn multi_thread() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn runs_a_future_with_timers() {
        let v = super::block_on(async {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            7
        })
        .unwrap();
        assert_eq!(v, 7);
    }
}
