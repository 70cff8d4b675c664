//! The policy stage's loops: passages in, candidate violations out (every
//! other passage counted by reason and dropped here, its plate unlogged), and
//! the reload of changed list files. The decision itself is
//! [`super::Policy::decide`]'s.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Lists, Outcome, Policy};
use crate::clock::Clocks;
use crate::message::{Passage, Violation};
use crate::metrics::{inc, Metrics};
use crate::watchdog::Beat;

/// Looks every `every` whether a bundle file changed, and swaps the new list
/// in; an age alarm that starts or ends is logged once.
pub async fn run_list_reload(
    lists: Arc<Lists>,
    every: Duration,
    clocks: Arc<dyn Clocks>,
    stop: CancellationToken,
) {
    let mut alarmed = false;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = clocks.sleep(every) => {}
        }
        let l = lists.clone();
        // Verifying a large bundle takes a while: keep it off the async threads.
        let status = tokio::task::spawn_blocking(move || {
            l.reload_if_changed();
            l.status_now()
        })
        .await;
        if let Ok(st) = status {
            if st.alarm != alarmed {
                alarmed = st.alarm;
                if alarmed {
                    tracing::warn!(reasons = ?st.alarm_reasons, "zone list alarm");
                } else {
                    tracing::info!("zone list alarm cleared");
                }
            }
        }
    }
}

/// The policy stage: counts and drops non-hits; passes violations on.
pub async fn run(
    policy: Policy,
    mut input: mpsc::Receiver<Passage>,
    out: mpsc::Sender<Violation>,
    metrics: Arc<Metrics>,
    beat: Arc<Beat>,
) {
    while let Some(passage) = input.recv().await {
        inc(&metrics.passages);
        inc(&metrics.camera(&passage.camera).passages);
        let outcome = beat.handle(|| policy.decide(&passage));
        // The reason only: never the plate of a passage that is not acted on.
        tracing::debug!(camera = %passage.camera, direction = passage.direction.as_str(), confidence = passage.plate.confidence, outcome = outcome.reason(), "passage judged");
        match outcome {
            Outcome::Violation(decision) => {
                if out.send(Violation { passage, decision }).await.is_err() {
                    return;
                }
            }
            Outcome::LowConfidence => inc(&metrics.low_confidence_passages),
            other => {
                inc(&metrics.non_hits);
                match other {
                    Outcome::OutsideHours => inc(&metrics.outside_hours),
                    Outcome::NotEntering => inc(&metrics.not_entering),
                    Outcome::Foreign => inc(&metrics.foreign_plates),
                    Outcome::Exempt => inc(&metrics.exempt),
                    Outcome::NotYetBanned => inc(&metrics.not_yet_banned),
                    Outcome::ListsUnavailable => inc(&metrics.lists_unavailable),
                    _ => {}
                }
            }
        }
        // `passage` (text, crop and frame) is dropped here for every non-hit.
    }
}
