//! hwameistor-exec (placeholder, being written).
