//! The loop: one task per group (so one reconcile per group at a time), each sleeping its interval
//! or its backoff, all stopping on one shutdown signal.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::Controller;

/// Cloneable shutdown signal: `trigger` once, every task sees it.
#[derive(Clone)]
pub struct Shutdown {
    tx: Arc<watch::Sender<bool>>,
    rx: watch::Receiver<bool>,
}

impl Default for Shutdown {
    fn default() -> Self {
        let (tx, rx) = watch::channel(false);
        Shutdown { tx: Arc::new(tx), rx }
    }
}

impl Shutdown {
    pub fn trigger(&self) {
        let _ = self.tx.send(true);
    }
    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow()
    }
    pub async fn wait(&self) {
        let mut rx = self.rx.clone();
        let _ = rx.wait_for(|v| *v).await;
    }
}

/// Recovers, then runs every group until `shutdown`. An in-flight reconcile is given `grace` to
/// finish; if it does not, it is dropped: its operation stays pending in the store and is resumed
/// by the next run.
pub async fn run(ctl: Arc<Controller>, shutdown: Shutdown, grace: Duration) -> Result<(), flotilla_model::SeamError> {
    let resumed = ctl.recover().await?;
    if resumed > 0 {
        tracing::info!(resumed, "finished operations left by a previous run");
    }
    let mut tasks = Vec::new();
    for spec in ctl.groups() {
        let ctl = ctl.clone();
        let shutdown = shutdown.clone();
        let id = spec.id.clone();
        let interval = spec.interval;
        tasks.push(tokio::spawn(async move {
            loop {
                let delay = {
                    // Its own task, so a panic (a bug) fails this pass of this group only, and is
                    // reported like any other error instead of ending the group's loop silently.
                    let mut pass = tokio::spawn({
                        let (ctl, id) = (ctl.clone(), id.clone());
                        async move { ctl.reconcile(&id).await }
                    });
                    let joined = tokio::select! {
                        r = &mut pass => r,
                        _ = shutdown.wait() => match tokio::time::timeout(grace, &mut pass).await {
                            Ok(r) => r,
                            Err(_) => {
                                pass.abort();
                                tracing::warn!(group = %id, "shutdown: abandoning an in-flight reconcile; it resumes on restart");
                                break;
                            }
                        },
                    };
                    let result = joined.unwrap_or_else(|e| Err(panicked(e)));
                    ctl.after_reconcile(&id, result).await
                };
                if shutdown.is_triggered() {
                    break;
                }
                let wake = async {
                    match ctl.slots.get(&id) {
                        Some(slot) => slot.wake.notified().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = tokio::time::sleep(delay.unwrap_or(interval)) => {}
                    // An operator asked for something; a pass that failed keeps its backoff.
                    _ = wake, if delay.is_none() => {}
                    _ = shutdown.wait() => break,
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}

/// A pass that panicked, as the error the loop's policy understands.
fn panicked(e: tokio::task::JoinError) -> flotilla_model::SeamError {
    let what = match e.try_into_panic() {
        Ok(p) => p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".into()),
        Err(e) => e.to_string(),
    };
    tracing::error!(panic = %what, "a reconcile pass panicked");
    flotilla_model::SeamError::bug(format!("reconcile panicked: {what}"))
}

impl Controller {
    /// The error policy: returns the delay before the next pass when the pass failed. Only this
    /// group pauses (a quota error for five minutes); the reason is recorded as an event, once per
    /// distinct error, so `flotilla status` shows why a group is not acting.
    pub async fn after_reconcile(
        &self,
        group: &flotilla_model::GroupId,
        result: Result<crate::ReconcileOutcome, flotilla_model::SeamError>,
    ) -> Option<Duration> {
        let slot = self.slots.get(group)?;
        match result {
            Ok(_) => {
                slot.backoff.lock().expect("backoff lock").reset();
                let mut st = slot.status.lock().expect("status lock");
                st.last_error = None;
                st.paused_until = None;
                None
            }
            Err(e) => {
                slot.counters.lock().expect("counters lock").pass_errors += 1;
                let delay = slot.backoff.lock().expect("backoff lock").next(e.kind());
                tracing::warn!(group = %group, kind = e.kind().as_str(), error = %e, retry_in = ?delay, "reconcile failed");
                let reason = format!("{}: {e}", e.kind().as_str());
                let now = self.clock.now();
                let changed = {
                    let mut st = slot.status.lock().expect("status lock");
                    let changed = st.last_error.as_deref() != Some(reason.as_str());
                    st.last_error = Some(reason.clone());
                    st.paused_until = Some(now.plus(delay));
                    changed
                };
                if changed {
                    let message = format!("group paused for {}s: {reason}", delay.as_secs());
                    self.event(&slot.spec, now, flotilla_model::EventKind::Error, message).await;
                }
                Some(delay)
            }
        }
    }
}
