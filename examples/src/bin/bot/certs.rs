//! `bot certs init`: the TLS files of a cluster, made with rcgen (ECDSA P-256 keys).
//!
//! ```text
//!   DIR/ca.pem   the cluster CA certificate (CN "ha cluster CA <cluster>", may sign end
//!                certificates only, valid CA_VALIDITY_DAYS); every node's --tls-ca
//!   DIR/ca.key   its private key (0600); needed only to make node certificates: keep it
//!                off the nodes
//!   DIR/<id>.pem the node's certificate, signed by the CA, TLS server and client, naming
//!                <id>.<cluster>, localhost, 127.0.0.1 and each --host ID=...; its --tls-cert
//!   DIR/<id>.key its private key (0600); its --tls-key
//! ```
//!
//! Everything is checked before anything is written: the names, that no target file exists,
//! and that each new node certificate verifies against the CA (with rustls-webpki, as the
//! nodes will) for `<id>.<cluster>`. A CA already in DIR is reused, so nodes can be added
//! later; a CA rotation starts with a new DIR.

use std::net::IpAddr;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ha::NodeId;
use rand::TryRng;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, DnsName, ServerName, UnixTime};

use crate::cli::{CertsArgs, CertsCommand, CertsInitArgs};
use crate::error::BotError;
use crate::new_file::{PUBLIC_FILE_MODE, SECRET_FILE_MODE, write_new_file};

/// How long a new CA is valid, in days.
pub const CA_VALIDITY_DAYS: u32 = 3650;
/// Most node ids in one run.
pub const NODES_MAX: usize = 256;
/// Most `--host` names per node.
pub const HOSTS_PER_NODE_MAX: usize = 16;
/// Largest existing ca.pem or ca.key read, in bytes.
pub const CA_FILE_BYTES_MAX: u64 = 64 * 1024;
/// How far back a new certificate's validity starts, so a node whose clock is a little behind
/// accepts it at once.
const BACKDATE: Duration = Duration::from_secs(3600);
/// The file names of the CA in DIR.
const CA_CERT_FILE: &str = "ca.pem";
const CA_KEY_FILE: &str = "ca.key";
/// Bytes of a certificate serial number (RFC 5280 allows up to 20).
const SERIAL_BYTES: usize = 16;

/// Run `bot certs ...`.
///
/// # Errors
/// As for [`init`]; the files written before an error are printed first.
pub fn run(args: &CertsArgs) -> Result<(), BotError> {
    match &args.command {
        CertsCommand::Init(init_args) => {
            let mut written = Vec::new();
            let result = init(init_args, &mut |line| {
                println!("{line}");
                written.push(line);
            });
            if result.is_ok() {
                println!(
                    "give each node its <id>.pem, <id>.key and {CA_CERT_FILE} (--tls-cert, \
                     --tls-key, --tls-ca) and --cluster {}; keep {CA_KEY_FILE} off the nodes",
                    init_args.cluster
                );
            }
            result
        }
    }
}

/// One node's certificate to make.
struct NodePlan {
    id: NodeId,
    dns_name: String,
    extra_hosts: Vec<SanType>,
    cert_path: PathBuf,
    key_path: PathBuf,
}

/// The CA that signs: loaded from DIR, or new (its files then still to write).
struct CaSigner {
    issuer: Issuer<'static, KeyPair>,
    certificate: CertificateDer<'static>,
    new_files: Option<(String, String)>,
}

