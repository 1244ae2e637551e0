//! The TLS layer of a connection, when the transport has a [`TlsIdentity`].
//!
//! The accepting side first looks at the first byte without consuming it: a TLS record
//! starts with `0x16` (handshake) then `0x03` (version), while a plaintext hello starts with
//! its 4-byte length prefix (whose first byte is 0: a hello is at most 512 bytes) and then
//! `"haRP"`. A plaintext hello is refused as [`RejectCause::Plaintext`], anything else that is
//! not a TLS record as [`RejectCause::TlsHandshake`], without running TLS at all. Then the
//! TLS 1.3 handshake, with a client certificate required; its failures are refused by cause
//! (see [`reject_cause`]).

use std::io;
use std::net::SocketAddr;

use ha_core::NodeId;
use rustls::pki_types::CertificateDer;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector, TlsStream};

use super::context::TransportContext;
use super::counts::RejectCause;
use super::handshake::MAGIC;
use crate::tls::{TlsIdentity, reject_cause};

/// The content type of a TLS handshake record: the first byte of every ClientHello.
pub(crate) const TLS_HANDSHAKE_RECORD: u8 = 0x16;
/// The first byte of a TLS record's version field.
pub(crate) const TLS_VERSION_MAJOR: u8 = 0x03;

/// How an accepted connection's TLS setup ended without a session.
#[derive(Debug)]
pub(crate) enum AcceptFailure {
    /// The peer closed before sending a byte (a port check): nothing counted.
    Closed,
    /// Refused (counted and logged already).
    Rejected(RejectCause),
    /// The peer refused us (it sent an alert) or the socket failed: logged at DEBUG.
    Io(io::Error),
}

/// Accept TLS on `stream`: classify the first bytes, run the handshake, and return the
/// session with the peer's end-entity certificate (already verified against the CA bundle).
/// Refusals are counted and logged here. The caller bounds the time.
pub(crate) async fn accept(
    context: &TransportContext,
    identity: &TlsIdentity,
    mut stream: TcpStream,
    remote: SocketAddr,
) -> Result<(TlsStream<TcpStream>, CertificateDer<'static>), AcceptFailure> {
    let mut first = [0u8; 1];
    match stream.peek(&mut first).await {
        Ok(0) => return Err(AcceptFailure::Closed),
        Ok(_) => {}
        Err(error) => return Err(AcceptFailure::Io(error)),
    }
    if first[0] != TLS_HANDSHAKE_RECORD {
        // Not TLS: this connection is refused whatever follows, so its first bytes can be
        // consumed to say what it is.
        let mut start = [0u8; 8];
        let mut filled = 0;
        while filled < start.len() {
            match stream.read(&mut start[filled..]).await {
                Ok(0) | Err(_) => break,
                Ok(count) => filled += count,
            }
        }
        let cause = classify_non_tls(&start[..filled]);
        let detail = match cause {
            RejectCause::Plaintext => "a plaintext hello; configure TLS on the peer",
            _ => "the first bytes are not a TLS record",
        };
        context.reject(cause, remote, None, detail);
        return Err(AcceptFailure::Rejected(cause));
    }
    let acceptor = TlsAcceptor::from(identity.server_config());
    let session = match acceptor.accept(stream).await {
        Ok(session) => session,
        Err(error) => return Err(refuse_tls_error(context, error, remote, None)),
    };
    let certificate = session
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|certificate| certificate.clone().into_owned());
    let Some(certificate) = certificate else {
        // The verifier requires a certificate, so this does not happen; refuse if it does.
        context.reject(RejectCause::NoCertificate, remote, None, "");
        return Err(AcceptFailure::Rejected(RejectCause::NoCertificate));
    };
    Ok((TlsStream::from(session), certificate))
}

/// What the first bytes of a connection that does not start like TLS are.
pub(crate) fn classify_non_tls(start: &[u8]) -> RejectCause {
    match start.get(4..8) {
        Some(magic) if magic == MAGIC => RejectCause::Plaintext,
        _ => RejectCause::TlsHandshake,
    }
}

/// Whether a length prefix read by a plaintext node is really the start of a TLS record.
pub(crate) fn looks_like_tls(length_prefix: u32) -> bool {
    let [content_type, major, _, _] = length_prefix.to_be_bytes();
    content_type == TLS_HANDSHAKE_RECORD && major == TLS_VERSION_MAJOR
}

/// How an outbound TLS setup failed.
#[derive(Debug)]
pub(crate) enum ConnectFailure {
    /// The peer's certificate was refused (counted and logged already).
    Rejected(RejectCause),
    /// The peer closed, reset or sent an alert: it probably refused us (logged at DEBUG).
    PeerClosed,
    /// The socket failed.
    Io(io::Error),
}

