//! Mutual TLS: the names in each open connection's client certificate (SAN DNS names and the
//! subject's common name), which `[[client]]` lines map to roles.
use std::net::SocketAddr;

/// Client certificate names per open connection (filled by the listener after a mutual-TLS
/// handshake, emptied when the connection closes).
#[derive(Debug, Default)]
pub struct Peers(std::sync::Mutex<std::collections::HashMap<SocketAddr, Vec<String>>>);

impl Peers {
    pub fn insert(&self, peer: SocketAddr, names: Vec<String>) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(peer, names);
    }

    pub fn remove(&self, peer: &SocketAddr) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(peer);
    }

    pub(super) fn names(&self, peer: &SocketAddr) -> Option<Vec<String>> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(peer)
            .cloned()
    }
}

/// The DNS names in a certificate's subject alternative names.
pub fn certificate_names(der: &rustls::pki_types::CertificateDer<'_>) -> Vec<String> {
    let mut names: Vec<String> = webpki::EndEntityCert::try_from(der)
        .map(|c| c.valid_dns_names().map(str::to_string).collect())
        .unwrap_or_default();
    names.extend(subject_common_names(der));
    names
}

/// The subject's common names (OID 2.5.4.3) of a DER certificate; none unless the whole
/// certificate parses. Only called on certificates rustls already verified against the CA.
fn subject_common_names(der: &[u8]) -> Vec<String> {
    const COMMON_NAME: [u64; 4] = [2, 5, 4, 3];
    let mut names = Vec::new();
    let parsed = yasna::parse_der(der, |r| {
        r.read_sequence(|cert| {
            cert.next().read_sequence(|tbs| {
                // [0] version, then serial, signature algorithm, issuer and validity.
                tbs.read_optional(|r| r.read_tagged(yasna::Tag::context(0), |r| r.read_der()))?;
                for _ in 0..4 {
                    tbs.next().read_der()?;
                }
                tbs.next().read_sequence_of(|rdn| {
                    rdn.read_set_of(|atv| {
                        atv.read_sequence(|atv| {
                            let oid = atv.next().read_oid()?;
                            let value = atv.next().read_tagged_der()?;
                            if oid.components().as_slice() == COMMON_NAME
                                && let Ok(s) = std::str::from_utf8(value.value())
                            {
                                names.push(s.to_string());
                            }
                            Ok(())
                        })
                    })
                })?;
                // The key and the extensions are not needed here.
                while tbs.read_optional(|r| r.read_der())?.is_some() {}
                Ok(())
            })?;
            while cert.read_optional(|r| r.read_der())?.is_some() {}
            Ok(())
        })
    });
    if parsed.is_ok() { names } else { Vec::new() }
}
