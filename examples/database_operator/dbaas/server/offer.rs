//! What the service offers: engines and the bounds of a spec.

use super::{super::api::InstanceSpec, Rejection};

/// Engines the service offers, with the port their endpoints listen on.
const ENGINES: [(&str, u16); 2] = [("postgres", 5432), ("mysql", 3306)];
const MAX_STORAGE_GI: u32 = 16_384;
const MAX_REPLICAS: u32 = 9;

/// Checks a spec; returns the port of its engine.
pub(super) fn validate(spec: &InstanceSpec) -> Result<u16, Rejection> {
    let invalid = |message: String| Err(Rejection::new(422, "invalid_spec", message));
    if spec.name.is_empty() || spec.name.len() > 63 {
        return invalid(format!(
            "name must have 1 to 63 characters, not {}",
            spec.name.len()
        ));
    }
    let Some(&(_, port)) = ENGINES.iter().find(|(engine, _)| *engine == spec.engine) else {
        return Err(Rejection::new(
            422,
            "unsupported_engine",
            format!(
                "engine {:?} is not offered; choose postgres or mysql",
                spec.engine
            ),
        ));
    };
    if spec.version.is_empty() {
        return invalid("version must not be empty".into());
    }
    if !(1..=MAX_STORAGE_GI).contains(&spec.storage_gi) {
        return invalid(format!(
            "storageGi must be 1 to {MAX_STORAGE_GI}, not {}",
            spec.storage_gi
        ));
    }
    if !(1..=MAX_REPLICAS).contains(&spec.replicas) {
        return invalid(format!(
            "replicas must be 1 to {MAX_REPLICAS}, not {}",
            spec.replicas
        ));
    }
    Ok(port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_outside_the_offer_are_rejected_with_the_field_named() {
        let spec = InstanceSpec {
            name: "orders".into(),
            engine: "postgres".into(),
            version: "16".into(),
            storage_gi: 10,
            replicas: 1,
        };
        assert_eq!(validate(&spec), Ok(5432));
        let oracle = validate(&InstanceSpec {
            engine: "oracle".into(),
            ..spec.clone()
        })
        .unwrap_err();
        assert_eq!(oracle.code, "unsupported_engine");
        let replicas = validate(&InstanceSpec {
            replicas: 0,
            ..spec
        })
        .unwrap_err();
        assert!(
            replicas.message.contains("replicas"),
            "{}",
            replicas.message
        );
    }
}