/// Make the files `args` asks for; `report` gets one line per file written (or CA reused).
///
/// # Errors
/// [`BotError::Certs`] (exit code 2) for a bad cluster name, node id, `--host` or a CA in
/// DIR that cannot be used, [`BotError::FileExists`] (exit code 2) for a file that exists:
/// in both cases nothing was written. [`BotError::File`] when DIR cannot be created or
/// written and [`BotError::Crypto`] when generation fails: files written before are reported.
pub fn init(args: &CertsInitArgs, report: &mut dyn FnMut(String)) -> Result<(), BotError> {
    let plans = plan_nodes(args)?;
    let dir = &args.dir;
    let ca_cert_path = dir.join(CA_CERT_FILE);
    let ca_key_path = dir.join(CA_KEY_FILE);
    for plan in &plans {
        for path in [&plan.cert_path, &plan.key_path] {
            if path.symlink_metadata().is_ok() {
                return Err(BotError::FileExists { path: path.clone() });
            }
        }
    }
    let now = SystemTime::now();
    let ca = match (
        ca_cert_path.symlink_metadata().is_ok(),
        ca_key_path.symlink_metadata().is_ok(),
    ) {
        (true, true) => load_ca(&ca_cert_path, &ca_key_path)?,
        (false, false) => new_ca(&args.cluster, now)?,
        (true, false) => return Err(half_a_ca(&ca_cert_path, &ca_key_path)),
        (false, true) => return Err(half_a_ca(&ca_key_path, &ca_cert_path)),
    };
    // Sign and check every node before writing anything.
    let mut signed = Vec::with_capacity(plans.len());
    for plan in &plans {
        let (certificate_pem, key_pem, certificate) = sign_node(plan, &ca.issuer, now, args.days)?;
        verify_node_certificate(&ca.certificate, &certificate, &plan.dns_name).map_err(
            |reason| {
                BotError::Certs(format!(
                    "the certificate made for {} {reason}; is {} the key of {}?",
                    plan.id,
                    ca_key_path.display(),
                    ca_cert_path.display()
                ))
            },
        )?;
        signed.push((plan, certificate_pem, key_pem));
    }
    create_dir(dir)?;
    match &ca.new_files {
        Some((certificate_pem, key_pem)) => {
            write_new_file(&ca_key_path, key_pem.as_bytes(), SECRET_FILE_MODE)?;
            report(format!(
                "wrote {} (CA private key, mode 0600: keep it off the nodes)",
                ca_key_path.display()
            ));
            write_new_file(&ca_cert_path, certificate_pem.as_bytes(), PUBLIC_FILE_MODE)?;
            report(format!(
                "wrote {} (CA certificate \"ha cluster CA {}\", valid {CA_VALIDITY_DAYS} days: \
                 every node's --tls-ca)",
                ca_cert_path.display(),
                args.cluster
            ));
        }
        None => report(format!(
            "reused the CA in {} and {}",
            ca_cert_path.display(),
            ca_key_path.display()
        )),
    }
    for (plan, certificate_pem, key_pem) in signed {
        write_new_file(&plan.key_path, key_pem.as_bytes(), SECRET_FILE_MODE)?;
        report(format!(
            "wrote {} ({}'s private key, mode 0600: its --tls-key)",
            plan.key_path.display(),
            plan.id
        ));
        write_new_file(
            &plan.cert_path,
            certificate_pem.as_bytes(),
            PUBLIC_FILE_MODE,
        )?;
        let mut names = vec![
            plan.dns_name.clone(),
            "localhost".into(),
            "127.0.0.1".into(),
        ];
        names.extend(plan.extra_hosts.iter().map(san_text));
        report(format!(
            "wrote {} ({}'s certificate for {}, valid {} days: its --tls-cert)",
            plan.cert_path.display(),
            plan.id,
            names.join(", "),
            args.days
        ));
    }
    Ok(())
}

