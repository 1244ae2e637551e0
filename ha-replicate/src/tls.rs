//! Mutual TLS between the nodes of a cluster: a node's certificate, key and cluster CA.
//!
//! A cluster CA signs one certificate per node; the certificate names the node by the DNS
//! subject alternative name [`node_dns_name`] (`<node_id>.<cluster_name>`). With a
//! [`TlsIdentity`] in [`TransportSettings::tls`](crate::transport::TransportSettings::tls),
//! every replication connection is TLS 1.3 with certificates on both sides:
//!
//! - the connecting side verifies that the accepting side's certificate chains to a CA in the
//!   bundle and names the node it dialled;
//! - the accepting side requires a client certificate from a CA in the bundle, and checks that
//!   it names the node id the peer then claims in its hello. A node holding a valid
//!   certificate for `n2` cannot claim to be `n3`.
//!
//! The CA file may hold several CA certificates: during a CA rotation it holds the old and the
//! new one, so peers with certificates from either are accepted; once every node has a
//! certificate from the new CA, the old one is removed.
//!
//! Only the `ring` crypto provider is used, given explicitly to every configuration: nothing
//! depends on a process-wide default provider.
//!
//! ```
//! use ha_replicate::tls::{TlsIdentity, node_dns_name};
//! use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
//!
//! // A CA, and a certificate for node n1 of cluster "payments" (what `bot certs init` makes).
//! let ca_key = KeyPair::generate()?;
//! let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
//! ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
//! let ca_cert = ca_params.self_signed(&ca_key)?;
//! let issuer = Issuer::new(ca_params, ca_key);
//! let node_id = "n1".parse()?;
//! let node_key = KeyPair::generate()?;
//! let node_params = CertificateParams::new(vec![node_dns_name("payments", &node_id)])?;
//! let node_cert = node_params.signed_by(&node_key, &issuer)?;
//!
//! let identity = TlsIdentity::from_pem(
//!     "payments",
//!     &node_id,
//!     node_cert.pem().as_bytes(),
//!     node_key.serialize_pem().as_bytes(),
//!     ca_cert.pem().as_bytes(),
//! )?;
//! assert_eq!(identity.node_id(), &node_id);
//! // The key never shows in logs.
//! assert!(!format!("{identity:?}").contains("PRIVATE"));
//!
//! // A certificate for n1 does not make a node n2.
//! let refused = TlsIdentity::from_pem(
//!     "payments",
//!     &"n2".parse()?,
//!     node_cert.pem().as_bytes(),
//!     node_key.serialize_pem().as_bytes(),
//!     ca_cert.pem().as_bytes(),
//! );
//! assert!(refused.unwrap_err().to_string().contains("n2.payments"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ha_core::{NodeId, TlsFiles};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, ClientConfig, RootCertStore, ServerConfig};

use crate::transport::RejectCause;

/// Most CA certificates a CA file may hold (the current CA and old ones during rotations).
pub const CA_CERTIFICATES_MAX: usize = 16;

/// The DNS name a node's certificate must carry as a subject alternative name:
/// `"<node_id>.<cluster_name>"`.
///
/// ```
/// let id = "n1".parse().unwrap();
/// assert_eq!(ha_replicate::tls::node_dns_name("payments", &id), "n1.payments");
/// ```
pub fn node_dns_name(cluster_name: &str, node_id: &NodeId) -> String {
    format!("{node_id}.{cluster_name}")
}

/// Why a node's TLS material cannot be used. The message says what to fix; it never holds
/// key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {what} file {path}: {source}")]
    Read {
        /// Which file: "certificate", "key" or "CA".
        what: &'static str,
        /// The path given.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The PEM text holds no usable item of the kind needed.
    #[error("{what}{in_file}: {reason}")]
    Pem {
        /// What was looked for: "certificate", "private key", "CA certificate".
        what: &'static str,
        /// `" in PATH"` when read from a file, else empty.
        in_file: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// The node's own certificate cannot serve it: wrong CA, wrong name, expired, wrong key.
    #[error("this node's certificate{in_file} {reason}")]
    Certificate {
        /// `" (PATH)"` when read from a file, else empty.
        in_file: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// The node id and cluster name do not make a DNS name a certificate can carry.
    #[error(
        "{name:?} (node id \".\" cluster name) is not a valid DNS name, so no certificate can \
         name this node; use node ids and a cluster name of letters, digits and '-'"
    )]
    NodeName {
        /// The name built.
        name: String,
    },
    /// rustls refused the configuration.
    #[error("cannot build the TLS configuration: {0}")]
    Config(String),
}

