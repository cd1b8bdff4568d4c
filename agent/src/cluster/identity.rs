//! Cluster identity: the cluster CA, the certificates it signs, and what a certificate may do.
//!
//! Every certificate names its holder in the subject CN (and, for nodes, in the SAN, so the TLS
//! handshake itself checks a node's claimed name) and its role in the subject O, the way Kubernetes
//! uses `O=system:masters`. Roles are decided by the CA that signed the certificate, so a node
//! cannot promote itself to admin.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The SAN every node certificate carries besides its own name: the CLI can talk to any agent
/// without knowing its name, and still only to an agent certified by this cluster.
pub const ANY_AGENT_SERVER_NAME: &str = "gossipd";

const ADMIN_ORGANIZATION: &str = "gossipctl:admins";
const NODE_ORGANIZATION: &str = "gossipctl:nodes";

pub const CA_CERT_FILE: &str = "ca.crt";
pub const CA_KEY_FILE: &str = "ca.key";
pub const ADMIN_CERT_FILE: &str = "admin.crt";
pub const ADMIN_KEY_FILE: &str = "admin.key";
pub const NODE_CERT_FILE: &str = "node.crt";
pub const NODE_KEY_FILE: &str = "node.key";

/// How long node and admin certificates are valid by default: a year, after which agents refuse
/// them in handshakes and seals alike. Agents warn [`EXPIRY_WARNING`] ahead. (The CA itself
/// does not expire; replacing it means a new cluster.)
pub const DEFAULT_VALIDITY: std::time::Duration = std::time::Duration::from_secs(365 * 24 * 3600);
/// How long before its certificate expires an agent starts warning.
pub const EXPIRY_WARNING: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a valid PEM {what}: {detail}")]
    Pem {
        path: PathBuf,
        what: &'static str,
        detail: String,
    },
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{0} already exists; refusing to overwrite cluster credentials")]
    AlreadyExists(PathBuf),
    #[error("invalid node name {0:?}: expected a DNS-1123 label (lowercase letters, digits, '-')")]
    InvalidName(String),
}

/// What the holder of a certificate may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// May read and mutate applications.
    Admin { name: String },
    /// A cluster member: may read, gossip and exchange data, never mutate applications.
    Node { name: String },
    /// Signed by the cluster CA but with no role we know: may read only.
    Unknown { name: String },
}

impl Role {
    pub fn may_mutate(&self) -> bool {
        matches!(self, Role::Admin { .. })
    }

    pub fn name(&self) -> &str {
        match self {
            Role::Admin { name } | Role::Node { name } | Role::Unknown { name } => name,
        }
    }

    /// Reads the role from a peer's leaf certificate. The TLS layer has already verified the
    /// chain against the cluster CA; this only interprets the subject.
    pub fn from_certificate(der: &CertificateDer<'_>) -> Option<Role> {
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
        let subject = cert.subject();
        let name = subject
            .iter_common_name()
            .next()?
            .as_str()
            .ok()?
            .to_string();
        let organization = subject
            .iter_organization()
            .next()
            .and_then(|o| o.as_str().ok());
        Some(match organization {
            Some(ADMIN_ORGANIZATION) => Role::Admin { name },
            Some(NODE_ORGANIZATION) => Role::Node { name },
            _ => Role::Unknown { name },
        })
    }
}

/// A certificate chain and its private key, ready for rustls.
pub struct Credentials {
    pub ca: CertificateDer<'static>,
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl Credentials {
    /// Loads a node bundle (`ca.crt`, `node.crt`, `node.key`) from a directory.
    pub fn load_node(dir: &Path) -> Result<Self, IdentityError> {
        Self::load(
            &dir.join(CA_CERT_FILE),
            &dir.join(NODE_CERT_FILE),
            &dir.join(NODE_KEY_FILE),
        )
    }

    pub fn load(ca: &Path, cert: &Path, key: &Path) -> Result<Self, IdentityError> {
        Ok(Credentials {
            ca: read_cert(ca)?,
            chain: vec![read_cert(cert)?],
            key: PrivateKeyDer::from_pem_file(key).map_err(|e| pem_error(key, "private key", e))?,
        })
    }
}

fn read_cert(path: &Path) -> Result<CertificateDer<'static>, IdentityError> {
    CertificateDer::from_pem_file(path).map_err(|e| pem_error(path, "certificate", e))
}