/// Check the names and hosts and work out each node's files.
fn plan_nodes(args: &CertsInitArgs) -> Result<Vec<NodePlan>, BotError> {
    let cluster = &args.cluster;
    if !ha::core::is_valid_cluster_name(cluster) {
        return Err(BotError::Certs(format!(
            "--cluster {cluster:?} is not 1 to {} characters of [A-Za-z0-9._-]; give the name \
             the nodes get with --cluster",
            ha::core::CLUSTER_NAME_LENGTH_MAX
        )));
    }
    if args.nodes.is_empty() {
        return Err(BotError::Certs(
            "--nodes is empty; list the node ids, e.g. n1,n2,n3".into(),
        ));
    }
    if args.nodes.len() > NODES_MAX {
        return Err(BotError::Certs(format!(
            "{} node ids given; at most {NODES_MAX} per run",
            args.nodes.len()
        )));
    }
    let mut plans: Vec<NodePlan> = Vec::with_capacity(args.nodes.len());
    for id in &args.nodes {
        if plans.iter().any(|plan| &plan.id == id) {
            return Err(BotError::Certs(format!("--nodes names {id} twice")));
        }
        let file_stem = id.as_str();
        if file_stem == "ca" {
            return Err(BotError::Certs(
                "a node cannot be called \"ca\": its files would be the CA's".into(),
            ));
        }
        // The name a peer checks (`ha_replicate::tls::node_dns_name`).
        let dns_name = format!("{id}.{cluster}");
        if !is_dns_name(&dns_name) {
            return Err(BotError::Certs(format!(
                "node {id} in cluster {cluster} gives the name {dns_name:?}, which is not a \
                 valid DNS name (labels of letters, digits, '-' and '_' between dots); pick \
                 ids and a cluster name without leading, trailing or doubled dots"
            )));
        }
        plans.push(NodePlan {
            id: id.clone(),
            dns_name,
            extra_hosts: Vec::new(),
            cert_path: args.dir.join(format!("{file_stem}.pem")),
            key_path: args.dir.join(format!("{file_stem}.key")),
        });
    }
    for host in &args.hosts {
        let (id, name) = parse_host(host)?;
        let Some(plan) = plans.iter_mut().find(|plan| plan.id == id) else {
            return Err(BotError::Certs(format!(
                "--host {host:?} names node {id}, which is not in --nodes"
            )));
        };
        if plan.extra_hosts.contains(&name) {
            continue;
        }
        if plan.extra_hosts.len() == HOSTS_PER_NODE_MAX {
            return Err(BotError::Certs(format!(
                "more than {HOSTS_PER_NODE_MAX} --host names for node {id}"
            )));
        }
        plan.extra_hosts.push(name);
    }
    Ok(plans)
}

/// `ID=NAME_OR_IP` as the node id and a subject alternative name.
fn parse_host(text: &str) -> Result<(NodeId, SanType), BotError> {
    let refuse = |reason: String| BotError::Certs(format!("--host {text:?}: {reason}"));
    let Some((id, name)) = text.split_once('=') else {
        return Err(refuse(
            "give ID=NAME_OR_IP, e.g. n1=10.0.0.1 or n1=node1.example.com".into(),
        ));
    };
    let id: NodeId = id
        .parse()
        .map_err(|error| refuse(format!("the node id is invalid: {error}")))?;
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok((id, SanType::IpAddress(ip)));
    }
    if !is_dns_name(name) {
        return Err(refuse(format!(
            "{name:?} is neither an IP address nor a DNS name (no wildcards)"
        )));
    }
    let name = name
        .to_ascii_lowercase()
        .try_into()
        .map_err(|error| refuse(format!("{error}")))?;
    Ok((id, SanType::DnsName(name)))
}

/// A DNS name a certificate can hold and a peer can match: no wildcard, no empty label (so
/// no leading, trailing or doubled dot), and valid by rustls's rules.
fn is_dns_name(name: &str) -> bool {
    !name.contains('*') && !name.split('.').any(str::is_empty) && DnsName::try_from(name).is_ok()
}

fn san_text(san: &SanType) -> String {
    match san {
        SanType::DnsName(name) => name.to_string(),
        SanType::IpAddress(ip) => ip.to_string(),
        other => format!("{other:?}"),
    }
}

fn half_a_ca(present: &Path, missing: &Path) -> BotError {
    BotError::Certs(format!(
        "{} exists but {} does not: a CA needs both. Restore the missing file, or use a new \
         --dir for a new CA",
        present.display(),
        missing.display()
    ))
}

fn read_ca_file(path: &Path) -> Result<String, BotError> {
    let refuse = |reason: String| BotError::Certs(format!("{}: {reason}", path.display()));
    let size = std::fs::metadata(path)
        .map_err(|error| refuse(format!("cannot read it: {error}")))?
        .len();
    if size > CA_FILE_BYTES_MAX {
        return Err(refuse(format!(
            "is {size} bytes, more than a CA file holds (limit {CA_FILE_BYTES_MAX})"
        )));
    }
    std::fs::read_to_string(path).map_err(|error| refuse(format!("cannot read it: {error}")))
}

