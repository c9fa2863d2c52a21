//! The child objects of a `Database`: one `Ensure` implementation each.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{
        apps::v1::{StatefulSet, StatefulSetSpec},
        core::v1::{
            ConfigMap, Container, ContainerPort, EnvVar, EnvVarSource, PersistentVolumeClaim,
            PersistentVolumeClaimSpec, PodSpec, PodTemplateSpec, Secret, SecretKeySelector,
            Service, ServicePort, ServiceSpec, VolumeMount, VolumeResourceRequirements,
        },
    },
    apimachinery::pkg::{api::resource::Quantity, apis::meta::v1::LabelSelector},
};
use kube::{ResourceExt, api::ObjectMeta};
use kube_reconcile::ensure::{Ensure, Readiness, Strategy};

use super::crd::Database;

/// The characters of a generated password.
const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";

/// A 32-character password from the operating system's CSPRNG.
///
/// Unbiased: bytes that would favour some characters are drawn again.
pub fn password() -> Result<String, getrandom::Error> {
    let limit = 256 - 256 % ALPHABET.len();
    let mut out = String::with_capacity(32);
    let mut buf = [0u8; 64];
    while out.len() < 32 {
        getrandom::fill(&mut buf)?;
        for &b in &buf {
            if usize::from(b) < limit && out.len() < 32 {
                out.push(char::from(ALPHABET[usize::from(b) % ALPHABET.len()]));
            }
        }
    }
    Ok(out)
}

fn meta(db: &Database, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: db.namespace(),
        ..ObjectMeta::default()
    }
}

/// Pods of `db` carry these labels; the `Service` selects them.
fn pod_labels(db: &Database) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), "database".to_owned()),
        ("app.kubernetes.io/instance".to_owned(), db.name_any()),
    ])
}

/// The name of the credentials `Secret`.
pub fn credentials_name(db: &Database) -> String {
    format!("{}-credentials", db.name_any())
}

/// The credentials `Secret` with a generated password: written once (create-only),
/// never regenerated.
pub struct Credentials(pub String);

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The password never reaches a log.
        f.write_str("Credentials(..)")
    }
}

impl Ensure<Database> for Credentials {
    type Child = Secret;

    fn strategy(&self) -> Strategy {
        Strategy::CreateOnly
    }

    fn desired(&self, db: &Database) -> Secret {
        let password = &self.0;
        Secret {
            metadata: meta(db, credentials_name(db)),
            type_: Some("Opaque".to_owned()),
            string_data: Some(BTreeMap::from([
                ("username".to_owned(), "app".to_owned()),
                ("password".to_owned(), password.to_owned()),
            ])),
            ..Secret::default()
        }
    }
}

/// Engine settings derived from the spec, as a `ConfigMap`.
#[derive(Debug)]
pub struct Settings;

impl Ensure<Database> for Settings {
    type Child = ConfigMap;

    fn desired(&self, db: &Database) -> ConfigMap {
        let connections = 100 * db.spec.replicas;
        ConfigMap {
            metadata: meta(db, format!("{}-config", db.name_any())),
            data: Some(BTreeMap::from([
                ("engine".to_owned(), db.spec.engine.as_str().to_owned()),
                ("version".to_owned(), db.spec.version.clone()),
                ("max_connections".to_owned(), connections.to_string()),
                ("port".to_owned(), db.spec.engine.port().to_string()),
            ])),
            ..ConfigMap::default()
        }
    }
}

/// The `Service` clients connect to.
#[derive(Debug)]
pub struct Endpoint;

impl Ensure<Database> for Endpoint {
    type Child = Service;

    fn desired(&self, db: &Database) -> Service {
        Service {
            metadata: meta(db, db.name_any()),
            spec: Some(ServiceSpec {
                selector: Some(pod_labels(db)),
                ports: Some(vec![ServicePort {
                    name: Some(db.spec.engine.as_str().to_owned()),
                    port: db.spec.engine.port(),
                    ..ServicePort::default()
                }]),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        }
    }
}

/// The `StatefulSet` of the database's replicas; ready once its controller rolled out
/// the applied spec and every replica is ready.
#[derive(Debug)]
pub struct Pods;

impl Ensure<Database> for Pods {
    type Child = StatefulSet;

    fn readiness(&self, sts: &StatefulSet) -> Readiness {
        let status = sts.status.as_ref();
        let ready = status.and_then(|s| s.ready_replicas).unwrap_or(0);
        // What was applied: a spec changed since then reaches the StatefulSet through
        // Updating once this pass is Ready, so waiting for the new count would wait forever.
        let wanted = sts.spec.replicas.unwrap_or(1);
        let observed = status.and_then(|s| s.observed_generation);
        let rolled_out = observed.is_some() && observed >= sts.metadata.generation;
        if ready >= wanted && rolled_out {
            Readiness::Ready
        } else {
            Readiness::Waiting(format!("{ready}/{wanted} replicas ready"))
        }
    }

    fn desired(&self, db: &Database) -> StatefulSet {
        let engine = db.spec.engine;
        let secret_env = |name: &str, key: &str| EnvVar {
            name: name.to_owned(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: credentials_name(db),
                    key: key.to_owned(),
                    ..SecretKeySelector::default()
                }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        };
        let env = match engine {
            super::crd::Engine::Postgres => vec![
                secret_env("POSTGRES_USER", "username"),
                secret_env("POSTGRES_PASSWORD", "password"),
            ],
            super::crd::Engine::Mysql => vec![
                secret_env("MYSQL_USER", "username"),
                secret_env("MYSQL_PASSWORD", "password"),
            ],
        };
        StatefulSet {
            metadata: meta(db, db.name_any()),
            spec: StatefulSetSpec {
                replicas: Some(db.spec.replicas),
                service_name: Some(db.name_any()),
                selector: LabelSelector {
                    match_labels: Some(pod_labels(db)),
                    ..LabelSelector::default()
                },
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(pod_labels(db)),
                        ..ObjectMeta::default()
                    }),
                    spec: Some(PodSpec {
                        containers: vec![Container {
                            name: engine.as_str().to_owned(),
                            image: Some(format!("{}:{}", engine.as_str(), db.spec.version)),
                            ports: Some(vec![ContainerPort {
                                container_port: engine.port(),
                                ..ContainerPort::default()
                            }]),
                            env: Some(env),
                            volume_mounts: Some(vec![VolumeMount {
                                name: "data".to_owned(),
                                mount_path: "/var/lib/data".to_owned(),
                                ..VolumeMount::default()
                            }]),
                            ..Container::default()
                        }],
                        ..PodSpec::default()
                    }),
                },
                volume_claim_templates: Some(vec![PersistentVolumeClaim {
                    metadata: ObjectMeta {
                        name: Some("data".to_owned()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(PersistentVolumeClaimSpec {
                        access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
                        resources: Some(VolumeResourceRequirements {
                            requests: Some(BTreeMap::from([(
                                "storage".to_owned(),
                                Quantity(db.spec.storage.clone()),
                            )])),
                            ..VolumeResourceRequirements::default()
                        }),
                        ..PersistentVolumeClaimSpec::default()
                    }),
                    ..PersistentVolumeClaim::default()
                }]),
                ..StatefulSetSpec::default()
            },
            ..StatefulSet::default()
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_long_and_from_the_alphabet() {
        let a = super::password().unwrap();
        let b = super::password().unwrap();
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        assert!(a.bytes().all(|c| super::ALPHABET.contains(&c)));
    }
}
