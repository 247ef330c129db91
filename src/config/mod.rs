//! Kong-compatible declarative configuration.