fn load_ca(cert_path: &Path, key_path: &Path) -> Result<CaSigner, BotError> {
    let key_pem = read_ca_file(key_path)?;
    let key = KeyPair::from_pem(&key_pem).map_err(|error| {
        BotError::Certs(format!(
            "{} is not a private key in PEM: {error}",
            key_path.display()
        ))
    })?;
    let cert_pem = read_ca_file(cert_path)?;
    let certificate = CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|error| {
        BotError::Certs(format!(
            "{} holds no certificate in PEM: {error}",
            cert_path.display()
        ))
    })?;
    let issuer = Issuer::from_ca_cert_der(&certificate, key).map_err(|error| {
        BotError::Certs(format!(
            "{} is not a CA certificate rcgen can use: {error}",
            cert_path.display()
        ))
    })?;
    Ok(CaSigner {
        issuer,
        certificate,
        new_files: None,
    })
}

fn new_ca(cluster: &str, now: SystemTime) -> Result<CaSigner, BotError> {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, format!("ha cluster CA {cluster}"));
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    set_validity(&mut params, now, CA_VALIDITY_DAYS)?;
    let key = KeyPair::generate().map_err(crypto_error)?;
    let certificate = params.self_signed(&key).map_err(crypto_error)?;
    let new_files = Some((certificate.pem(), key.serialize_pem()));
    Ok(CaSigner {
        issuer: Issuer::new(params, key),
        certificate: certificate.der().clone(),
        new_files,
    })
}

/// The node's certificate (PEM), key (PEM) and certificate (DER).
fn sign_node(
    plan: &NodePlan,
    issuer: &Issuer<'static, KeyPair>,
    now: SystemTime,
    days: u32,
) -> Result<(String, String, CertificateDer<'static>), BotError> {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, plan.dns_name.clone());
    params.distinguished_name = name;
    let dns_name = plan.dns_name.clone().try_into().map_err(crypto_error)?;
    params.subject_alt_names = vec![
        SanType::DnsName(dns_name),
        SanType::DnsName("localhost".try_into().map_err(crypto_error)?),
        SanType::IpAddress(IpAddr::from([127, 0, 0, 1])),
    ];
    params
        .subject_alt_names
        .extend(plan.extra_hosts.iter().cloned());
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, now, days)?;
    let key = KeyPair::generate().map_err(crypto_error)?;
    let certificate = params.signed_by(&key, issuer).map_err(crypto_error)?;
    Ok((
        certificate.pem(),
        key.serialize_pem(),
        certificate.der().clone(),
    ))
}

/// Valid from an hour ago for `days` days, with a random serial number.
fn set_validity(
    params: &mut CertificateParams,
    now: SystemTime,
    days: u32,
) -> Result<(), BotError> {
    let since_epoch = now
        .duration_since(UNIX_EPOCH)
        .map_err(|_| BotError::Crypto("the system clock is before 1970".into()))?;
    let now = rcgen::date_time_ymd(1970, 1, 1) + since_epoch;
    params.not_before = now - BACKDATE;
    params.not_after = now + Duration::from_secs(u64::from(days) * 86_400);
    let mut serial = [0u8; SERIAL_BYTES];
    rand::rngs::SysRng
        .try_fill_bytes(&mut serial)
        .map_err(|error| BotError::Crypto(format!("the system random source failed: {error}")))?;
    // A positive number with no leading zero byte, as RFC 5280 asks.
    serial[0] = (serial[0] & 0x7f) | 0x01;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    Ok(())
}

fn crypto_error(error: rcgen::Error) -> BotError {
    BotError::Crypto(format!("cannot make a key or certificate: {error}"))
}

fn create_dir(dir: &Path) -> Result<(), BotError> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| BotError::File {
            path: dir.to_path_buf(),
            source,
        })
}

