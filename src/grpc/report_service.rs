//! ReportService: performance, forecast, funnel and targets for sales managers; history
//! import for ops.
use std::sync::Arc;

use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use crate::engine::Engine;
use crate::grpc::convert::report as cv;
use crate::grpc::{audit, pb};

pub struct ReportApi {
    engine: Arc<Engine>,
}

impl ReportApi {
    pub fn new(engine: Arc<Engine>) -> ReportApi {
        ReportApi { engine }
    }
}

/// Rows an import holds before it writes them (one store call per batch).
const IMPORT_BATCH: usize = 2000;

#[tonic::async_trait]
impl pb::report_service_server::ReportService for ReportApi {
    async fn get_performance(
        &self,
        req: Request<pb::ReportRequest>,
    ) -> Result<Response<pb::PerformanceReport>, Status> {
        let q = cv::query(&self.engine, req.get_ref())?;
        let (rows, bands) = self.engine.performance(&q).await?;
        let policy = self.engine.report_policy();
        Ok(Response::new(pb::PerformanceReport {
            by: q.by.name().into(),
            period: q.period.name().into(),
            rows: rows.into_iter().map(cv::performance_row).collect(),
            calibration: bands.into_iter().map(cv::band).collect(),
            currency: policy.currency.clone(),
            time_zone: policy.zone.iana_name().unwrap_or("UTC").to_string(),
        }))
    }

    async fn get_forecast(
        &self,
        req: Request<pb::ReportRequest>,
    ) -> Result<Response<pb::ForecastReport>, Status> {
        let q = cv::query(&self.engine, req.get_ref())?;
        let rows = self.engine.forecast(q.by, q.pool.as_deref()).await?;
        Ok(Response::new(pb::ForecastReport {
            by: q.by.name().into(),
            rows: rows.into_iter().map(cv::forecast_row).collect(),
            currency: self.engine.report_policy().currency.clone(),
        }))
    }

    async fn get_funnel(
        &self,
        req: Request<pb::ReportRequest>,
    ) -> Result<Response<pb::FunnelReport>, Status> {
        let q = cv::query(&self.engine, req.get_ref())?;
        let rows = self.engine.funnel(&q).await?;
        Ok(Response::new(pb::FunnelReport {
            by: q.by.name().into(),
            period: q.period.name().into(),
            rows: rows.into_iter().map(cv::funnel_row).collect(),
        }))
    }

    async fn get_targets(
        &self,
        _req: Request<pb::GetTargetsRequest>,
    ) -> Result<Response<pb::GetTargetsResponse>, Status> {
        let targets = self.engine.target_progress().await?;
        Ok(Response::new(pb::GetTargetsResponse {
            targets: targets.into_iter().map(cv::progress).collect(),
        }))
    }

    async fn set_target(
        &self,
        req: Request<pb::SetTargetRequest>,
    ) -> Result<Response<pb::SetTargetResponse>, Status> {
        let who = audit::who(&req);
        let msg = req.into_inner();
        let what = format!("{:?}", msg.target);
        let result = async {
            let t = cv::target(msg.target)?;
            let p = self.engine.set_target(t).await?;
            Ok(pb::SetTargetResponse {
                progress: Some(cv::progress(p)),
            })
        }
        .await
        .map_err(|e: crate::error::Error| Status::from(e));
        audit::record(&who, "SetTarget", &what, result).map(Response::new)
    }

    async fn import_history(
        &self,
        req: Request<Streaming<pb::ImportHistoryRequest>>,
    ) -> Result<Response<pb::ImportHistoryResponse>, Status> {
        let who = audit::who(&req);
        let mut stream = req.into_inner();
        let mut total = pb::ImportHistoryResponse::default();
        let mut batch = Vec::new();
        let mut seen = 0usize;
        let result: Result<(), Status> = async {
            while let Some(msg) = stream.next().await {
                for row in msg?.rows {
                    batch.push(cv::history_row(seen, row)?);
                    seen += 1;
                    if batch.len() >= IMPORT_BATCH {
                        self.flush(&mut batch, &mut total).await?;
                    }
                }
            }
            self.flush(&mut batch, &mut total).await
        }
        .await;
        let what = format!(
            "{} rows read, {} imported, {} skipped",
            seen, total.imported, total.skipped
        );
        audit::record(&who, "ImportHistory", &what, result.map(|()| total)).map(Response::new)
    }
}

impl ReportApi {
    async fn flush(
        &self,
        batch: &mut Vec<crate::engine::HistoryRow>,
        total: &mut pb::ImportHistoryResponse,
    ) -> Result<(), Status> {
        if batch.is_empty() {
            return Ok(());
        }
        let done = self.engine.import_history(std::mem::take(batch)).await?;
        total.imported += done.imported;
        total.skipped += done.skipped;
        Ok(())
    }
}
