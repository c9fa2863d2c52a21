//! Layer configuration and the handle.

use super::*;

#[test]
fn bad_layer_configurations_are_typed_errors() {
    let manual = ManualClock::new();
    assert_eq!(
        RateLimitLayer::builder().build().unwrap_err().rate_limit(),
        RateLimitConfigError::NoLimits
    );

    let heavy = RateLimitLayer::builder()
        .global(per_minute(2))
        .weight(nz(3))
        .build()
        .unwrap_err()
        .rate_limit();
    assert_eq!(
        heavy.to_string(),
        "a weight of 3 exceeds the burst of 2 of the `global` limit"
    );

    let twice = RateLimitLayer::builder()
        .budget(budget("dbaas", per_minute(1), &manual))
        .budget(budget("dbaas", per_minute(1), &manual))
        .build()
        .unwrap_err()
        .rate_limit();
    assert_eq!(
        twice,
        RateLimitConfigError::DuplicateName {
            budget: "dbaas".into()
        }
    );

    let shadow = RateLimitLayer::builder()
        .global(per_minute(1))
        .budget(budget("global", per_minute(1), &manual))
        .build();
    assert!(matches!(
        shadow.map_err(crate::ConfigError::rate_limit),
        Err(RateLimitConfigError::DuplicateName { .. })
    ));
}

#[test]
fn the_handle_names_the_limits_in_checking_order() {
    let manual = ManualClock::new();
    let layer = exact(&manual)
        .global(per_minute(1))
        .budget(budget("dbaas", per_minute(1), &manual))
        .per_object(per_minute(1))
        .build()
        .unwrap();
    let handle = layer.handle();
    assert_eq!(
        handle.names().collect::<Vec<_>>(),
        ["object", "dbaas", "global"]
    );
    assert_eq!(format!("{handle:?}"), r#"["object", "dbaas", "global"]"#);
    assert!(handle.capacity("object").is_none());
    assert!(handle.capacity("nope").is_none());
    assert!(
        RateLimitLayer::global(per_minute(1))
            .handle()
            .object_capacity(&*cm("a"))
            .is_none()
    );
}
