//! TLS 1.3 on the TCP plane (docs/PROTOCOL.md §8.19; RFC 8446), through rustls on the ring
//! provider. Each server presents its node identity's self-signed certificate (the node
//! key, §8.15) as the TLS server certificate and, on the links it opens, as the client
//! certificate: both ends of a federation link are authenticated by their handshake
//! signatures (CertificateVerify, RFC 8446 §4.4.3).
//!
//! The verifiers here accept any self-signed certificate in date (the checks of
//! [`crate::identity::verify_self_signed`]) whose key signed the handshake; they decide
//! nothing about trust. The loop reports the proved key ([`peer_key`]) to the core, which
//! decides whether that key is a server it knows (`core::tcp::secure`).
//!
//! [`TlsConn`] runs one connection's TLS without blocking: ciphertext from the socket in,
//! plaintext for the core out, and the core's plaintext to ciphertext for the socket. Its
//! buffers are rustls's, bounded: 64 KiB of output (plaintext and ciphertext together), 16
//! KiB of decrypted input waiting for the core, one record (at most about 16 KiB) being
//! read. No session resumption and no tickets: every connection makes a full handshake, so
//! every connection proves its key.

use crate::identity::{verify_self_signed, Identity, KeyAlgorithm};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::sign::{CertifiedKey, SigningKey, SingleCertAndKey};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, Error, ServerConfig,
    SignatureAlgorithm, SignatureScheme,
};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;

/// The first byte of a TLS record carrying a handshake message (RFC 8446 §5.1, content
/// type 22): how the acceptor tells a TLS ClientHello from the seed's hello, whose first
/// byte is its role, 1 or 2 (docs/PROTOCOL.md §8.2, §8.19).
pub const TLS_HANDSHAKE_BYTE: u8 = 0x16;

/// The ring provider (its suites; the configurations restrict them to TLS 1.3). rustls
/// 0.23.48 deprecates it for lacking post-quantum key exchange (X25519MLKEM768 is
/// aws-lc-rs's only); ring is already this crate's signature library and builds without a
/// C toolchain, so the key exchange is X25519 or a NIST curve (docs/SECURITY.md).
#[allow(deprecated)]
fn provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// A node identity as a rustls certificate and key: the certificate chain of one
/// self-signed certificate, and a signer over the identity's key.
///
/// # Errors
/// [`Error::General`] for an RSA identity (TLS 1.3 signs with RSA-PSS, which the identity
/// cannot; node keys are Ed25519, docs/PROTOCOL.md §8.15).
fn certified(id: &Identity) -> Result<Arc<CertifiedKey>, Error> {
    let scheme = match id.algorithm() {
        KeyAlgorithm::Ed25519 => SignatureScheme::ED25519,
        KeyAlgorithm::EcdsaP256 => SignatureScheme::ECDSA_NISTP256_SHA256,
        KeyAlgorithm::Rsa => {
            return Err(Error::General(
                "an RSA identity cannot sign TLS 1.3 handshakes; use Ed25519 or P-256".into(),
            ))
        }
    };
    let chain = vec![CertificateDer::from(id.cert_der().to_vec())];
    let key = NodeKey {
        id: id.clone(),
        scheme,
    };
    Ok(Arc::new(CertifiedKey::new(chain, Arc::new(key))))
}

/// The TLS configurations of a server: the acceptor's (clients and peers that speak TLS
/// to us) and the opener's (our links to peers), both presenting the node identity.
#[derive(Debug, Clone)]
pub struct TlsConfigs {
    /// For connections we accept.
    pub server: Arc<ServerConfig>,
    /// For links we open.
    pub client: Arc<ClientConfig>,
}

impl TlsConfigs {
    /// Both configurations from the node identity `id` (docs/PROTOCOL.md §8.19).
    ///
    /// # Errors
    /// As [`server_config`] and [`client_config`].
    pub fn new(id: &Identity) -> Result<TlsConfigs, Error> {
        Ok(TlsConfigs {
            server: server_config(id)?,
            client: client_config(Some(id))?,
        })
    }
}