/// This node's TLS identity: its certificate chain and key, and the cluster CA bundle that
/// peers' certificates must chain to. Cheap to clone. `Debug` shows the node, the number of
/// certificates and CAs, never the key.
///
/// Two identities are equal when they are for the same node and cluster with the same
/// certificate chain and CA bundle (the key follows from the certificate: it was checked to
/// match at load).
///
/// Loading one (the [module example](self) makes the files with rcgen):
///
/// ```no_run
/// use ha_core::TlsFiles;
/// use ha_replicate::tls::TlsIdentity;
/// use ha_replicate::transport::TransportSettings;
///
/// let node_id = "n1".parse()?;
/// let files = TlsFiles {
///     cert_file: "/etc/ha/n1.pem".into(),
///     key_file: "/etc/ha/n1.key".into(),
///     ca_file: "/etc/ha/ca.pem".into(),
/// };
/// // Refuses with a message naming the file when the certificate does not fit this node.
/// let identity = TlsIdentity::from_files("payments", &node_id, &files)?;
/// let settings = TransportSettings::new(node_id, "10.0.0.1:7000".parse()?, "payments")
///     .with_tls(identity);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct TlsIdentity {
    inner: Arc<Inner>,
}

struct Inner {
    cluster_name: String,
    node_id: NodeId,
    cert_chain: Vec<CertificateDer<'static>>,
    ca_certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    provider: Arc<CryptoProvider>,
    client: Arc<ClientConfig>,
    server: Arc<ServerConfig>,
}

impl TlsIdentity {
    /// An identity from PEM text: the node's certificate chain (its own certificate first),
    /// its private key (PKCS#8, PKCS#1 or SEC1) and the CA certificates (one or more).
    ///
    /// # Errors
    /// [`TlsError`] when there is no certificate or key, the key does not match the
    /// certificate, the certificate does not chain to a CA in `ca_pem`, does not name
    /// [`node_dns_name`]`(cluster_name, node_id)`, is expired or not yet valid, or is not
    /// usable for both TLS server and client authentication.
    pub fn from_pem(
        cluster_name: &str,
        node_id: &NodeId,
        cert_chain_pem: &[u8],
        key_pem: &[u8],
        ca_pem: &[u8],
    ) -> Result<TlsIdentity, TlsError> {
        Self::build(
            cluster_name,
            node_id,
            [cert_chain_pem, key_pem, ca_pem],
            [None, None, None],
        )
    }

