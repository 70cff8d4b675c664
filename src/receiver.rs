//! reference receiver
