//! `healthcheck` (for container health checks) and `config --print` (the effective settings,
//! secrets masked).
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use crate::config::Settings;

#[derive(Args, Debug)]
pub struct HealthcheckArgs {
    /// The server's gRPC address, e.g. http://127.0.0.1:50051.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub server: String,
    /// The service to ask about (e.g. leadrouter.v1.RoutingService); empty: the whole server.
    #[arg(long, default_value = "")]
    pub service: String,
    /// Give up after this many milliseconds (connect and answer together).
    #[arg(long, default_value_t = 3000)]
    pub timeout_ms: u64,
}

/// Exits 0 only when the server answers SERVING; prints the status either way.
pub async fn healthcheck(a: HealthcheckArgs) -> anyhow::Result<()> {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let timeout = Duration::from_millis(a.timeout_ms.max(1));
    let ask = async {
        let channel = tonic::transport::Endpoint::from_shared(a.server.clone())
            .with_context(|| format!("--server {:?} is not a URL", a.server))?
            .connect_timeout(timeout)
            .connect()
            .await
            .with_context(|| format!("cannot connect to {}", a.server))?;
        let r = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: a.service.clone(),
            })
            .await
            .map_err(|s| anyhow::anyhow!("health check failed: {}", s.message()))?;
        anyhow::Ok(r.into_inner().status)
    };
    let status = tokio::time::timeout(timeout, ask)
        .await
        .map_err(|_| anyhow::anyhow!("no answer from {} within {timeout:?}", a.server))??;
    let name = ServingStatus::try_from(status)
        .map(|s| s.as_str_name())
        .unwrap_or("UNKNOWN");
    println!("{name}");
    if status != ServingStatus::Serving as i32 {
        anyhow::bail!("{} is {name}", a.server);
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct ConfigArgs {
    /// Print the effective configuration (defaults, then the file, then LEADROUTER__
    /// variables) as TOML, passwords in URLs masked.
    #[arg(long)]
    pub print: bool,
    /// Config file (TOML); also $LEADROUTER_CONFIG.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// Loads the settings as `serve` would (refusing what `serve` refuses) and prints them.
pub fn config(a: ConfigArgs) -> anyhow::Result<()> {
    let settings = Settings::load(a.config.as_deref())?;
    if a.print {
        println!("{}", print(&settings)?);
    } else {
        eprintln!("configuration is valid (--print shows it)");
    }
    Ok(())
}

/// The settings as TOML with every URL's password replaced by `***`.
pub fn print(settings: &Settings) -> anyhow::Result<String> {
    let text = toml::to_string(settings).context("settings do not serialize")?;
    Ok(crate::store::redis::redact(&text))
}
