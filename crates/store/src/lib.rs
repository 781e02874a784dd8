//! hwameistor-store (placeholder, being written).
