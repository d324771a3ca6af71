//! A throwaway test CA and a server certificate for the emulator's TLS listener.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};

/// PEM text of the CA and of the server certificate and key.
#[derive(Clone)]
pub struct SimCerts {
    /// The CA to trust (what the workload API's trust bundle returns).
    pub ca_pem: String,
    /// Server certificate chain (leaf, then CA).
    pub server_chain_pem: String,
    /// Server private key.
    pub server_key_pem: String,
}

impl std::fmt::Debug for SimCerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SimCerts")
    }
}

/// Generates a CA and a server certificate valid for `names` (DNS names or IP literals).
pub fn generate(names: &[String]) -> Result<SimCerts, rcgen::Error> {
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name
        .push(DnType::CommonName, "edgehub-sim test CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key)?;

    let server_key = KeyPair::generate()?;
    let mut server = CertificateParams::new(Vec::<String>::new())?;
    server.distinguished_name.push(
        DnType::CommonName,
        names.first().cloned().unwrap_or_else(|| "localhost".into()),
    );
    for name in names {
        server
            .subject_alt_names
            .push(match name.parse::<std::net::IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(name.clone().try_into()?),
            });
    }
    server.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_cert = server.signed_by(&server_key, &ca_cert, &ca_key)?;
    Ok(SimCerts {
        ca_pem: ca_cert.pem(),
        server_chain_pem: format!("{}{}", server_cert.pem(), ca_cert.pem()),
        server_key_pem: server_key.serialize_pem(),
    })
}
