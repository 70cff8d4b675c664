//! anpr-lab: what the project needs around the device but never ships on it.
//!
//! - [`synth`]: rendered Dutch plates and street scenes with ground truth;
//! - [`eval`]: accuracy and speed on folders of labelled photos and clips;
//! - [`demo`]: the whole pipeline on a rendered scene, uploading to the
//!   reference receiver;

pub mod demo;
pub mod eval;
pub mod synth;