/// Open TLS to `expected` on `stream`, verifying its certificate names it. The caller bounds
/// the time.
pub(crate) async fn connect(
    context: &TransportContext,
    identity: &TlsIdentity,
    stream: TcpStream,
    addr: SocketAddr,
    expected: &NodeId,
) -> Result<TlsStream<TcpStream>, ConnectFailure> {
    let server_name = match identity.peer_server_name(expected) {
        Ok(name) => name,
        Err(error) => {
            let detail = error.to_string();
            context.reject(RejectCause::TlsHandshake, addr, Some(expected), &detail);
            return Err(ConnectFailure::Rejected(RejectCause::TlsHandshake));
        }
    };
    let connector = TlsConnector::from(identity.client_config());
    match connector.connect(server_name, stream).await {
        Ok(session) => Ok(TlsStream::from(session)),
        Err(error) => match tls_error(&error) {
            Some(rustls::Error::AlertReceived(alert)) => {
                tracing::debug!(peer = %expected, %addr, ?alert, "the peer refused our TLS handshake");
                Err(ConnectFailure::PeerClosed)
            }
            Some(tls) => {
                let cause = reject_cause(tls);
                let detail = format!("the peer's certificate or TLS: {tls}");
                context.reject(cause, addr, Some(expected), &detail);
                Err(ConnectFailure::Rejected(cause))
            }
            None if is_closed(&error) => {
                tracing::debug!(peer = %expected, %addr, %error, "the peer closed during TLS setup");
                Err(ConnectFailure::PeerClosed)
            }
            None => Err(ConnectFailure::Io(error)),
        },
    }
}

/// The rustls error inside an IO error from a TLS stream, if any.
pub(crate) fn tls_error(error: &io::Error) -> Option<&rustls::Error> {
    error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
}

/// Whether an IO error means the peer went away (closed or reset the connection).
pub(crate) fn is_closed(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

/// Count and log a failed TLS accept by cause. An alert from the peer means the peer refused
/// us (it counts that on its side), and a reset is not counted either; a stream that ended
/// inside the handshake is a truncated record: [`RejectCause::TlsHandshake`].
fn refuse_tls_error(
    context: &TransportContext,
    error: io::Error,
    remote: SocketAddr,
    peer: Option<&NodeId>,
) -> AcceptFailure {
    match tls_error(&error) {
        Some(rustls::Error::AlertReceived(_)) => AcceptFailure::Io(error),
        Some(tls) => {
            let cause = reject_cause(tls);
            context.reject(cause, remote, peer, &tls.to_string());
            AcceptFailure::Rejected(cause)
        }
        None if error.kind() == io::ErrorKind::UnexpectedEof => {
            let detail = "the stream ended inside the TLS handshake";
            context.reject(RejectCause::TlsHandshake, remote, peer, detail);
            AcceptFailure::Rejected(RejectCause::TlsHandshake)
        }
        None => AcceptFailure::Io(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_bytes_are_told_apart() {
        let plaintext_hello = [0, 0, 0, 60, b'h', b'a', b'R', b'P'];
        assert_eq!(classify_non_tls(&plaintext_hello), RejectCause::Plaintext);
        assert_eq!(
            classify_non_tls(b"GET / HTTP/1.1"),
            RejectCause::TlsHandshake
        );
        assert_eq!(classify_non_tls(&[0, 0]), RejectCause::TlsHandshake);
        assert!(looks_like_tls(u32::from_be_bytes([0x16, 0x03, 0x01, 0x02])));
        assert!(!looks_like_tls(u32::from_be_bytes([0, 0, 0x01, 0x02])));
        assert!(!looks_like_tls(u32::from_be_bytes([
            0x16, 0x04, 0x01, 0x02
        ])));
    }

    #[test]
    fn an_alert_or_eof_is_not_counted_as_the_peers_fault_but_bad_records_are() {
        let settings = crate::transport::TransportSettings::new(
            "n1".parse().expect("literal id"),
            "127.0.0.1:0".parse().expect("literal address"),
            "c",
        );
        let context = TransportContext::new(settings, None);
        let remote: SocketAddr = "127.0.0.1:9".parse().expect("literal address");
        let alert = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(rustls::AlertDescription::BadCertificate),
        );
        assert!(matches!(
            refuse_tls_error(&context, alert, remote, None),
            AcceptFailure::Io(_)
        ));
        let eof = io::Error::new(io::ErrorKind::UnexpectedEof, "eof");
        assert!(matches!(
            refuse_tls_error(&context, eof, remote, None),
            AcceptFailure::Rejected(RejectCause::TlsHandshake)
        ));
        let no_cert = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::NoCertificatesPresented,
        );
        assert!(matches!(
            refuse_tls_error(&context, no_cert, remote, None),
            AcceptFailure::Rejected(RejectCause::NoCertificate)
        ));
        let counts = context.counters.reject_counts();
        assert_eq!(counts.get(RejectCause::TlsHandshake), 1);
        assert_eq!(counts.get(RejectCause::NoCertificate), 1);
        assert_eq!(counts.total(), 2);
    }
}
