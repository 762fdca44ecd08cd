//! leadrouter: scores leads with a trained logistic model, segments them by ordered rules and
//! routes each to the best-skilled rep with room, over gRPC.
//!
//! Module map:
//! - [`domain`]: pure, synchronous core (leads, features, model, segments, rep ranking).
//! - [`store`]: the `CapacityStore`/`RepDirectory` traits, the memory backend and the contract
//!   suite every backend passes.
//! - [`engine`]: the pipeline validate -> score -> segment -> route, and the hot-swapped model.
//! - [`scheduler`]: drains queues when shifts start and periods roll over, with no call.
//! - [`grpc`]: the only module that knows protobuf; one error-to-status mapping.
//! - [`training`]: CSV reading, the seeded split, the linfa fit, metrics and artifacts.
//! - [`outcomes`]: recorded outcomes as a training CSV.
//! - [`app`], [`config`], [`telemetry`], [`cli`]: wiring, settings, logs and the command line.
pub mod app;
pub mod auth;
pub mod budget;
pub mod builtin;
pub mod cli;
pub mod config;
pub mod console;
pub mod domain;
pub mod engine;
pub mod error;
pub mod grpc;
pub mod listener;
pub mod loadgen;
pub mod model_dir;
pub mod observe;
pub mod outcomes;
pub mod scheduler;
pub mod store;
pub mod team;
pub mod telemetry;
pub mod tls;
pub mod training;
pub mod watch;

pub use error::{Error, Result};
