//! V4L2 cameras through the `v4l` crate.
