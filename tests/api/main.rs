//! Integration tests: a real tonic client against a server bound to 127.0.0.1:0.
mod cli;
mod concurrency;
mod crm;
mod helpers;
mod leads;
mod lifecycle;
mod model_ops;
mod models;
mod offer_race;
mod race;
mod redis_crm;
mod redis_routing;
mod redis_server;
mod reps;
mod routing;
mod runbook;
mod store_contract;
