//! The credentials of a test control plane: a CA, the serving certificate, an admin
//! client certificate and the service-account signing key.

use std::path::{Path, PathBuf};

use rcgen::KeyPair;

use super::EnvtestError;
use crate::tls::LocalCa;

/// PEM-encoded credentials, generated fresh for every control plane.
pub(super) struct Pki {
    pub(super) ca_cert: String,
    pub(super) serving_cert: String,
    pub(super) serving_key: String,
    pub(super) admin_cert: String,
    pub(super) admin_key: String,
    pub(super) service_account_key: String,
    pub(super) service_account_public_key: String,
}

/// Where [`Pki::write`] put each file.
pub(super) struct PkiFiles {
    pub(super) ca_cert: PathBuf,
    pub(super) serving_cert: PathBuf,
    pub(super) serving_key: PathBuf,
    pub(super) service_account_key: PathBuf,
    pub(super) service_account_public_key: PathBuf,
}

/// The name of the user the admin client certificate authenticates as.
pub(super) const ADMIN_USER: &str = "admin";
/// The group that bypasses RBAC.
pub(super) const ADMIN_GROUP: &str = "system:masters";

impl Pki {
    /// A CA; a serving certificate for `127.0.0.1` and `localhost`; a client certificate for
    /// `admin` in `system:masters`; an ECDSA P-256 service-account key. All X.509 v3.
    pub(super) fn generate() -> Result<Self, EnvtestError> {
        let cert_err = |what| move |e| EnvtestError::certificates(what, e);

        let ca = LocalCa::new("kube-reconcile-envtest-ca").map_err(cert_err("the CA"))?;
        let (serving_cert, serving_key) = ca
            .serving(
                "kube-apiserver",
                &["127.0.0.1", "localhost", "kubernetes.default.svc"],
            )
            .map_err(cert_err("the serving certificate"))?;
        let (admin_cert, admin_key) = ca
            .client(ADMIN_USER, ADMIN_GROUP)
            .map_err(cert_err("the admin certificate"))?;

        let sa_key = KeyPair::generate().map_err(cert_err("the service-account key"))?;

        Ok(Pki {
            ca_cert: ca.pem.clone(),
            serving_cert: serving_cert.pem(),
            serving_key: serving_key.serialize_pem(),
            admin_cert: admin_cert.pem(),
            admin_key: admin_key.serialize_pem(),
            service_account_key: sa_key.serialize_pem(),
            service_account_public_key: sa_key.public_key_pem(),
        })
    }

    /// Writes what kube-apiserver reads into `dir` (keys readable by the owner only).
    pub(super) fn write(&self, dir: &Path) -> Result<PkiFiles, EnvtestError> {
        let files = PkiFiles {
            ca_cert: dir.join("ca.crt"),
            serving_cert: dir.join("apiserver.crt"),
            serving_key: dir.join("apiserver.key"),
            service_account_key: dir.join("sa.key"),
            service_account_public_key: dir.join("sa.pub"),
        };
        for (path, text) in [
            (&files.ca_cert, &self.ca_cert),
            (&files.serving_cert, &self.serving_cert),
            (&files.serving_key, &self.serving_key),
            (&files.service_account_key, &self.service_account_key),
            (
                &files.service_account_public_key,
                &self.service_account_public_key,
            ),
        ] {
            write_private(path, text)?;
        }
        Ok(files)
    }
}

fn write_private(path: &Path, text: &str) -> Result<(), EnvtestError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let write = || -> std::io::Result<()> {
        use std::io::Write as _;
        options.open(path)?.write_all(text.as_bytes())
    };
    write().map_err(|e| EnvtestError::io(format!("writing {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_credential_is_pem_of_the_right_kind() {
        let pki = Pki::generate().expect("generate");
        for cert in [&pki.ca_cert, &pki.serving_cert, &pki.admin_cert] {
            assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"), "{cert}");
        }
        for key in [&pki.serving_key, &pki.admin_key, &pki.service_account_key] {
            assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"), "{key}");
        }
        assert!(
            pki.service_account_public_key
                .starts_with("-----BEGIN PUBLIC KEY-----")
        );
        assert_ne!(pki.serving_key, pki.admin_key);
    }

    #[test]
    fn each_control_plane_gets_fresh_keys() {
        let a = Pki::generate().expect("generate");
        let b = Pki::generate().expect("generate");
        assert_ne!(a.ca_cert, b.ca_cert);
        assert_ne!(a.service_account_key, b.service_account_key);
    }
}