    /// An identity from the files of a node config; errors name the file.
    ///
    /// # Errors
    /// As [`from_pem`](Self::from_pem), and [`TlsError::Read`] when a file cannot be read.
    pub fn from_files(
        cluster_name: &str,
        node_id: &NodeId,
        files: &TlsFiles,
    ) -> Result<TlsIdentity, TlsError> {
        let read = |what: &'static str, path: &Path| {
            std::fs::read(path).map_err(|source| TlsError::Read {
                what,
                path: path.to_path_buf(),
                source,
            })
        };
        let cert = read("certificate", &files.cert_file)?;
        let key = read("key", &files.key_file)?;
        let ca = read("CA", &files.ca_file)?;
        Self::build(
            cluster_name,
            node_id,
            [&cert, &key, &ca],
            [
                Some(&files.cert_file),
                Some(&files.key_file),
                Some(&files.ca_file),
            ],
        )
    }

    fn build(
        cluster_name: &str,
        node_id: &NodeId,
        [cert_pem, key_pem, ca_pem]: [&[u8]; 3],
        [cert_path, key_path, ca_path]: [Option<&PathBuf>; 3],
    ) -> Result<TlsIdentity, TlsError> {
        let in_file = |path: Option<&PathBuf>| {
            path.map_or_else(String::new, |path| format!(" in {}", path.display()))
        };
        let cert_chain = parse_certificates(cert_pem).map_err(|reason| TlsError::Pem {
            what: "certificate",
            in_file: in_file(cert_path),
            reason,
        })?;
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|error| TlsError::Pem {
            what: "private key",
            in_file: in_file(key_path),
            reason: format!(
                "no PKCS#8, PKCS#1 or SEC1 private key found ({error}); give the node's key \
                 in PEM"
            ),
        })?;
        let ca_certs = parse_certificates(ca_pem).map_err(|reason| TlsError::Pem {
            what: "CA certificate",
            in_file: in_file(ca_path),
            reason,
        })?;
        if ca_certs.len() > CA_CERTIFICATES_MAX {
            return Err(TlsError::Pem {
                what: "CA certificate",
                in_file: in_file(ca_path),
                reason: format!(
                    "{} certificates; keep at most {CA_CERTIFICATES_MAX} (the current CA and \
                     the old ones still in use)",
                    ca_certs.len()
                ),
            });
        }
        let mut roots = RootCertStore::empty();
        for (position, ca) in ca_certs.iter().enumerate() {
            roots.add(ca.clone()).map_err(|error| TlsError::Pem {
                what: "CA certificate",
                in_file: in_file(ca_path),
                reason: format!("certificate {} is not a usable CA: {error}", position + 1),
            })?;
        }
        let roots = Arc::new(roots);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cert_in_file =
            cert_path.map_or_else(String::new, |path| format!(" ({})", path.display()));
        let certificate_error = |reason: String| TlsError::Certificate {
            in_file: cert_in_file.clone(),
            reason,
        };
        rustls::sign::CertifiedKey::from_der(cert_chain.clone(), key.clone_key(), &provider)
            .map_err(|error| {
                certificate_error(format!(
                    "does not go with the private key{} ({error}); give the key the \
                     certificate was made for",
                    in_file(key_path)
                ))
            })?;
        let own_name = node_dns_name(cluster_name, node_id);
        let server_name =
            ServerName::try_from(own_name.clone()).map_err(|_| TlsError::NodeName {
                name: own_name.clone(),
            })?;
        let server_verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::clone(&roots), Arc::clone(&provider))
                .build()
                .map_err(|error| TlsError::Config(error.to_string()))?;
        let client_verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::clone(&roots), Arc::clone(&provider))
                .build()
                .map_err(|error| TlsError::Config(error.to_string()))?;
        let (end_entity, intermediates) = cert_chain
            .split_first()
            .ok_or_else(|| certificate_error("is missing".to_string()))?;
        let now = UnixTime::now();
        let explain = |error: rustls::Error| {
            certificate_error(describe_own_certificate_error(&error, &own_name))
        };
        server_verifier
            .verify_server_cert(end_entity, intermediates, &server_name, &[], now)
            .map_err(explain)?;
        client_verifier
            .verify_client_cert(end_entity, intermediates, now)
            .map_err(explain)?;
        let versions = [&rustls::version::TLS13];
        let mut client = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&versions)
            .map_err(|error| TlsError::Config(error.to_string()))?
            .with_root_certificates(Arc::clone(&roots))
            .with_client_auth_cert(cert_chain.clone(), key.clone_key())
            .map_err(|error| TlsError::Config(error.to_string()))?;
        // Every connection is a full handshake, so every connection checks certificates.
        client.resumption = rustls::client::Resumption::disabled();
        let mut server = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&versions)
            .map_err(|error| TlsError::Config(error.to_string()))?
            .with_client_cert_verifier(client_verifier)
            .with_single_cert(cert_chain.clone(), key.clone_key())
            .map_err(|error| TlsError::Config(error.to_string()))?;
        server.send_tls13_tickets = 0;
        server.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        Ok(TlsIdentity {
            inner: Arc::new(Inner {
                cluster_name: cluster_name.to_string(),
                node_id: node_id.clone(),
                cert_chain,
                ca_certs,
                key,
                provider,
                client: Arc::new(client),
                server: Arc::new(server),
            }),
        })
    }

    /// The node this identity is for.
    pub fn node_id(&self) -> &NodeId {
        &self.inner.node_id
    }

    /// The cluster this identity is for.
    pub fn cluster_name(&self) -> &str {
        &self.inner.cluster_name
    }

    /// The node's certificate chain, its own certificate first.
    pub fn cert_chain(&self) -> &[CertificateDer<'static>] {
        &self.inner.cert_chain
    }

    /// The CA certificates peers' certificates must chain to.
    pub fn ca_certs(&self) -> &[CertificateDer<'static>] {
        &self.inner.ca_certs
    }

    /// A server configuration for the admin API's HTTPS with the same certificate: TLS 1.2
    /// and 1.3, no client certificates, ALPN `http/1.1`.
    ///
    /// # Panics
    /// Never: the certificate and key were checked when the identity was loaded.
    pub fn https_server_config(&self) -> Arc<rustls::ServerConfig> {
        let builder = ServerConfig::builder_with_provider(Arc::clone(&self.inner.provider))
            .with_safe_default_protocol_versions()
            .expect("the ring provider supports the default protocol versions")
            .with_no_client_auth();
        let mut config = builder
            .with_single_cert(self.inner.cert_chain.clone(), self.inner.key.clone_key())
            .expect("certificate and key were checked to match at load");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }

    /// The configuration for accepting replication connections (client certificates required).
    pub(crate) fn server_config(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.inner.server)
    }

    /// The configuration for opening replication connections.
    pub(crate) fn client_config(&self) -> Arc<ClientConfig> {
        Arc::clone(&self.inner.client)
    }

    /// The name a peer's certificate must carry, as a server name for verification.
    ///
    /// # Errors
    /// [`TlsError::NodeName`] when the node id and cluster do not make a DNS name.
    pub(crate) fn peer_server_name(&self, peer: &NodeId) -> Result<ServerName<'static>, TlsError> {
        let name = node_dns_name(&self.inner.cluster_name, peer);
        ServerName::try_from(name.clone()).map_err(|_| TlsError::NodeName { name })
    }
}

