//! The gRPC edge: the only module that knows protobuf. Handlers read as validate, call, convert.
use std::sync::Arc;

use tonic::service::Routes;

use crate::engine::Engine;

mod audit;
pub mod convert;
mod lead_service;
mod model_service;
mod rep_service;
mod report_service;
mod routing_service;
pub mod status;

/// Generated protobuf and tonic types.
#[allow(clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("leadrouter.v1");

    /// Encoded descriptors of leadrouter.v1, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/leadrouter_descriptor.bin"));
}

pub use lead_service::LeadApi;
pub use model_service::ModelApi;
pub use rep_service::RepApi;
pub use report_service::ReportApi;
pub use routing_service::RoutingApi;

/// The fully qualified names of our services, for health reporting.
pub const SERVICE_NAMES: [&str; 5] = [
    "leadrouter.v1.LeadService",
    "leadrouter.v1.RoutingService",
    "leadrouter.v1.RepService",
    "leadrouter.v1.ModelService",
    "leadrouter.v1.ReportService",
];

/// Builds the five leadrouter services with a request-size limit.
pub fn routes(engine: Arc<Engine>, max_message_bytes: usize, stream_concurrency: usize) -> Routes {
    use pb::{
        lead_service_server::LeadServiceServer, model_service_server::ModelServiceServer,
        rep_service_server::RepServiceServer, report_service_server::ReportServiceServer,
        routing_service_server::RoutingServiceServer,
    };
    let lead = LeadServiceServer::new(LeadApi::new(engine.clone(), stream_concurrency))
        .max_decoding_message_size(max_message_bytes);
    let routing = RoutingServiceServer::new(RoutingApi::new(engine.clone()))
        .max_decoding_message_size(max_message_bytes);
    let reps = RepServiceServer::new(RepApi::new(engine.clone()))
        .max_decoding_message_size(max_message_bytes);
    let models = ModelServiceServer::new(ModelApi::new(engine.clone()))
        .max_decoding_message_size(max_message_bytes);
    let reports = ReportServiceServer::new(ReportApi::new(engine))
        .max_decoding_message_size(max_message_bytes);
    Routes::new(lead)
        .add_service(routing)
        .add_service(reps)
        .add_service(models)
        .add_service(reports)
}
