//! rustls configurations: the server's certificate and key, and the
//! client's trust roots, optional client certificate, and the explicit
//! switch that turns verification off.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme,
};

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate chain and key, each given as a file path or as PEM text.
pub struct Identity {
    pub cert: String,
    pub key: String,
}

fn pem_bytes(what: &str, path_or_pem: &str) -> Result<Vec<u8>, String> {
    if path_or_pem.contains("-----BEGIN") {
        return Ok(path_or_pem.as_bytes().to_vec());
    }
    std::fs::read(path_or_pem).map_err(|e| format!("cannot read {what} '{path_or_pem}': {e}"))
}

fn load_identity(id: &Identity) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let cert_pem = pem_bytes("certificate", &id.cert)?;
    let certs = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("bad certificate PEM '{}': {e}", id.cert))?;
    if certs.is_empty() {
        return Err(format!("no certificate found in '{}'", id.cert));
    }
    let key_pem = pem_bytes("private key", &id.key)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| format!("bad private key PEM '{}': {e}", id.key))?;
    Ok((certs, key))
}

/// The server side of wss: a certificate chain and its key (RSA, ECDSA or
/// Ed25519); with `client_ca`, clients must present a certificate it signed.
pub fn server_config(id: &Identity, client_ca: Option<&str>) -> Result<Arc<ServerConfig>, String> {
    let (certs, key) = load_identity(id)?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut cas = CustomCas::new();
            if cas.add_pem(ca, &pem_bytes("client CA file", ca)?)? == 0 {
                return Err(format!("no CA certificate found in '{ca}'"));
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(cas.roots), provider())
                    .build()
                    .map_err(|e| format!("cannot verify clients with '{ca}': {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("certificate and key do not form a usable identity: {e}{}", key_hint(&e)))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Why a key that OpenSSL took may be refused: the usual cause of a key
/// that "fails to parse" is an RSA key under 2048 bits (Turbo's bundled
/// example keys are 1024), which the crypto provider does not accept.
fn key_hint(e: &rustls::Error) -> &'static str {
    if e.to_string().contains("failed to parse private key") {
        " (RSA keys must have 2048 bits or more; a 1024-bit key is refused)"
    } else {
        ""
    }
}

/// What a client trusts and presents.
#[derive(Default, Clone)]
pub struct ClientOptions {
    /// False only when the program explicitly turns verification off.
    pub verify: bool,
    /// PEM file (or PEM text) of trusted CAs, replacing the default roots.
    pub ca_file: Option<String>,
    /// Directory of PEM files of trusted CAs, replacing the default roots.
    pub ca_path: Option<String>,
    pub identity: Option<Identity>,
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Identity { cert: self.cert.clone(), key: self.key.clone() }
    }
}

impl ClientOptions {
    fn is_default(&self) -> bool {
        self.verify && self.ca_file.is_none() && self.ca_path.is_none() && self.identity.is_none()
    }
}

/// webpki-roots plus whatever the system store holds.
fn default_roots() -> RootCertStore {
    let mut roots = RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    for cert in rustls_native_certs::load_native_certs().certs {
        // A broken system certificate must not stop the others from loading.
        let _ = roots.add(cert);
    }
    roots
}

/// A program's own CAs (`ca_file`, `ca_path`, `client_ca_file`): as trust
/// roots, and as they were written, for `ListedCas`.
struct CustomCas {
    roots: RootCertStore,
    certs: Vec<CertificateDer<'static>>,
}

impl CustomCas {
    fn new() -> CustomCas {
        CustomCas { roots: RootCertStore::empty(), certs: Vec::new() }
    }

    fn add_pem(&mut self, what: &str, pem: &[u8]) -> Result<usize, String> {
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| format!("bad CA PEM in {what}: {e}"))?;
            self.roots.add(cert.clone()).map_err(|e| format!("unusable CA certificate in {what}: {e}"))?;
            self.certs.push(cert);
            added += 1;
        }
        Ok(added)
    }

    fn load(opts: &ClientOptions) -> Result<CustomCas, String> {
        let mut cas = CustomCas::new();
        if let Some(file) = &opts.ca_file {
            let pem = pem_bytes("CA file", file)?;
            if cas.add_pem(file, &pem)? == 0 {
                return Err(format!("no CA certificate found in '{file}'"));
            }
        }
        if let Some(dir) = &opts.ca_path {
            let entries = std::fs::read_dir(Path::new(dir))
                .map_err(|e| format!("cannot read CA directory '{dir}': {e}"))?;
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_file() {
                    if let Ok(pem) = std::fs::read(&path) {
                        cas.add_pem(&path.display().to_string(), &pem)?;
                    }
                }
            }
            if cas.roots.is_empty() {
                return Err(format!("no CA certificate found in directory '{dir}'"));
            }
        }
        Ok(cas)
    }
}