/// Check that `end_entity` (a certificate already verified against the CA bundle) names
/// `claimed` in `cluster_name`.
///
/// # Errors
/// A sentence for the log when it does not (or cannot be parsed).
pub(crate) fn check_names_node(
    end_entity: &CertificateDer<'_>,
    cluster_name: &str,
    claimed: &NodeId,
) -> Result<(), String> {
    let name = node_dns_name(cluster_name, claimed);
    let server_name = ServerName::try_from(name.as_str())
        .map_err(|_| format!("{name:?} is not a DNS name a certificate can carry"))?;
    let certificate = webpki::EndEntityCert::try_from(end_entity)
        .map_err(|error| format!("the certificate does not parse: {error}"))?;
    certificate
        .verify_is_valid_for_subject_name(&server_name)
        .map_err(|_| format!("the peer's certificate does not name {name}"))
}

/// The refusal cause for a TLS error (see [`RejectCause`]).
pub(crate) fn reject_cause(error: &rustls::Error) -> RejectCause {
    match error {
        rustls::Error::NoCertificatesPresented => RejectCause::NoCertificate,
        rustls::Error::InvalidCertificate(error) => match error {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                RejectCause::WrongCa
            }
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => RejectCause::CertExpired,
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                RejectCause::IdentityMismatch
            }
            _ => RejectCause::TlsHandshake,
        },
        _ => RejectCause::TlsHandshake,
    }
}

fn describe_own_certificate_error(error: &rustls::Error, own_name: &str) -> String {
    match reject_cause(error) {
        RejectCause::WrongCa => format!(
            "does not chain to a CA in the CA file ({error}); give the CA that signed it, or a \
             certificate signed by the cluster CA"
        ),
        RejectCause::CertExpired => format!(
            "is outside its validity period ({error}); renew it (`bot certs init` with the \
             same CA) and restart"
        ),
        RejectCause::IdentityMismatch => format!(
            "does not name this node: it needs the DNS subject alternative name {own_name} \
             ({error})"
        ),
        _ => format!(
            "cannot be used ({error}); it must be usable for TLS server and client \
             authentication and name {own_name}"
        ),
    }
}

fn parse_certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| format!("the PEM does not parse ({error})"))?;
    if certificates.is_empty() {
        return Err("no \"BEGIN CERTIFICATE\" block found; give PEM certificates".to_string());
    }
    Ok(certificates)
}

