//! hwameistor-disk (placeholder, being written).