fn pem_error(path: &Path, what: &'static str, e: rustls::pki_types::pem::Error) -> IdentityError {
    match e {
        rustls::pki_types::pem::Error::Io(source) => IdentityError::Io {
            path: path.to_path_buf(),
            source,
        },
        other => IdentityError::Pem {
            path: path.to_path_buf(),
            what,
            detail: format!("{other:?}"),
        },
    }
}

/// The cluster certificate authority, able to sign new identities.
pub struct ClusterCa {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl ClusterCa {
    /// Creates a new CA and writes `ca.crt` and `ca.key` (0600) into `dir`.
    pub fn create(dir: &Path, cluster_name: &str) -> Result<Self, IdentityError> {
        let key_path = dir.join(CA_KEY_FILE);
        if key_path.exists() {
            return Err(IdentityError::AlreadyExists(key_path));
        }
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{cluster_name} cluster CA"));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        write_public(&dir.join(CA_CERT_FILE), &cert.pem())?;
        write_secret(&key_path, &key.serialize_pem())?;
        Ok(ClusterCa {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// Loads the CA written by [`ClusterCa::create`].
    pub fn load(dir: &Path) -> Result<Self, IdentityError> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        let cert_pem = read_to_string(&cert_path)?;
        let key =
            KeyPair::from_pem(&read_to_string(&key_path)?).map_err(|e| IdentityError::Pem {
                path: key_path.clone(),
                what: "private key",
                detail: e.to_string(),
            })?;
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key).map_err(|e| IdentityError::Pem {
            path: cert_path,
            what: "CA certificate",
            detail: e.to_string(),
        })?;
        Ok(ClusterCa { cert_pem, issuer })
    }

    /// Issues the admin client certificate into `dir` (`admin.crt`, `admin.key`), valid for
    /// [`DEFAULT_VALIDITY`].
    pub fn issue_admin(&self, dir: &Path) -> Result<(), IdentityError> {
        self.issue_admin_named("admin", dir, DEFAULT_VALIDITY)
    }

    /// Issues admin credentials for `name` into `dir`: `ca.crt`, `admin.crt`, `admin.key`.
    pub fn issue_admin_named(
        &self,
        name: &str,
        dir: &Path,
        validity: std::time::Duration,
    ) -> Result<(), IdentityError> {
        let (cert, key) = self.sign(name, ADMIN_ORGANIZATION, vec![], validity)?;
        write_public(&dir.join(CA_CERT_FILE), &self.cert_pem)?;
        write_public(&dir.join(ADMIN_CERT_FILE), &cert)?;
        write_secret(&dir.join(ADMIN_KEY_FILE), &key)
    }

    /// Issues a node bundle into `dir`: `ca.crt`, `node.crt` and `node.key`, everything an
    /// agent needs to join the cluster, valid for [`DEFAULT_VALIDITY`].
    pub fn issue_node(&self, name: &str, dir: &Path) -> Result<(), IdentityError> {
        self.issue_node_for(name, dir, DEFAULT_VALIDITY)
    }

    /// [`ClusterCa::issue_node`] with a certificate valid for `validity` from now.
    pub fn issue_node_for(
        &self,
        name: &str,
        dir: &Path,
        validity: std::time::Duration,
    ) -> Result<(), IdentityError> {
        if !is_dns_label(name) {
            return Err(IdentityError::InvalidName(name.to_string()));
        }
        let sans = vec![name.to_string(), ANY_AGENT_SERVER_NAME.to_string()];
        let (cert, key) = self.sign(name, NODE_ORGANIZATION, sans, validity)?;
        fs::create_dir_all(dir).map_err(|source| IdentityError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        write_public(&dir.join(CA_CERT_FILE), &self.cert_pem)?;
        write_public(&dir.join(NODE_CERT_FILE), &cert)?;
        write_secret(&dir.join(NODE_KEY_FILE), &key)
    }

    /// Signs a certificate for `common_name` in `organization`, valid from an hour ago (clocks
    /// differ) for `validity`; returns (cert PEM, key PEM).
    fn sign(
        &self,
        common_name: &str,
        organization: &str,
        sans: Vec<String>,
        validity: std::time::Duration,
    ) -> Result<(String, String), IdentityError> {
        let mut params = CertificateParams::new(sans)?;
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let now = rcgen::date_time_ymd(1970, 1, 1) + since_epoch;
        params.not_before = now - std::time::Duration::from_secs(3600);
        params.not_after = now + validity;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params
            .distinguished_name
            .push(DnType::OrganizationName, organization);
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

/// When the certificate `der` stops being valid, in seconds since the Unix epoch.
pub fn expires_at(der: &[u8]) -> Option<i64> {
    let (_, certificate) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(certificate.validity().not_after.timestamp())
}

/// DNS-1123 label: what Kubernetes accepts as a node or object name.
pub fn is_dns_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

fn read_to_string(path: &Path) -> Result<String, IdentityError> {
    fs::read_to_string(path).map_err(|source| IdentityError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn write_public(path: &Path, contents: &str) -> Result<(), IdentityError> {
    fs::write(path, contents).map_err(|source| IdentityError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes a private key readable by its owner only. The mode is set at creation so the key is
/// never briefly world-readable.
pub fn write_secret(path: &Path, contents: &str) -> Result<(), IdentityError> {
    let io = |source| IdentityError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    file.set_permissions(fs::Permissions::from_mode(0o600))
        .map_err(io)?;
    file.write_all(contents.as_bytes()).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_come_from_the_signed_subject() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ClusterCa::create(dir.path(), "test").unwrap();
        ca.issue_admin(dir.path()).unwrap();
        ca.issue_node("node-1", &dir.path().join("n1")).unwrap();

        let admin = Credentials::load(
            &dir.path().join(CA_CERT_FILE),
            &dir.path().join(ADMIN_CERT_FILE),
            &dir.path().join(ADMIN_KEY_FILE),
        )
        .unwrap();
        let node = Credentials::load_node(&dir.path().join("n1")).unwrap();
        assert_eq!(
            Role::from_certificate(&admin.chain[0]),
            Some(Role::Admin {
                name: "admin".into()
            })
        );
        assert_eq!(
            Role::from_certificate(&node.chain[0]),
            Some(Role::Node {
                name: "node-1".into()
            })
        );
    }

    #[test]
    fn certificates_expire_after_their_validity() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ClusterCa::create(dir.path(), "test").unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        ca.issue_node("node-1", &dir.path().join("n1")).unwrap();
        let year = Credentials::load_node(&dir.path().join("n1")).unwrap();
        let expiry = expires_at(year.chain[0].as_ref()).unwrap();
        assert!(
            (expiry - now - 365 * 24 * 3600).abs() < 60,
            "{expiry} vs {now}"
        );
        let short = std::time::Duration::from_secs(20 * 24 * 3600);
        ca.issue_node_for("node-2", &dir.path().join("n2"), short)
            .unwrap();
        let soon = Credentials::load_node(&dir.path().join("n2")).unwrap();
        let expiry = expires_at(soon.chain[0].as_ref()).unwrap();
        assert!((expiry - now - 20 * 24 * 3600).abs() < 60);
    }

    #[test]
    fn private_keys_are_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ClusterCa::create(dir.path(), "test").unwrap();
        ca.issue_admin(dir.path()).unwrap();
        ca.issue_node("node-1", &dir.path().join("n1")).unwrap();
        for key in [
            dir.path().join(CA_KEY_FILE),
            dir.path().join(ADMIN_KEY_FILE),
            dir.path().join("n1").join(NODE_KEY_FILE),
        ] {
            let mode = fs::metadata(&key).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", key.display());
        }
    }

    #[test]
    fn a_reloaded_ca_signs_certificates_that_chain_to_it() {
        let dir = tempfile::tempdir().unwrap();
        ClusterCa::create(dir.path(), "test").unwrap();
        let ca = ClusterCa::load(dir.path()).unwrap();
        ca.issue_node("node-2", &dir.path().join("n2")).unwrap();
        let creds = Credentials::load_node(&dir.path().join("n2")).unwrap();
        let (_, leaf) = x509_parser::parse_x509_certificate(creds.chain[0].as_ref()).unwrap();
        let (_, root) = x509_parser::parse_x509_certificate(creds.ca.as_ref()).unwrap();
        assert!(leaf.verify_signature(Some(root.public_key())).is_ok());
    }

    #[test]
    fn creating_a_second_ca_in_place_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        ClusterCa::create(dir.path(), "test").unwrap();
        assert!(matches!(
            ClusterCa::create(dir.path(), "test"),
            Err(IdentityError::AlreadyExists(_))
        ));
    }

    #[test]
    fn node_names_must_be_dns_labels() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ClusterCa::create(dir.path(), "test").unwrap();
        assert!(ca.issue_node("Node_1", &dir.path().join("x")).is_err());
        assert!(is_dns_label("node-1"));
        assert!(!is_dns_label("-a"));
    }
}