impl PartialEq for TlsIdentity {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
            || (self.inner.cluster_name == other.inner.cluster_name
                && self.inner.node_id == other.inner.node_id
                && self.inner.cert_chain == other.inner.cert_chain
                && self.inner.ca_certs == other.inner.ca_certs)
    }
}

impl Eq for TlsIdentity {}

impl fmt::Debug for TlsIdentity {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("TlsIdentity")
            .field("node_id", &self.inner.node_id)
            .field("cluster_name", &self.inner.cluster_name)
            .field("certificates", &self.inner.cert_chain.len())
            .field("ca_certificates", &self.inner.ca_certs.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use rcgen::{
        BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
        date_time_ymd,
    };

    use super::*;

    struct TestCa {
        issuer: Issuer<'static, KeyPair>,
        pem: String,
    }

    fn new_ca() -> TestCa {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let pem = params.self_signed(&key).expect("CA").pem();
        TestCa {
            issuer: Issuer::new(params, key),
            pem,
        }
    }

    /// A certificate naming `names` (PEM) and its key (PEM).
    fn leaf(ca: &TestCa, names: &[&str], expired: bool) -> (String, String) {
        let key = KeyPair::generate().expect("key");
        let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("params");
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        if expired {
            params.not_before = date_time_ymd(2020, 1, 1);
            params.not_after = date_time_ymd(2021, 1, 1);
        }
        let cert = params.signed_by(&key, &ca.issuer).expect("leaf");
        (cert.pem(), key.serialize_pem())
    }

    fn id(name: &str) -> NodeId {
        NodeId::new(name).expect("literal id")
    }

    fn load(cert: &str, key: &str, ca: &str) -> Result<TlsIdentity, TlsError> {
        TlsIdentity::from_pem(
            "c",
            &id("n1"),
            cert.as_bytes(),
            key.as_bytes(),
            ca.as_bytes(),
        )
    }

    #[test]
    fn a_good_identity_loads_and_a_bad_one_says_what_to_fix() {
        let ca = new_ca();
        let other_ca = new_ca();
        let (cert, key) = leaf(&ca, &["n1.c"], false);
        let identity = load(&cert, &key, &ca.pem).expect("a good identity");
        assert_eq!(identity.cert_chain().len(), 1);
        assert_eq!(identity.ca_certs().len(), 1);
        assert_eq!(identity, load(&cert, &key, &ca.pem).expect("same again"));
        let bundle = format!("{}{}", other_ca.pem, ca.pem);
        let rotated = load(&cert, &key, &bundle).expect("the signing CA is second");
        assert_ne!(identity, rotated, "another CA bundle is another identity");
        assert_eq!(
            identity.https_server_config().alpn_protocols,
            vec![b"http/1.1".to_vec()]
        );

        let (_, other_key) = leaf(&ca, &["n1.c"], false);
        let (other_name, other_name_key) = leaf(&ca, &["n2.c"], false);
        let (expired, expired_key) = leaf(&ca, &["n1.c"], true);
        let cases: [(&str, Result<TlsIdentity, TlsError>, &str); 7] = [
            (
                "no certificate",
                load("", &key, &ca.pem),
                "BEGIN CERTIFICATE",
            ),
            ("no key", load(&cert, "", &ca.pem), "private key"),
            ("no CA", load(&cert, &key, ""), "CA certificate"),
            (
                "another key",
                load(&cert, &other_key, &ca.pem),
                "does not go with the private key",
            ),
            (
                "another CA",
                load(&cert, &key, &other_ca.pem),
                "does not chain to a CA",
            ),
            (
                "another node's certificate",
                load(&other_name, &other_name_key, &ca.pem),
                "n1.c",
            ),
            (
                "expired",
                load(&expired, &expired_key, &ca.pem),
                "validity period",
            ),
        ];
        for (what, result, expected) in cases {
            let message = result.expect_err(what).to_string();
            assert!(message.contains(expected), "{what}: {message}");
            assert!(!message.contains("PRIVATE KEY-----"), "{what}: {message}");
        }
    }

    #[test]
    fn transport_settings_refuse_an_identity_for_another_node_and_debug_hides_the_key() {
        let ca = new_ca();
        let (cert, key) = leaf(&ca, &["n1.c"], false);
        let identity = load(&cert, &key, &ca.pem).expect("a good identity");
        let address = "127.0.0.1:0".parse().expect("literal address");
        let settings = crate::transport::TransportSettings::new(id("n1"), address, "c");
        settings
            .clone()
            .with_tls(identity.clone())
            .validate()
            .expect("the identity is for n1 of c");
        let other = crate::transport::TransportSettings::new(id("n2"), address, "c");
        let error = other.with_tls(identity.clone()).validate().expect_err("n2");
        assert_eq!(error.field, "transport.tls");
        let debug = format!("{identity:?}");
        assert!(
            debug.contains("n1") && !debug.contains("PRIVATE"),
            "{debug}"
        );
        assert!(
            !debug.contains(key.lines().nth(1).expect("a key line")),
            "{debug}"
        );
    }

    #[test]
    fn errors_from_files_name_the_file() {
        let files = TlsFiles {
            cert_file: "/nonexistent/n1.pem".into(),
            key_file: "/nonexistent/n1.key".into(),
            ca_file: "/nonexistent/ca.pem".into(),
        };
        let message = TlsIdentity::from_files("c", &id("n1"), &files)
            .expect_err("no such file")
            .to_string();
        assert!(message.contains("/nonexistent/n1.pem"), "{message}");
        let directory = tempfile::tempdir().expect("a temporary directory");
        let ca = new_ca();
        let (cert, key) = leaf(&ca, &["n9.c"], false);
        let cert_file = directory.path().join("n1.pem");
        let key_file = directory.path().join("n1.key");
        let ca_file = directory.path().join("ca.pem");
        std::fs::write(&cert_file, cert).expect("write");
        std::fs::write(&key_file, key).expect("write");
        std::fs::write(&ca_file, &ca.pem).expect("write");
        let files = TlsFiles {
            cert_file: cert_file.clone(),
            key_file,
            ca_file,
        };
        let message = TlsIdentity::from_files("c", &id("n1"), &files)
            .expect_err("the certificate names n9")
            .to_string();
        assert!(
            message.contains(&cert_file.display().to_string()),
            "{message}"
        );
        assert!(message.contains("n1.c"), "{message}");
    }

    #[test]
    fn a_certificate_names_only_its_own_node() {
        let ca = new_ca();
        let (cert, _) = leaf(&ca, &["n2.c"], false);
        let der = CertificateDer::from_pem_slice(cert.as_bytes()).expect("PEM");
        assert_eq!(check_names_node(&der, "c", &id("n2")), Ok(()));
        assert!(check_names_node(&der, "c", &id("n3")).is_err());
        assert!(check_names_node(&der, "other", &id("n2")).is_err());
        let garbage = CertificateDer::from(vec![0x30, 0x03, 1, 2, 3]);
        assert!(check_names_node(&garbage, "c", &id("n2")).is_err());
    }

    #[test]
    fn tls_errors_map_to_their_refusal_cause() {
        use rustls::Error;
        let now = UnixTime::now();
        let cases = [
            (Error::NoCertificatesPresented, RejectCause::NoCertificate),
            (CertificateError::UnknownIssuer.into(), RejectCause::WrongCa),
            (CertificateError::BadSignature.into(), RejectCause::WrongCa),
            (CertificateError::Expired.into(), RejectCause::CertExpired),
            (
                CertificateError::ExpiredContext {
                    time: now,
                    not_after: now,
                }
                .into(),
                RejectCause::CertExpired,
            ),
            (
                CertificateError::NotValidYet.into(),
                RejectCause::CertExpired,
            ),
            (
                CertificateError::NotValidForName.into(),
                RejectCause::IdentityMismatch,
            ),
            (
                CertificateError::BadEncoding.into(),
                RejectCause::TlsHandshake,
            ),
            (
                Error::InappropriateMessage {
                    expect_types: Vec::new(),
                    got_type: rustls::ContentType::Alert,
                },
                RejectCause::TlsHandshake,
            ),
            (Error::DecryptError, RejectCause::TlsHandshake),
        ];
        for (error, cause) in cases {
            assert_eq!(reject_cause(&error), cause, "{error}");
        }
    }
}