/// Check, as a peer will, that `node` chains to `ca`, may be used as a TLS server and as a
/// TLS client, and names `dns_name`.
///
/// # Errors
/// What failed, as the end of a sentence ("does not verify as ...").
pub fn verify_node_certificate(
    ca: &CertificateDer<'_>,
    node: &CertificateDer<'_>,
    dns_name: &str,
) -> Result<(), String> {
    let anchor = webpki::anchor_from_trusted_cert(ca)
        .map_err(|error| format!("cannot be checked: the CA certificate is invalid ({error})"))?;
    let certificate = webpki::EndEntityCert::try_from(node)
        .map_err(|error| format!("cannot be parsed ({error})"))?;
    let anchors = [anchor];
    let now = UnixTime::now();
    for (usage, role) in [
        (webpki::KeyUsage::server_auth(), "server"),
        (webpki::KeyUsage::client_auth(), "client"),
    ] {
        certificate
            .verify_for_usage(
                webpki::ALL_VERIFICATION_ALGS,
                &anchors,
                &[],
                now,
                usage,
                None,
                None,
            )
            .map_err(|error| format!("does not verify as a TLS {role} ({error})"))?;
    }
    let name = ServerName::try_from(dns_name)
        .map_err(|error| format!("cannot be checked for {dns_name:?} ({error})"))?;
    certificate
        .verify_is_valid_for_subject_name(&name)
        .map_err(|error| format!("does not name {dns_name} ({error})"))
}

