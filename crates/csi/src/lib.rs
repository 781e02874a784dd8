//! hwameistor-csi (placeholder, being written).
