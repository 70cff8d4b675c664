//! The model manifest, checksum verification, and loading ONNX Runtime.