/// The acceptor's configuration: TLS 1.3 only, `id`'s certificate, a client certificate
/// asked for but optional (clients may connect without one; peers present theirs), any
/// self-signed one in date accepted, no tickets or session cache.
///
/// # Errors
/// An RSA identity ([`Error::General`]); a provider without TLS 1.3 (never with ring).
pub fn server_config(id: &Identity) -> Result<Arc<ServerConfig>, Error> {
    let mut cfg = ServerConfig::builder_with_provider(Arc::new(provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(SelfSigned::new()))
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(certified(id)?)));
    cfg.send_tls13_tickets = 0;
    cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    Ok(Arc::new(cfg))
}

/// The opener's configuration: TLS 1.3 only, any self-signed server certificate in date
/// accepted (the core checks its key), `id`'s certificate as the client certificate when
/// given (a server's links; a client may go without), no resumption, no SNI.
///
/// # Errors
/// An RSA identity ([`Error::General`]); a provider without TLS 1.3 (never with ring).
pub fn client_config(id: Option<&Identity>) -> Result<Arc<ClientConfig>, Error> {
    let builder = ClientConfig::builder_with_provider(Arc::new(provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(SelfSigned::new()));
    let mut cfg = match id {
        Some(id) => {
            builder.with_client_cert_resolver(Arc::new(SingleCertAndKey::from(certified(id)?)))
        }
        None => builder.with_no_client_auth(),
    };
    cfg.resumption = Resumption::disabled();
    cfg.enable_sni = false;
    Ok(Arc::new(cfg))
}

/// The raw public key (32 bytes for Ed25519) of the certificate the peer of `conn` proved
/// in its handshake, or `None` when it presented none (or it does not parse).
pub fn peer_key(conn: &rustls::CommonState, now_unix: u64) -> Option<Vec<u8>> {
    let der = conn.peer_certificates()?.first()?;
    let v = verify_self_signed(der.as_ref(), now_unix).ok()?;
    Some(v.key.public_key().to_vec())
}

/// A node identity's key, signing handshakes with its one scheme.
#[derive(Debug)]
struct NodeKey {
    id: Identity,
    scheme: SignatureScheme,
}

impl SigningKey for NodeKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn rustls::sign::Signer>> {
        offered.contains(&self.scheme).then(|| {
            Box::new(NodeKey {
                id: self.id.clone(),
                scheme: self.scheme,
            }) as Box<dyn rustls::sign::Signer>
        })
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        match self.scheme {
            SignatureScheme::ED25519 => SignatureAlgorithm::ED25519,
            _ => SignatureAlgorithm::ECDSA,
        }
    }
}

impl rustls::sign::Signer for NodeKey {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        self.id
            .try_sign(message)
            .map_err(|e| Error::General(format!("signing the handshake failed: {e}")))
    }

    fn scheme(&self) -> SignatureScheme {
        self.scheme
    }
}

/// Accepts any self-signed certificate in date whose key signs the handshake; trust in
/// the key is the core's decision.
#[derive(Debug)]
struct SelfSigned {
    algs: WebPkiSupportedAlgorithms,
}

impl SelfSigned {
    fn new() -> Self {
        SelfSigned {
            algs: provider().signature_verification_algorithms,
        }
    }

    fn check(end_entity: &CertificateDer<'_>, now: UnixTime) -> Result<(), Error> {
        verify_self_signed(end_entity.as_ref(), now.as_secs())
            .map(|_| ())
            .map_err(|_| {
                Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure)
            })
    }
}

