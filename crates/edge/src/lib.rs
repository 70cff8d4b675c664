//! anpr-edge: a roadside ANPR daemon for zero-emission-zone enforcement, and
//! nothing that does not run on the controller.
//!
//! Floors from the bottom: [`clock`], [`plate`], [`message`]; [`config`];
//! [`models`]; the stages in pipeline order, each a folder ([`capture`],
//! [`detect`], [`read`], [`track`], [`policy`], [`store`], [`upload`]), none
//! importing a later one; [`status`], which reads counters only; [`pipeline`],
//! which only wires. The upload contract is `anpr-wire`'s; the binary's
//! subcommands live in `src/cmd/`.

pub mod capture;
pub mod clock;
pub mod config;
pub mod detect;
pub mod keys;
pub mod message;
pub mod metrics;
pub mod models;
pub mod net;
pub mod pipeline;
pub mod plate;
pub mod policy;
pub mod read;
pub mod status;
pub mod store;
pub mod sync;
pub mod testing;
pub mod track;
pub mod upload;
pub mod watchdog;
