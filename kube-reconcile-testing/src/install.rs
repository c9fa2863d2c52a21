//! [`install_crd`]: a `CustomResourceDefinition` created and served, on either server.

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{
    Api, Client,
    api::PostParams,
    runtime::wait::{await_condition, conditions},
};

/// How long [`install_crd`] waits for the definition to be `Established`.
const ESTABLISHED_WITHIN: Duration = Duration::from_secs(30);

/// Why [`install_crd`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InstallError {
    /// The definition has no `metadata.name`.
    #[error("the CustomResourceDefinition has no metadata.name")]
    Unnamed,

    /// The server refused to read or create the definition.
    #[error("creating the CustomResourceDefinition {name}")]
    Create {
        /// The definition's name.
        name: String,
        /// The server's answer.
        #[source]
        source: kube::Error,
    },

    /// The definition could not be watched for its `Established` condition.
    #[error("watching the CustomResourceDefinition {name}")]
    Watch {
        /// The definition's name.
        name: String,
        /// Why the watch failed.
        #[source]
        source: kube::runtime::wait::Error,
    },

    /// The server did not report the definition `Established` in time.
    #[error("the CustomResourceDefinition {name} was not Established within {after:?}")]
    NotEstablished {
        /// The definition's name.
        name: String,
        /// How long it waited.
        after: Duration,
    },
}

/// Creates `crd` unless a definition of its name exists, and waits (up to 30 s) until the
/// server reports it `Established`, so its resources can be used at once: what envtest's
/// `CRDInstallOptions` does for controller-runtime's tests. Works on the embedded
/// [`ApiServer`](crate::ApiServer), the real [`ControlPlane`](crate::ControlPlane) and any
/// cluster `client` points at.
///
/// ```
/// # use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
/// # async fn example(crd: CustomResourceDefinition) -> Result<(), Box<dyn std::error::Error>> {
/// let server = kube_reconcile_testing::ApiServer::new();
/// kube_reconcile_testing::install_crd(&server.client(), &crd).await?;
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// An [`InstallError`] naming the definition and what failed.
pub async fn install_crd(
    client: &Client,
    crd: &CustomResourceDefinition,
) -> Result<(), InstallError> {
    let name = crd.metadata.name.clone().ok_or(InstallError::Unnamed)?;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    // Read first: where it exists, a client that may not create definitions still waits.
    let existing = crds
        .get_opt(&name)
        .await
        .map_err(|source| InstallError::Create {
            name: name.clone(),
            source,
        })?;
    if existing.is_none() {
        match crds.create(&PostParams::default(), crd).await {
            Ok(_) => {}
            // Created meanwhile by someone else: wait for it all the same.
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(source) => return Err(InstallError::Create { name, source }),
        }
    }
    let established = await_condition(crds, &name, conditions::is_crd_established());
    match tokio::time::timeout(ESTABLISHED_WITHIN, established).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(source)) => Err(InstallError::Watch { name, source }),
        Err(_) => Err(InstallError::NotEstablished {
            name,
            after: ESTABLISHED_WITHIN,
        }),
    }
}
