//! Issue 13 through the library, without the bot: a node config's `security` section (TLS
//! files, a cluster key file) and `Node::builder(..).tls(..)` give a cluster mutual TLS between
//! nodes; a node whose certificate names another node does not start; a node reachable from
//! other machines does not start unprotected. Every wait polls with a deadline.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use ha::replicate::tls::node_dns_name;
use ha::{Config, Consistency, Node, NodeError, NodeId, Priority, TlsFiles, TlsIdentity};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};

const WAIT: Duration = Duration::from_secs(20);
const CLUSTER: &str = "libtls";

struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl Ca {
    fn new() -> Ca {
        let key = KeyPair::generate().expect("a key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "ha test CA");
        let cert = params.self_signed(&key).expect("a CA certificate");
        Ca {
            issuer: Issuer::new(params, key),
            pem: cert.pem(),
        }
    }

    /// (certificate PEM, key PEM) for node `id` of [`CLUSTER`].
    fn node(&self, id: &str) -> (String, String) {
        let key = KeyPair::generate().expect("a key");
        let name = node_dns_name(CLUSTER, &NodeId::new(id).expect("valid id"));
        let mut params = CertificateParams::new(vec![name]).expect("params");
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &self.issuer).expect("a leaf");
        (cert.pem(), key.serialize_pem())
    }

    /// The node's files in `dir`, as a config names them.
    fn files(&self, dir: &Path, id: &str) -> TlsFiles {
        let (cert, key) = self.node(id);
        let files = TlsFiles {
            cert_file: dir.join(format!("{id}.pem")),
            key_file: dir.join(format!("{id}.key")),
            ca_file: dir.join("ca.pem"),
        };
        std::fs::write(&files.cert_file, cert).expect("write cert");
        std::fs::write(&files.key_file, key).expect("write key");
        std::fs::write(&files.ca_file, &self.pem).expect("write CA");
        files
    }
}

fn config(index: usize, seed: Option<SocketAddr>, dir: &Path) -> Config {
    let id = NodeId::new(format!("n{index}")).expect("valid id");
    let seeds = vec![seed.unwrap_or_else(|| "127.0.0.1:9".parse().expect("addr"))];
    let mut config = Config::full_ha(id, "127.0.0.1:0".parse().expect("addr"), seeds);
    config.priority = Priority(1);
    config.cluster.name = CLUSTER.to_string();
    let key_file = dir.join("cluster.key");
    std::fs::write(&key_file, format!("# test key\n{}\n", "5a".repeat(32))).expect("write key");
    config.security.cluster_key_file = Some(key_file);
    config
}

async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mutual_tls_cluster_from_the_config_and_the_builder_elects_and_replicates() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = Ca::new();
    // n1 and n2 from files named in the config, n3 from an identity given to the builder.
    let mut first = config(1, None, dir.path());
    first.security.tls = Some(ca.files(dir.path(), "n1"));
    let n1 = Node::builder(first).start().await.expect("n1 starts");
    let seed = Some(n1.gossip_addr());
    let mut second = config(2, seed, dir.path());
    second.security.tls = Some(ca.files(dir.path(), "n2"));
    let n2 = Node::builder(second).start().await.expect("n2 starts");
    let third = config(3, seed, dir.path());
    let (cert, key) = ca.node("n3");
    let identity = TlsIdentity::from_pem(
        CLUSTER,
        &third.node_id,
        cert.as_bytes(),
        key.as_bytes(),
        ca.pem.as_bytes(),
    )
    .expect("n3's identity");
    let n3 = Node::builder(third)
        .tls(identity)
        .start()
        .await
        .expect("n3 starts");
    let nodes = [n1, n2, n3];
    wait_until("one leader", || {
        nodes.iter().filter(|node| node.is_leader()).count() == 1
    })
    .await;
    let leader = nodes.iter().position(Node::is_leader).expect("a leader");
    let follower = (leader + 1) % 3;
    let kv = nodes[follower].kv();
    kv.put("secured", b"over mutual TLS".to_vec(), Consistency::Quorum)
        .await
        .expect("a write through a follower");
    for node in &nodes {
        let value = node
            .kv()
            .get("secured", Consistency::Quorum)
            .await
            .expect("read");
        assert_eq!(
            value.map(|entry| entry.value),
            Some(b"over mutual TLS".to_vec()),
            "{} reads the write",
            node.id()
        );
        let status = node.status().await.expect("status");
        assert_eq!(
            status.transport_refusals.total(),
            0,
            "{}: correct peers are never refused",
            node.id()
        );
    }
    for node in nodes {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_for_another_node_does_not_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = Ca::new();
    let mut config = config(3, None, dir.path());
    // n2's files given to n3.
    config.security.tls = Some(ca.files(dir.path(), "n2"));
    match Node::builder(config).start().await {
        Err(NodeError::SecurityFile { path, reason }) => {
            assert!(path.ends_with("n2.pem"), "{path:?}");
            assert!(reason.contains("n3.libtls"), "{reason}");
        }
        Err(other) => panic!("expected a security file error, got {other}"),
        Ok(_) => panic!("a node with another node's certificate started"),
    }
}

#[tokio::test]
async fn an_exposed_node_without_protection_does_not_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Refused before any port is bound, so 0.0.0.0 is never actually bound here.
    let mut exposed = Config::single(
        NodeId::new("n1").expect("valid id"),
        "0.0.0.0:0".parse().expect("addr"),
    );
    exposed.advertise_addr = Some("127.0.0.1:7999".parse().expect("addr"));
    let error = match Node::builder(exposed.clone()).start().await {
        Err(NodeError::Config(error)) => error,
        Err(other) => panic!("expected a config error, got {other}"),
        Ok(_) => panic!("an exposed node started unprotected"),
    };
    assert_eq!(error.field, "security");
    let text = error.to_string();
    for hint in ["--cluster-key-file", "--tls-cert", "--insecure"] {
        assert!(text.contains(hint), "the refusal names {hint}: {text}");
    }
    // A loopback gossip port with an exposed admin API: tokens and HTTPS are needed.
    let mut admin = Config::single(
        NodeId::new("n1").expect("valid id"),
        "127.0.0.1:0".parse().expect("addr"),
    );
    admin.http_addr = Some("0.0.0.0:0".parse().expect("addr"));
    admin.data_dir = Some(dir.path().to_path_buf());
    let error = match Node::builder(admin).start().await {
        Err(NodeError::Config(error)) => error,
        Err(other) => panic!("expected a config error, got {other}"),
        Ok(_) => panic!("an exposed admin API started without tokens"),
    };
    assert!(error.to_string().contains("--admin-token-file"), "{error}");
    assert!(
        std::fs::read_dir(dir.path()).expect("dir").next().is_none(),
        "nothing was written to the data dir before the refusal"
    );
}
