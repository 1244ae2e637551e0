//! Helpers for the TLS transport tests: a cluster CA made with rcgen, node certificates
//! (valid, expired, for another name, chained through many intermediates), transports with
//! TLS on 127.0.0.1, and a raw TLS client that can do what a real node never does (present
//! no certificate, any certificate, or claim any node id in its hello).

// Each test file uses a different subset of these helpers.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ha_replicate::tls::{TlsIdentity, node_dns_name};
use ha_replicate::transport::frame::{append_frame, split_frame};
use ha_replicate::transport::handshake::{HANDSHAKE_BYTES_MAX, HandshakeCodec};
use ha_replicate::transport::{RejectCause, TransportSettings};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    date_time_ymd,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::transport_support::{DEADLINE, node, settings};

/// The cluster name of these tests.
pub const CLUSTER: &str = "tlstest";

/// A certificate authority for tests.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate, PEM.
    pub pem: String,
}

/// A certificate chain (leaf first) and its key, PEM.
#[derive(Clone)]
pub struct NodeCert {
    pub chain_pem: String,
    pub key_pem: String,
}

impl Ca {
    /// A fresh CA named `name`.
    pub fn new(name: &str) -> Ca {
        let key = KeyPair::generate().expect("a key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).expect("a CA certificate");
        Ca {
            issuer: Issuer::new(params, key),
            pem: cert.pem(),
        }
    }

    /// A certificate for node `id` of [`CLUSTER`], valid now.
    pub fn node(&self, id: &str) -> NodeCert {
        self.leaf(&[node_dns_name(CLUSTER, &node(id))], false)
    }

    /// A certificate for node `id` of [`CLUSTER`] that expired in 2021.
    pub fn expired_node(&self, id: &str) -> NodeCert {
        self.leaf(&[node_dns_name(CLUSTER, &node(id))], true)
    }

    /// A leaf certificate naming `names`, usable as TLS server and client; valid in 2020 only
    /// when `expired`.
    pub fn leaf(&self, names: &[String], expired: bool) -> NodeCert {
        let key = KeyPair::generate().expect("a key");
        let mut params = CertificateParams::new(names.to_vec()).expect("params");
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        if expired {
            params.not_before = date_time_ymd(2020, 1, 1);
            params.not_after = date_time_ymd(2021, 1, 1);
        }
        let cert = params.signed_by(&key, &self.issuer).expect("a leaf");
        NodeCert {
            chain_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// A certificate for node `id` signed through `depth` intermediate CAs under this CA, with
    /// the whole chain (leaf first).
    pub fn deep_chain(&self, id: &str, depth: usize) -> NodeCert {
        let mut chain = Vec::with_capacity(depth + 1);
        let mut issuer_key = KeyPair::generate().expect("a key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "intermediate 1");
        chain.push(
            params
                .signed_by(&issuer_key, &self.issuer)
                .expect("cert")
                .pem(),
        );
        let mut issuer = Issuer::new(params, issuer_key);
        for level in 2..=depth {
            issuer_key = KeyPair::generate().expect("a key");
            let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params
                .distinguished_name
                .push(DnType::CommonName, format!("intermediate {level}"));
            chain.push(params.signed_by(&issuer_key, &issuer).expect("cert").pem());
            issuer = Issuer::new(params, issuer_key);
        }
        let key = KeyPair::generate().expect("a key");
        let mut params =
            CertificateParams::new(vec![node_dns_name(CLUSTER, &node(id))]).expect("params");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let leaf = params.signed_by(&key, &issuer).expect("leaf");
        chain.push(leaf.pem());
        chain.reverse();
        NodeCert {
            chain_pem: chain.concat(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// The identity of node `id` with `cert`, trusting the CAs in `ca_bundle_pem`.
pub fn identity(id: &str, cert: &NodeCert, ca_bundle_pem: &str) -> TlsIdentity {
    TlsIdentity::from_pem(
        CLUSTER,
        &node(id),
        cert.chain_pem.as_bytes(),
        cert.key_pem.as_bytes(),
        ca_bundle_pem.as_bytes(),
    )
    .expect("a valid identity")
}

/// Transport settings for `id` with TLS, on a free local port.
pub fn tls_settings(id: &str, cert: &NodeCert, ca_bundle_pem: &str) -> TransportSettings {
    settings(id, CLUSTER).with_tls(identity(id, cert, ca_bundle_pem))
}

/// How a raw client checks the server.
pub enum ServerCheck<'a> {
    /// Accept any certificate (to reach the server's own checks of the client).
    AcceptAny,
    /// Verify against these CAs for this node's name.
    Node { ca_pem: &'a str, id: &'a str },
}

/// Open TLS 1.3 to `addr` presenting `client` (or no certificate).
pub async fn raw_tls(
    addr: SocketAddr,
    client: Option<&NodeCert>,
    check: ServerCheck<'_>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3 with ring");
    let (builder, server_name) = match check {
        ServerCheck::AcceptAny => (
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAny(provider))),
            ServerName::try_from("anything.example").expect("a name"),
        ),
        ServerCheck::Node { ca_pem, id } => {
            let mut roots = rustls::RootCertStore::empty();
            for ca in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
                roots.add(ca.expect("CA PEM")).expect("a CA");
            }
            let name = ServerName::try_from(node_dns_name(CLUSTER, &node(id))).expect("a name");
            (builder.with_root_certificates(roots), name)
        }
    };
    let config = match client {
        None => builder.with_no_client_auth(),
        Some(cert) => {
            let chain = CertificateDer::pem_slice_iter(cert.chain_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .expect("chain PEM");
            let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).expect("key PEM");
            builder
                .with_client_auth_cert(chain, key)
                .expect("a client certificate")
        }
    };
    let stream = TcpStream::connect(addr).await?;
    TlsConnector::from(Arc::new(config))
        .connect(server_name, stream)
        .await
}

/// Send a hello claiming `claimed` inside `session`; true when the server answered with its
/// own hello, false when it closed (or failed) the connection instead.
pub async fn hello_answered(session: &mut TlsStream<TcpStream>, claimed: &str) -> bool {
    let codec = HandshakeCodec::new(CLUSTER, node(claimed), None);
    let mut frame = Vec::new();
    append_frame(
        &mut frame,
        &codec.encode_initiator([9; 16], [0; 24]),
        HANDSHAKE_BYTES_MAX,
    )
    .expect("a hello fits");
    if session.write_all(&frame).await.is_err() || session.flush().await.is_err() {
        return false;
    }
    let deadline = Instant::now() + DEADLINE;
    let mut buffer = Vec::new();
    loop {
        if let Ok(Some(_)) = split_frame(&buffer, HANDSHAKE_BYTES_MAX) {
            return true;
        }
        let mut chunk = [0u8; 1024];
        match tokio::time::timeout_at(deadline, session.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return false,
            Ok(Ok(count)) => buffer.extend_from_slice(&chunk[..count]),
            Err(_) => panic!("the server neither answered nor closed"),
        }
    }
}

/// Wait until `count()` reaches at least `target` for `cause`, or fail at the deadline.
pub async fn wait_for_refusal(
    what: &str,
    cause: RejectCause,
    target: u64,
    count: impl Fn() -> ha_replicate::transport::RejectCounts,
) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let counts = count();
        if counts.get(cause) >= target {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {cause} never reached {target}; counts {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A server verifier that accepts any certificate but still checks handshake signatures.
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
