//! Replay: a folder of JPEG/PNG frames played in file-name order.
