//! The read stage's loop: detected frames in, read frames out (also frames
//! with nothing read, so the tracker sees time pass), counters per camera.
//! Reading itself is [`super::rectify_and_read`]'s; this loop writes nothing
//! to disk or to logs but counts and errors.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::{acceptable, rectify_and_read, PlateReader, Rectified};
use crate::config::ReadConfig;
use crate::message::{DetectedFrame, PlateRead, ReadFrame};
use crate::metrics::{inc, Metrics};

/// The read stage: rectifies and reads every detection of each frame, and
/// passes the frame on (also when nothing was read, so the tracker sees time
/// pass). Blocking: run it on its own thread. Ends when its input closes.
pub fn run(
    mut reader: Box<dyn PlateReader>,
    cfg: ReadConfig,
    mut input: mpsc::Receiver<DetectedFrame>,
    out: mpsc::Sender<ReadFrame>,
    metrics: Arc<Metrics>,
) {
    while let Some(DetectedFrame { frame, detections }) = input.blocking_recv() {
        let plates = match rectify_and_read(reader.as_mut(), &frame.image, detections) {
            Ok(p) => p,
            Err(e) => {
                inc(&metrics.read_errors);
                tracing::error!(camera = %frame.camera, error = %e, "reading failed; frame's plates skipped");
                Vec::new()
            }
        };
        let mut reads = Vec::new();
        let camera = metrics.camera(&frame.camera);
        for Rectified {
            detection,
            crop,
            plate,
        } in plates
        {
            if !acceptable(&plate, &cfg) {
                inc(&metrics.reads_rejected);
                continue;
            }
            inc(&metrics.plates_read);
            inc(&camera.reads);
            reads.push(PlateRead {
                detection,
                plate,
                crop: Arc::new(crop),
            });
        }
        inc(&camera.frames_processed);
        if out.blocking_send(ReadFrame { frame, reads }).is_err() {
            break;
        }
    }
}
