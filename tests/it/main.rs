//! The integration tests, one binary: each module is one suite (`cargo test --test it
//! dpop::` runs one). One binary links once; a module's features gate it at its top.
//! `tests/metrics.rs` stays its own binary: its recorder is process-wide.

#[path = "../common/mod.rs"]
mod common;

mod attacks;
mod doctor;
mod dpop;
mod extractors;
mod form;
mod grpc;
mod hardening;
mod interop;
mod introspection;
mod key_cache;
mod mcp;
mod metadata;
mod mtls;
mod multi_issuer;
mod properties;
mod redis;
mod remote_keys;
mod rmcp;
mod testing_kit;
mod token_cache;
mod verification;