/// The client configuration for `opts`; the common default one is built once.
pub fn client_config(opts: &ClientOptions) -> Result<Arc<ClientConfig>, String> {
    static DEFAULT: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    if opts.is_default() {
        if let Some(c) = DEFAULT.get() {
            return Ok(c.clone());
        }
        let c = build_client_config(opts)?;
        return Ok(DEFAULT.get_or_init(|| c).clone());
    }
    build_client_config(opts)
}

fn build_client_config(opts: &ClientOptions) -> Result<Arc<ClientConfig>, String> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = if !opts.verify {
        let verifier = ClientVerifier { provider: provider(), cas: None };
        builder.dangerous().with_custom_certificate_verifier(Arc::new(verifier))
    } else if opts.ca_file.is_some() || opts.ca_path.is_some() {
        let cas = CustomCas::load(opts)?;
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(cas.roots), provider())
            .build()
            .map_err(|e| e.to_string())?;
        let verifier =
            ClientVerifier { provider: provider(), cas: Some(ListedCas { webpki, listed: cas.certs }) };
        builder.dangerous().with_custom_certificate_verifier(Arc::new(verifier))
    } else {
        builder.with_root_certificates(default_roots())
    };
    let mut config = match &opts.identity {
        Some(id) => {
            let (certs, key) = load_identity(id)?;
            builder.with_client_auth_cert(certs, key).map_err(|e| format!("bad client certificate: {e}"))?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The name the client verifies the server's certificate against.
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(bare.to_owned()).map_err(|e| format!("'{host}' is not a valid TLS server name: {e}"))
}

/// The client's own check of server certificates, where rustls' default
/// (webpki against the roots) is not what the program asked for.
#[derive(Debug)]
struct ClientVerifier {
    provider: Arc<CryptoProvider>,
    /// None: accept any certificate (only when the program turned
    /// verification off).
    cas: Option<ListedCas>,
}

/// Verification against the program's own CAs that, as OpenSSL does
/// (Turbo's and evlua's TLS), also accepts a server whose certificate is
/// one of them: a self-signed certificate trusted by listing it. webpki
/// refuses a CA certificate as the server's own (`CaUsedAsEndEntity`), a
/// check it makes after the validity period's; for a listed certificate,
/// byte for byte, only its names are left to check.
#[derive(Debug)]
struct ListedCas {
    webpki: Arc<WebPkiServerVerifier>,
    listed: Vec<CertificateDer<'static>>,
}

fn is_ca_used_as_end_entity(e: &rustls::Error) -> bool {
    match e {
        rustls::Error::InvalidCertificate(CertificateError::Other(other)) => {
            matches!(other.0.downcast_ref::<webpki::Error>(), Some(webpki::Error::CaUsedAsEndEntity))
        }
        _ => false,
    }
}

impl ServerCertVerifier for ClientVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(cas) = &self.cas else { return Ok(ServerCertVerified::assertion()) };
        match cas.webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(e) if is_ca_used_as_end_entity(&e) && cas.listed.iter().any(|c| c == end_entity) => {
                let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
                rustls::client::verify_server_name(&cert, server_name)?;
                Ok(ServerCertVerified::assertion())
            }
            result => result,
        }
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
            &self.provider.signature_verification_algorithms,
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
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}
