//! TLS on the gRPC port (rustls, ring): the server certificate and key from PEM files,
//! re-read when they change (new connections get the new certificate; open ones keep theirs),
//! optional client certificates checked against `server.tls_client_ca`, ALPN h2.
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;

/// Where the PEM files are.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Client certificates must chain to this CA (mutual TLS).
    pub client_ca: Option<PathBuf>,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificate in force, swapped when the files change.
#[derive(Debug)]
struct Reloadable(ArcSwap<CertifiedKey>);

impl ResolvesServerCert for Reloadable {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load_full())
    }
}

fn load_key(files: &TlsFiles) -> Result<CertifiedKey, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|_| format!("server.tls_cert {}: cannot read PEM", files.cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|_| {
            format!(
                "server.tls_cert {}: not PEM certificates",
                files.cert.display()
            )
        })?;
    if certs.is_empty() {
        return Err(format!(
            "server.tls_cert {}: no certificate",
            files.cert.display()
        ));
    }
    // Never quote the key file in an error.
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|_| {
        format!(
            "server.tls_key {}: not a PEM private key",
            files.key.display()
        )
    })?;
    CertifiedKey::from_der(certs, key, &provider())
        .map_err(|e| format!("server.tls_cert/tls_key: {e}"))
}

/// A TLS acceptor whose certificate follows its files.
pub struct Tls {
    pub acceptor: tokio_rustls::TlsAcceptor,
    current: Arc<Reloadable>,
    files: TlsFiles,
}

impl Tls {
    pub fn new(files: TlsFiles) -> Result<Tls, String> {
        let current = Arc::new(Reloadable(ArcSwap::from_pointee(load_key(&files)?)));
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let builder = match &files.client_ca {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in CertificateDer::pem_file_iter(ca).map_err(|_| {
                    format!("server.tls_client_ca {}: cannot read PEM", ca.display())
                })? {
                    let c = c.map_err(|_| {
                        format!(
                            "server.tls_client_ca {}: not PEM certificates",
                            ca.display()
                        )
                    })?;
                    roots
                        .add(c)
                        .map_err(|e| format!("server.tls_client_ca {}: {e}", ca.display()))?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                        .build()
                        .map_err(|e| format!("server.tls_client_ca {}: {e}", ca.display()))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(current.clone());
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Tls {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            current,
            files,
        })
    }

    /// Re-reads the certificate and key; a bad pair keeps the one in force.
    pub fn reload(&self) -> Result<(), String> {
        let k = load_key(&self.files)?;
        self.current.0.store(Arc::new(k));
        Ok(())
    }
}

/// Reloads the certificate whenever either file's modification time changes.
pub async fn watch(tls: Arc<Tls>, every: Duration, mut hup: crate::app::Hangups) {
    let stamp = |p: &Path| -> Option<SystemTime> { std::fs::metadata(p).ok()?.modified().ok() };
    let both = |t: &Tls| (stamp(&t.files.cert), stamp(&t.files.key));
    let mut seen = both(&tls);
    loop {
        let hangup = crate::app::tick_or_hangup(every, &mut hup).await;
        if Arc::strong_count(&tls) == 1 {
            return;
        }
        let now = both(&tls);
        if now == seen && !hangup {
            continue;
        }
        seen = now;
        match tls.reload() {
            Ok(()) => tracing::info!("TLS certificate reloaded"),
            Err(e) => tracing::error!(error = %e, "TLS certificate refused; the old one stays"),
        }
    }
}
