//! anpr-wire: the contract between an anpr-edge device and its backend, byte
//! for byte.
//!
//! - [`record`]: the metadata of a candidate violation and the tombstone of one
//!   that expired undelivered, as uploaded (`docs/ref/upload-api.md`);
//! - [`chain`]: the record hash that chains records and the signature over them;
//! - [`bundle`]: the signed hit and exemption list format (`docs/ref/lists.md`);
//! - [`hash`]: the keyed plate hash, the only form in which a list names a plate;
//! - `build` (feature `build`, never on the device): the backend's side of the
//!   lists, plain-plate CSVs hashed and signed into bundles.
//!
//! The device, the reference receiver and the lab tools all use these types,
//! so a backend built against this crate reads exactly what the device sends.
//! Nothing here does I/O but reading key files the caller names.

#[cfg(feature = "build")]
pub mod build;
pub mod bundle;
pub mod chain;
pub mod hash;
pub mod record;
