//! Perspective rectification of a plate from its four corners.
