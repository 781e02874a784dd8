//! hwameistor-engine (placeholder, being written).
