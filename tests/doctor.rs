//! doctor tests
