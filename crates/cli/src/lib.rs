//! hwameistor-cli (placeholder, being written).