#[cfg(test)]
pub(crate) mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// Run `bot certs init` for `nodes` in `dir`; the path of ca.pem.
    pub(crate) fn make_cluster(dir: &Path, cluster: &str, nodes: &[&str]) -> PathBuf {
        init(&arguments(dir, cluster, nodes, &[]), &mut |_| {}).expect("files made");
        dir.join(CA_CERT_FILE)
    }

    fn arguments(dir: &Path, cluster: &str, nodes: &[&str], hosts: &[&str]) -> CertsInitArgs {
        CertsInitArgs {
            dir: dir.to_path_buf(),
            cluster: cluster.to_string(),
            nodes: nodes
                .iter()
                .map(|id| id.parse().expect("valid id"))
                .collect(),
            hosts: hosts.iter().map(ToString::to_string).collect(),
            days: 825,
        }
    }

    fn der(path: &Path) -> CertificateDer<'static> {
        CertificateDer::from_pem_file(path).expect("a PEM certificate")
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777
    }

    /// An independent check of a node certificate with rustls-webpki: chains to the CA,
    /// usable as server and client, and valid for exactly the names given.
    fn check_with_webpki(ca: &Path, node: &Path, valid: &[&str], invalid: &[&str]) {
        let ca = der(ca);
        let node = der(node);
        let anchors = [webpki::anchor_from_trusted_cert(&ca).expect("CA parses")];
        let certificate = webpki::EndEntityCert::try_from(&node).expect("node cert parses");
        for usage in [
            webpki::KeyUsage::server_auth(),
            webpki::KeyUsage::client_auth(),
        ] {
            certificate
                .verify_for_usage(
                    webpki::ALL_VERIFICATION_ALGS,
                    &anchors,
                    &[],
                    UnixTime::now(),
                    usage,
                    None,
                    None,
                )
                .expect("chains to the CA");
        }
        for name in valid {
            let server_name = ServerName::try_from(*name).expect("a name");
            assert!(
                certificate
                    .verify_is_valid_for_subject_name(&server_name)
                    .is_ok(),
                "{name} should be valid"
            );
        }
        for name in invalid {
            let server_name = ServerName::try_from(*name).expect("a name");
            assert!(
                certificate
                    .verify_is_valid_for_subject_name(&server_name)
                    .is_err(),
                "{name} should not be valid"
            );
        }
    }

    #[test]
    fn init_makes_a_ca_and_node_certificates_that_verify() {
        let dir = tempfile::tempdir().expect("temp dir");
        let certs = dir.path().join("certs");
        let mut lines = Vec::new();
        init(
            &arguments(
                &certs,
                "prod",
                &["n1", "n2", "n3"],
                &["n1=10.0.0.1", "n1=Node1.Example.com", "n2=::1"],
            ),
            &mut |line| lines.push(line),
        )
        .expect("files made");
        assert_eq!(lines.len(), 8, "{lines:#?}");
        assert!(lines[0].contains("ca.key"), "{lines:#?}");
        assert_eq!(mode(&certs), 0o700);
        for name in ["ca.key", "n1.key", "n2.key", "n3.key"] {
            assert_eq!(mode(&certs.join(name)), 0o600, "{name}");
        }
        for name in ["ca.pem", "n1.pem", "n2.pem", "n3.pem"] {
            assert_eq!(mode(&certs.join(name)), 0o644, "{name}");
        }
        let ca = certs.join("ca.pem");
        check_with_webpki(
            &ca,
            &certs.join("n1.pem"),
            &[
                "n1.prod",
                "localhost",
                "127.0.0.1",
                "10.0.0.1",
                "node1.example.com",
            ],
            &["n2.prod", "n1.other", "10.0.0.2", "::1"],
        );
        check_with_webpki(
            &ca,
            &certs.join("n2.pem"),
            &["n2.prod", "::1"],
            &["n1.prod", "10.0.0.1"],
        );
        check_with_webpki(&ca, &certs.join("n3.pem"), &["n3.prod"], &["n3.ha"]);
    }

    /// One mutual-TLS 1.3 exchange on loopback with rustls, as two nodes would: `client_id`
    /// (its certificate from `client_dir`) dials `server_id`, checking the name
    /// `<server_id>.prod`; the server requires a client certificate from `server_dir`'s CA.
    /// Whether the exchange worked.
    fn mutual_tls(server_dir: &Path, server_id: &str, client_dir: &Path, client_id: &str) -> bool {
        use std::io::{Read, Write};
        use std::sync::Arc;

        use rustls::pki_types::PrivateKeyDer;

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = |dir: &Path| {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(der(&dir.join("ca.pem"))).expect("CA");
            Arc::new(roots)
        };
        let identity = |dir: &Path, id: &str| {
            (
                vec![der(&dir.join(format!("{id}.pem")))],
                PrivateKeyDer::from_pem_file(dir.join(format!("{id}.key"))).expect("key"),
            )
        };
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            roots(server_dir),
            provider.clone(),
        )
        .build()
        .expect("client verifier");
        let (chain, key) = identity(server_dir, server_id);
        let server_config = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("TLS 1.3")
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .expect("server config");
        let (chain, key) = identity(client_dir, client_id);
        let client_config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("TLS 1.3")
            .with_root_certificates(roots(client_dir))
            .with_client_auth_cert(chain, key)
            .expect("client config");

        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().expect("addr");
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().expect("accept");
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
            let connection =
                rustls::ServerConnection::new(Arc::new(server_config)).expect("session");
            let mut stream = rustls::StreamOwned::new(connection, stream);
            let mut ping = [0u8; 4];
            let worked = stream.read_exact(&mut ping).is_ok() && &ping == b"ping";
            if worked {
                let _ = stream.write_all(b"pong");
                let _ = stream.flush();
            }
            worked
        });
        let name = ServerName::try_from(format!("{server_id}.prod")).expect("name");
        let connection =
            rustls::ClientConnection::new(Arc::new(client_config), name).expect("session");
        let stream = std::net::TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut stream = rustls::StreamOwned::new(connection, stream);
        let mut pong = [0u8; 4];
        let client_worked = stream.write_all(b"ping").is_ok()
            && stream.flush().is_ok()
            && stream.read_exact(&mut pong).is_ok()
            && &pong == b"pong";
        drop(stream);
        let server_worked = server.join().expect("server thread");
        client_worked && server_worked
    }

    #[test]
    fn node_certificates_work_for_mutual_tls_with_rustls() {
        let dir = tempfile::tempdir().expect("temp dir");
        make_cluster(dir.path(), "prod", &["n1", "n2"]);
        assert!(
            mutual_tls(dir.path(), "n2", dir.path(), "n1"),
            "n1 dials n2"
        );
        assert!(
            mutual_tls(dir.path(), "n1", dir.path(), "n2"),
            "n2 dials n1"
        );
        // The server's certificate names n1, but the client dialled n2: refused. (Here n1
        // serves with n1's certificate while the client expects n2.prod.)
        let renamed = tempfile::tempdir().expect("temp dir");
        for name in ["ca.pem", "n1.pem", "n1.key"] {
            std::fs::copy(dir.path().join(name), renamed.path().join(name)).expect("copy");
        }
        std::fs::rename(renamed.path().join("n1.pem"), renamed.path().join("n2.pem"))
            .expect("rename");
        std::fs::rename(renamed.path().join("n1.key"), renamed.path().join("n2.key"))
            .expect("rename");
        assert!(
            !mutual_tls(renamed.path(), "n2", dir.path(), "n1"),
            "n1's certificate does not pass for n2"
        );
        // A client whose certificate comes from another CA is refused by the server.
        let other = tempfile::tempdir().expect("temp dir");
        make_cluster(other.path(), "prod", &["n1"]);
        let mixed = tempfile::tempdir().expect("temp dir");
        std::fs::copy(dir.path().join("ca.pem"), mixed.path().join("ca.pem")).expect("copy");
        for name in ["n1.pem", "n1.key"] {
            std::fs::copy(other.path().join(name), mixed.path().join(name)).expect("copy");
        }
        assert!(
            !mutual_tls(dir.path(), "n2", mixed.path(), "n1"),
            "a certificate from another CA is refused"
        );
    }

    #[test]
    fn a_second_run_adds_a_node_with_the_same_ca_and_touches_nothing() {
        let dir = tempfile::tempdir().expect("temp dir");
        make_cluster(dir.path(), "prod", &["n1", "n2"]);
        let before: Vec<_> = ["ca.pem", "ca.key", "n1.pem", "n1.key", "n2.pem", "n2.key"]
            .iter()
            .map(|name| {
                let path = dir.path().join(name);
                let bytes = std::fs::read(&path).expect("read");
                let modified = std::fs::metadata(&path)
                    .expect("metadata")
                    .modified()
                    .expect("mtime");
                (path, bytes, modified)
            })
            .collect();
        let mut lines = Vec::new();
        init(&arguments(dir.path(), "prod", &["n4"], &[]), &mut |line| {
            lines.push(line)
        })
        .expect("n4 added");
        assert!(lines[0].starts_with("reused the CA"), "{lines:#?}");
        assert_eq!(lines.len(), 3, "{lines:#?}");
        for (path, bytes, modified) in before {
            assert_eq!(std::fs::read(&path).expect("read"), bytes, "{path:?}");
            let now_modified = std::fs::metadata(&path)
                .expect("metadata")
                .modified()
                .expect("mtime");
            assert_eq!(now_modified, modified, "{path:?}");
        }
        check_with_webpki(
            &dir.path().join("ca.pem"),
            &dir.path().join("n4.pem"),
            &["n4.prod"],
            &["n1.prod"],
        );
        // A node made before and the new one trust each other through the one CA.
        check_with_webpki(
            &dir.path().join("ca.pem"),
            &dir.path().join("n1.pem"),
            &["n1.prod"],
            &[],
        );
    }

    #[test]
    fn existing_node_files_are_never_overwritten_and_nothing_is_written() {
        let dir = tempfile::tempdir().expect("temp dir");
        make_cluster(dir.path(), "prod", &["n1"]);
        let old = std::fs::read(dir.path().join("n1.key")).expect("read");
        let error = init(
            &arguments(dir.path(), "prod", &["n5", "n1"], &[]),
            &mut |_| {},
        )
        .expect_err("n1 exists");
        assert!(
            matches!(&error, BotError::FileExists { path } if path.ends_with("n1.pem")),
            "{error:?}"
        );
        assert_eq!(error.exit_code(), crate::error::EXIT_USAGE);
        assert_eq!(std::fs::read(dir.path().join("n1.key")).expect("read"), old);
        assert!(
            !dir.path().join("n5.pem").exists(),
            "nothing is written when any file exists"
        );
    }

    #[test]
    fn a_ca_with_one_file_missing_or_a_foreign_key_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        make_cluster(dir.path(), "prod", &["n1"]);
        let other = tempfile::tempdir().expect("temp dir");
        make_cluster(other.path(), "prod", &["n1"]);

        // ca.key of another CA: the node certificate it signs would not verify.
        std::fs::remove_file(dir.path().join("ca.key")).expect("remove");
        std::fs::copy(other.path().join("ca.key"), dir.path().join("ca.key")).expect("copy");
        let error = init(&arguments(dir.path(), "prod", &["n2"], &[]), &mut |_| {})
            .expect_err("foreign key");
        assert!(matches!(error, BotError::Certs(_)), "{error:?}");
        assert!(error.to_string().contains("ca.key"), "{error}");
        assert!(!dir.path().join("n2.pem").exists());

        std::fs::remove_file(dir.path().join("ca.key")).expect("remove");
        let error =
            init(&arguments(dir.path(), "prod", &["n2"], &[]), &mut |_| {}).expect_err("no key");
        assert!(error.to_string().contains("ca.key does not"), "{error}");

        std::fs::write(dir.path().join("ca.key"), "garbage").expect("write");
        let error = init(&arguments(dir.path(), "prod", &["n2"], &[]), &mut |_| {})
            .expect_err("garbage key");
        assert!(matches!(error, BotError::Certs(_)), "{error:?}");
        assert!(!dir.path().join("n2.pem").exists());
    }

    #[test]
    fn bad_names_and_hosts_are_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().expect("temp dir");
        let certs = dir.path().join("certs");
        for (cluster, nodes, hosts, expected) in [
            ("bad name", &["n1"][..], &[][..], "--cluster"),
            ("", &["n1"], &[], "--cluster"),
            ("prod", &["n1", "n1"], &[], "twice"),
            ("prod", &["ca"], &[], "\"ca\""),
            ("prod", &["n1."], &[], "DNS name"),
            ("prod.", &["n1"], &[], "DNS name"),
            ("prod", &["n1"], &["n2=10.0.0.1"], "not in --nodes"),
            ("prod", &["n1"], &["n1"], "ID=NAME_OR_IP"),
            ("prod", &["n1"], &["n1=*.example.com"], "wildcards"),
            ("prod", &["n1"], &["n1=bad host"], "neither"),
            ("prod", &["n1"], &["n1=host.example.com."], "neither"),
            ("prod", &["n1"], &["bad id=10.0.0.1"], "node id"),
        ] {
            let error =
                init(&arguments(&certs, cluster, nodes, hosts), &mut |_| {}).expect_err("refused");
            assert!(matches!(error, BotError::Certs(_)), "{error:?}");
            assert_eq!(error.exit_code(), crate::error::EXIT_USAGE);
            assert!(
                error.to_string().contains(expected),
                "{cluster:?} {nodes:?} {hosts:?}: {error}"
            );
            assert!(!certs.exists(), "nothing written for {cluster:?} {nodes:?}");
        }
        let too_many: Vec<String> = (0..=HOSTS_PER_NODE_MAX)
            .map(|index| format!("n1=10.0.1.{index}"))
            .collect();
        let too_many: Vec<&str> = too_many.iter().map(String::as_str).collect();
        let error = init(&arguments(&certs, "prod", &["n1"], &too_many), &mut |_| {})
            .expect_err("too many hosts");
        assert!(error.to_string().contains("--host"), "{error}");
    }

    #[test]
    fn days_outside_1_to_3650_are_a_usage_error() {
        use clap::Parser;
        for days in ["0", "3651", "-1", "x"] {
            let error = crate::cli::Cli::try_parse_from([
                "bot",
                "certs",
                "init",
                "--dir",
                "d",
                "--cluster",
                "c",
                "--nodes",
                "n1",
                "--days",
                days,
            ])
            .expect_err("refused");
            assert_eq!(error.exit_code(), 2, "{days}");
        }
    }
}
