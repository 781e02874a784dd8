//! hwameistor-api (placeholder, being written).
