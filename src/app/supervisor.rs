//! One owner for the server's background work (registry and file polls, SIGHUP, the
//! scheduler, store health, metric upkeep): each task runs on its own, a panic is logged and
//! the task started again after a pause, and every task stops when the server does.
use std::future::Future;
use std::time::Duration;

use tokio::task::{JoinHandle, JoinSet};

pub struct Supervisor {
    set: JoinSet<()>,
    restart_after: Duration,
}

/// Aborts the task it holds when dropped: stopping the supervisor's loop stops the attempt.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Supervisor {
    pub fn new(restart_after: Duration) -> Supervisor {
        Supervisor {
            set: JoinSet::new(),
            restart_after,
        }
    }

    /// Runs `make()` until it returns (the task is done: not restarted) or panics (logged,
    /// then run again after `restart_after`).
    pub fn spawn<F, Fut>(&mut self, name: &'static str, make: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let pause = self.restart_after;
        self.set.spawn(async move {
            loop {
                let mut attempt = AbortOnDrop(tokio::spawn(make()));
                match (&mut attempt.0).await {
                    Ok(()) => {
                        tracing::debug!(task = name, "background task finished");
                        return;
                    }
                    Err(e) if e.is_panic() => {
                        let why = e.into_panic();
                        let why = why
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| why.downcast_ref::<String>().cloned())
                            .unwrap_or_else(|| "panic".into());
                        tracing::error!(task = name, error = %why, restart_in_ms = pause.as_millis() as u64, "background task failed; restarting it");
                        tokio::time::sleep(pause).await;
                    }
                    Err(_) => return,
                }
            }
        });
    }

    /// Runs `task` once (it cannot be made again, e.g. it owns a bound socket); a panic is
    /// logged, not restarted.
    pub fn spawn_once(
        &mut self,
        name: &'static str,
        task: impl Future<Output = ()> + Send + 'static,
    ) {
        self.set.spawn(async move {
            let mut attempt = AbortOnDrop(tokio::spawn(task));
            if let Err(e) = (&mut attempt.0).await
                && e.is_panic()
            {
                tracing::error!(task = name, "background task failed (not restartable)");
            }
        });
    }

    /// Tasks still running.
    pub fn running(&mut self) -> usize {
        while self.set.try_join_next().is_some() {}
        self.set.len()
    }

    /// Stops every task and waits until they are gone.
    pub async fn shutdown(mut self) {
        self.set.abort_all();
        while self.set.join_next().await.is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test(start_paused = true)]
    async fn a_failed_task_is_restarted_and_shutdown_stops_them_all() {
        let mut s = Supervisor::new(Duration::from_secs(1));
        let starts = Arc::new(AtomicU32::new(0));
        let ticks = Arc::new(AtomicU32::new(0));
        let (st, tk) = (starts.clone(), ticks.clone());
        s.spawn("flaky", move || {
            let (st, tk) = (st.clone(), tk.clone());
            async move {
                // The first run fails at once; the second ticks every 100 ms for good.
                if st.fetch_add(1, Ordering::SeqCst) == 0 {
                    panic!("first run fails");
                }
                loop {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    tk.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        s.spawn("done", || async {});
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(starts.load(Ordering::SeqCst), 1, "restart waits its pause");
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert_eq!(starts.load(Ordering::SeqCst), 2);
        assert!(ticks.load(Ordering::SeqCst) >= 4);
        assert_eq!(s.running(), 1, "a task that returned is not restarted");
        s.shutdown().await;
        let after = ticks.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(
            ticks.load(Ordering::SeqCst),
            after,
            "nothing runs after shutdown"
        );
    }
}
