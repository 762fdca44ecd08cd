//! Pure, synchronous domain: leads, features, the logistic model, segments and rep ranking. No I/O.
pub mod assignment;
pub mod drift;
pub mod event;
pub mod features;
pub mod gate;
pub mod lead;
pub mod ledger;
pub mod model;
pub mod packed;
pub mod rep;
pub mod report;
pub mod routing;
pub mod segment;
pub mod target;
pub mod terms;
