//! Shared helpers for the conformance tests: fixture discovery and comparisons.
