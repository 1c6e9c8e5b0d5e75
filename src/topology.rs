//! Topology file (placeholder).
