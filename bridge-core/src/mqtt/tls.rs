//! rustls client configuration on the ring provider (no aws-lc build), trusting only
//! the given PEM roots (edgeHub's trust bundle) or the system roots.

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::identity::TrustRoots;

/// TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// The PEM text holds no usable certificate.
    #[error("The trust bundle contains no usable certificate.")]
    NoCertificates,
    /// rustls refused the configuration.
    #[error("TLS configuration failed.")]
    Rustls(#[from] rustls::Error),
}

/// A client config for `roots`.
pub fn client_config(roots: &TrustRoots) -> Result<Arc<rustls::ClientConfig>, TlsSetupError> {
    let mut store = RootCertStore::empty();
    match roots {
        TrustRoots::Pem(pem) => {
            for cert in CertificateDer::pem_slice_iter(pem.as_bytes()).flatten() {
                // A bad certificate among good ones is skipped, as the SDKs do.
                let _ignored = store.add(cert);
            }
        }
        TrustRoots::System => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ignored = store.add(cert);
            }
        }
    }
    if store.is_empty() {
        return Err(TlsSetupError::NoCertificates);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(store)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_or_garbage_bundles_are_refused() {
        assert!(matches!(
            client_config(&TrustRoots::Pem(String::new())),
            Err(TlsSetupError::NoCertificates)
        ));
        assert!(matches!(
            client_config(&TrustRoots::Pem(
                "-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n".into()
            )),
            Err(TlsSetupError::NoCertificates)
        ));
    }
}
