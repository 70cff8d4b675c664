//! anpr-edge: a roadside ANPR daemon for zero-emission-zone enforcement.
//!
//! The crate is a pipeline of stages, one module each, that talk only through the
//! typed messages in [`message`] over bounded channels. [`pipeline`] wires them
//! together; `src/cmd/` holds one file per subcommand of the binary.

pub mod capture;
pub mod clock;
pub mod config;
pub mod demo;
pub mod detect;
pub mod eval;
pub mod keys;
pub mod message;
pub mod metrics;
pub mod models;
pub mod pipeline;
pub mod policy;
pub mod read;
pub mod receiver;
pub mod status;
pub mod store;
pub mod synth;
pub mod track;
pub mod upload;
pub mod watchdog;
