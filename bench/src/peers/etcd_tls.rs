//! Certificates for an etcd cluster with peer and client TLS, made with rcgen: one CA, one
//! certificate per member (SANs IP 127.0.0.1 and DNS localhost, usable as server and client,
//! as etcd's peer links need) and one for the benchmark's clients (etcd requires a client
//! certificate from the CA of `--trusted-ca-file`), written as PEM files.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use super::PeerError;
use super::bot_security::write_private;

/// The files of an etcd cluster with TLS: `--trusted-ca-file`/`--peer-trusted-ca-file` and
/// each member's `--cert-file`/`--peer-cert-file` and key.
#[derive(Clone, Debug)]
pub struct EtcdTls {
    /// The CA certificate (PEM).
    pub ca_file: PathBuf,
    /// Member `i`'s certificate and key files (PEM), by index.
    pub members: Vec<(PathBuf, PathBuf)>,
    /// The benchmark clients' certificate followed by its key (PEM).
    pub client_identity_file: PathBuf,
}

fn certificates(error: rcgen::Error) -> PeerError {
    PeerError::Certificates(error.to_string())
}

impl EtcdTls {
    /// Make a CA, `members` member certificates and a client certificate in `dir` (`ca.pem`,
    /// `e<i>.pem`, `e<i>.key`, `client.pem`; keys mode 0600). `dir` must not hold them
    /// already.
    ///
    /// # Errors
    /// [`PeerError::Certificates`] from rcgen; [`PeerError::Io`] writing the files.
    pub fn generate(dir: &Path, members: usize) -> Result<Self, PeerError> {
        std::fs::create_dir_all(dir)?;
        let ca_key = KeyPair::generate().map_err(certificates)?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(certificates)?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "ha-bench etcd CA");
        let ca_cert = ca_params.self_signed(&ca_key).map_err(certificates)?;
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, ca_cert.pem())?;
        let issuer = Issuer::new(ca_params, ca_key);
        let mut files = Vec::with_capacity(members);
        for index in 0..members {
            let name = format!("e{}", index + 1);
            let key = KeyPair::generate().map_err(certificates)?;
            let mut params =
                CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
                    .map_err(certificates)?;
            params
                .distinguished_name
                .push(DnType::CommonName, name.as_str());
            params.key_usages = vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ];
            params.extended_key_usages = vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ];
            let cert = params.signed_by(&key, &issuer).map_err(certificates)?;
            let cert_file = dir.join(format!("{name}.pem"));
            let key_file = dir.join(format!("{name}.key"));
            std::fs::write(&cert_file, cert.pem())?;
            write_private(&key_file, key.serialize_pem().as_bytes())?;
            files.push((cert_file, key_file));
        }
        let client_key = KeyPair::generate().map_err(certificates)?;
        let mut client_params =
            CertificateParams::new(Vec::<String>::new()).map_err(certificates)?;
        client_params
            .distinguished_name
            .push(DnType::CommonName, "ha-bench client");
        client_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client_cert = client_params
            .signed_by(&client_key, &issuer)
            .map_err(certificates)?;
        let client_identity_file = dir.join("client.pem");
        write_private(
            &client_identity_file,
            format!("{}{}", client_cert.pem(), client_key.serialize_pem()).as_bytes(),
        )?;
        Ok(Self {
            ca_file,
            members: files,
            client_identity_file,
        })
    }

    /// The client certificate and key the benchmark's clients present.
    ///
    /// # Errors
    /// [`PeerError::Io`] reading it; [`PeerError::Http`] when it is not a PEM certificate and
    /// key.
    pub fn client_identity(&self) -> Result<reqwest::Identity, PeerError> {
        let pem = std::fs::read(&self.client_identity_file)?;
        reqwest::Identity::from_pem(&pem).map_err(|error| {
            PeerError::Http(format!("{}: {error}", self.client_identity_file.display()))
        })
    }

    /// The CA as a root for clients.
    ///
    /// # Errors
    /// [`PeerError::Io`] reading it; [`PeerError::Http`] when it is not PEM.
    pub fn root_certificate(&self) -> Result<reqwest::Certificate, PeerError> {
        let pem = std::fs::read(&self.ca_file)?;
        reqwest::Certificate::from_pem(&pem)
            .map_err(|error| PeerError::Http(format!("{}: {error}", self.ca_file.display())))
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn generated_files_load_as_a_root_and_a_client_identity_with_private_keys() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let tls = EtcdTls::generate(dir.path(), 3).expect("certificates");
        assert_eq!(tls.members.len(), 3);
        tls.root_certificate().expect("the CA parses as a root");
        tls.client_identity()
            .expect("the client certificate and key parse as an identity");
        for (cert, key) in &tls.members {
            let pem = std::fs::read_to_string(cert).expect("member certificate");
            assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
            let mode = std::fs::metadata(key).expect("key").permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{}", key.display());
        }
        assert!(
            EtcdTls::generate(dir.path(), 3).is_err(),
            "existing keys are not overwritten"
        );
    }
}
