//! hwameistor-http (placeholder, being written).