impl ServerCertVerifier for SelfSigned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        Self::check(end_entity, now).map(|()| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

impl ClientCertVerifier for SelfSigned {
    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        Self::check(end_entity, now).map(|()| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// What [`TlsConn::read`] got.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TlsRead {
    /// This many bytes of plaintext for the core, at the start of the buffer.
    Plain(usize),
    /// The handshake has just completed: report the peer's key before any plaintext.
    Secured,
    /// The core takes no more now (its budget is 0); plaintext may be waiting.
    Full,
    /// The socket has nothing more now.
    WouldBlock,
    /// The peer closed (close_notify, or the TCP stream ended).
    Closed,
}

/// One connection's TLS, driven without blocking.
pub(crate) struct TlsConn {
    conn: rustls::Connection,
    /// The handshake completed (and was reported).
    secured: bool,
    /// The socket reached its end.
    eof: bool,
}

impl TlsConn {
    /// The acceptor's side of a connection whose first byte was
    /// [`TLS_HANDSHAKE_BYTE`].
    ///
    /// # Errors
    /// rustls's, as an I/O error (never with a valid configuration).
    pub(crate) fn server(cfg: &Arc<ServerConfig>) -> io::Result<TlsConn> {
        let conn = rustls::ServerConnection::new(Arc::clone(cfg)).map_err(io::Error::other)?;
        Ok(TlsConn::wrap(conn.into()))
    }

    /// The opener's side of a link to `addr` (the server name is its IP address; the
    /// verifier ignores it).
    ///
    /// # Errors
    /// rustls's, as an I/O error (never with a valid configuration).
    pub(crate) fn client(cfg: &Arc<ClientConfig>, addr: SocketAddr) -> io::Result<TlsConn> {
        let name = ServerName::IpAddress(addr.ip().into());
        let conn =
            rustls::ClientConnection::new(Arc::clone(cfg), name).map_err(io::Error::other)?;
        Ok(TlsConn::wrap(conn.into()))
    }

    fn wrap(conn: rustls::Connection) -> TlsConn {
        TlsConn {
            conn,
            secured: false,
            eof: false,
        }
    }

    /// The peer's proved key (see [`peer_key`]).
    pub(crate) fn peer_key(&self, now_unix: u64) -> Option<Vec<u8>> {
        peer_key(&self.conn, now_unix)
    }

    /// Reads ciphertext from `sock` and returns plaintext in `buf[..budget]` (at most
    /// `budget` bytes: the core's read budget, docs/PROTOCOL.md §8.11).
    ///
    /// # Errors
    /// The socket's error, or a TLS alert or malformed record (as
    /// [`io::ErrorKind::InvalidData`]): the connection is to be dropped.
    pub(crate) fn read(
        &mut self,
        sock: &mut impl Read,
        buf: &mut [u8],
        budget: usize,
    ) -> io::Result<TlsRead> {
        loop {
            if self.secured {
                if budget == 0 {
                    return Ok(TlsRead::Full);
                }
                match self.conn.reader().read(&mut buf[..budget]) {
                    Ok(0) => return Ok(TlsRead::Closed),
                    Ok(n) => return Ok(TlsRead::Plain(n)),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                        return Ok(TlsRead::Closed)
                    }
                    Err(e) => return Err(e),
                }
            }
            if self.eof {
                return Ok(TlsRead::Closed);
            }
            match self.conn.read_tls(sock) {
                Ok(0) => self.eof = true,
                Ok(_) => {
                    self.conn
                        .process_new_packets()
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                    if !self.secured && !self.conn.is_handshaking() {
                        self.secured = true;
                        return Ok(TlsRead::Secured);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(TlsRead::WouldBlock),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends what rustls holds, then takes up to all of `plain` (the core's output) and
    /// sends it: the plaintext bytes taken, and true when the socket would block with
    /// ciphertext still held (wait for writability).
    ///
    /// # Errors
    /// The socket's error: the connection is to be dropped.
    pub(crate) fn write(
        &mut self,
        sock: &mut impl Write,
        plain: &[u8],
    ) -> io::Result<(usize, bool)> {
        if self.flush(sock)? {
            return Ok((0, true));
        }
        let n = if plain.is_empty() {
            0
        } else {
            self.conn.writer().write(plain)?
        };
        Ok((n, self.flush(sock)?))
    }

    /// Writes rustls's ciphertext until it holds none (false) or the socket would block
    /// (true).
    fn flush(&mut self, sock: &mut impl Write) -> io::Result<bool> {
        while self.conn.wants_write() {
            match self.conn.write_tls(sock) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(false)
    }

    /// Queues close_notify (RFC 8446 §6.1); true while ciphertext waits to be sent.
    pub(crate) fn close(&mut self) -> bool {
        self.conn.send_close_notify();
        self.conn.wants_write()
    }
}
