//! Certificates for the servers the test substrates start: a CA made for one server
//! and the serving certificate it signs.

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

/// A certificate authority that exists for one server's lifetime.
pub(crate) struct LocalCa {
    /// The CA certificate, PEM: what clients trust.
    pub(crate) pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl LocalCa {
    /// A fresh CA key and self-signed CA certificate named `common_name`.
    pub(crate) fn new(common_name: &str) -> Result<Self, rcgen::Error> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key)?;
        Ok(LocalCa {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// A serving certificate for `names` (DNS names or IP addresses), signed by this CA,
    /// with its fresh key.
    pub(crate) fn serving(
        &self,
        common_name: &str,
        names: &[&str],
    ) -> Result<(Certificate, KeyPair), rcgen::Error> {
        self.leaf(
            names,
            &[(DnType::CommonName, common_name)],
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    /// A client certificate for the user `common_name` in the group `organization`.
    pub(crate) fn client(
        &self,
        common_name: &str,
        organization: &str,
    ) -> Result<(Certificate, KeyPair), rcgen::Error> {
        self.leaf(
            &[],
            &[
                (DnType::CommonName, common_name),
                (DnType::OrganizationName, organization),
            ],
            ExtendedKeyUsagePurpose::ClientAuth,
        )
    }

    fn leaf(
        &self,
        names: &[&str],
        subject: &[(DnType, &str)],
        usage: ExtendedKeyUsagePurpose,
    ) -> Result<(Certificate, KeyPair), rcgen::Error> {
        let key = KeyPair::generate()?;
        let mut params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())?;
        for (kind, value) in subject {
            params.distinguished_name.push(kind.clone(), *value);
        }
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((cert, key))
    }
}
