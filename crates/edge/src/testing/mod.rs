//! The test kit: scripted models, sample violations, test lists and upload
//! settings, shared by the unit tests, the integration tests, the benches and
//! the lab.
//!
//! Public because `#[cfg(test)]` code is not passed on to other crates or to
//! `tests/`; nothing in the daemon calls it. Nothing here reads cameras or
//! models, and the images are a few pixels of synthetic colour, so no real
//! vehicle ever appears in a test record.

mod models;
mod records;
mod scripted;

use std::path::Path;

pub use models::*;
pub use records::*;
pub use scripted::*;

use crate::config::UploadConfig;

/// Upload settings for a test backend at `url` that trusts `ca_cert` and is
/// shown the client certificate and key given (mutual TLS).
pub fn upload_config(url: &str, ca_cert: &Path, client: Option<(&Path, &Path)>) -> UploadConfig {
    UploadConfig {
        url: url.to_string(),
        ca_cert: ca_cert.to_owned(),
        timeout_s: 10,
        backoff_initial_ms: 100,
        backoff_max_ms: 2000,
        allow_plain_http: false,
        client_cert: client.map(|c| c.0.to_owned()),
        client_key: client.map(|c| c.1.to_owned()),
        batch_size: 32,
    }
}
