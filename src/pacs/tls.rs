//! DICOM over TLS (PS3.15 Annex B, the basic TLS secure transport profile): the rustls client
//! configuration `dicom-ul` connects with, from PEM files. The PACS's certificate is checked
//! against the CA given (or the system's trusted roots) and against the host name or IP address
//! we connect to; a client certificate and key are presented when the PACS asks for one.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::PacsError;

/// Where the system keeps its trusted roots (Debian/Ubuntu, Fedora/RHEL, Alpine/macOS).
const SYSTEM_ROOTS: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// TLS settings of an association.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tls {
    /// PEM file of the CA certificate(s) that sign the PACS's certificate; `None`: the system's
    /// trusted roots.
    pub ca: Option<PathBuf>,
    /// Our certificate chain (PEM), for a PACS that asks for a client certificate.
    pub cert: Option<PathBuf>,
    /// Our private key (PEM) for `cert`.
    pub key: Option<PathBuf>,
}

fn certificates(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, PacsError> {
    let bad = |m: String| PacsError::TlsSetup(format!("{what} {}: {m}", path.display()));
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("no PEM certificate in it".into()));
    }
    Ok(certs)
}

/// The rustls client configuration for `tls` (ring provider, TLS 1.2 and 1.3).
pub(crate) fn client_config(tls: &Tls) -> Result<Arc<rustls::ClientConfig>, PacsError> {
    let mut roots = rustls::RootCertStore::empty();
    match &tls.ca {
        Some(ca) => {
            for c in certificates(ca, "CA file")? {
                roots
                    .add(c)
                    .map_err(|e| PacsError::TlsSetup(format!("CA file {}: {e}", ca.display())))?;
            }
        }
        None => {
            let bundle = SYSTEM_ROOTS
                .iter()
                .map(Path::new)
                .find(|p| p.is_file())
                .ok_or_else(|| {
                    PacsError::TlsSetup(
                        "no CA given and no system CA bundle found: give the CA certificate \
                         that signed the PACS's certificate (--tls-ca)"
                            .into(),
                    )
                })?;
            // A system bundle may hold certificates rustls cannot use: those are skipped.
            let (added, _ignored) =
                roots.add_parsable_certificates(certificates(bundle, "system CA bundle")?);
            if added == 0 {
                return Err(PacsError::TlsSetup(format!(
                    "no usable certificate in {}",
                    bundle.display()
                )));
            }
        }
    }
    // ring, not aws-lc-rs (rustls's default, which needs cmake and a C toolchain of its own);
    // rustls deprecates ring's provider only for lacking post-quantum key exchange.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| PacsError::TlsSetup(e.to_string()))?
        .with_root_certificates(roots);
    let config = match (&tls.cert, &tls.key) {
        (None, None) => builder.with_no_client_auth(),
        (Some(cert), Some(key)) => {
            let chain = certificates(cert, "client certificate")?;
            let key_der = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| PacsError::TlsSetup(format!("client key {}: {e}", key.display())))?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| PacsError::TlsSetup(format!("client certificate and key: {e}")))?
        }
        _ => {
            return Err(PacsError::TlsSetup(
                "a client certificate needs its key, and a key its certificate".into(),
            ));
        }
    };
    Ok(Arc::new(config))
}
