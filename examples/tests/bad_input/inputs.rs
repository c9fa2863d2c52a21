//! The arbitrary input: specs, status contents and the junk between them, as proptest
//! strategies.

use super::*;

/// A JSON value that is present, or a key left out.
pub(crate) fn maybe(value: impl Strategy<Value = Value> + 'static) -> BoxedStrategy<Option<Value>> {
    prop_oneof![1 => Just(None), 4 => value.prop_map(Some)].boxed()
}

/// Mostly a value the schema accepts, sometimes anything.
pub(crate) fn mostly(good: impl Strategy<Value = Value> + 'static) -> BoxedStrategy<Option<Value>> {
    prop_oneof![1 => Just(None), 40 => good.prop_map(Some), 1 => junk().prop_map(Some)].boxed()
}

/// Strings, numbers and the like, for fields that should have been something else.
pub(crate) fn junk() -> BoxedStrategy<Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1e9f64..1e9).prop_map(Value::from),
        "[ -~]{0,24}".prop_map(Value::from),
        Just(json!([])),
        Just(json!({})),
        Just(json!([1, "two", null])),
        Just(json!({ "nested": { "deep": [true] } })),
    ]
    .boxed()
}

/// An object with the present entries of `fields`.
pub(crate) fn object(fields: Vec<(&'static str, Option<Value>)>) -> Value {
    Value::Object(
        fields
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v)))
            .collect(),
    )
}

pub(crate) fn spec() -> BoxedStrategy<Value> {
    let engine = prop_oneof![
        8 => prop::sample::select(vec!["postgres", "mysql"]).prop_map(Value::from),
        1 => prop::sample::select(vec!["oracle", "Postgres", ""]).prop_map(Value::from),
    ];
    let version = prop_oneof![
        4 => prop::sample::select(vec!["14", "15", "16", "17", "8.0", "8.4", "9.6", ""])
            .prop_map(Value::from),
        1 => "[ -~]{1,16}".prop_map(Value::from),
        1 => Just(Value::from("x".repeat(17))),
    ];
    let replicas = prop_oneof![
        12 => (1i64..8).prop_map(Value::from),
        1 => (-1i64..=0).prop_map(Value::from),
        1 => Just(json!(i64::MAX)),
        1 => Just(json!(2.5)),
    ];
    let storage = prop::sample::select(vec![
        "1Gi",
        "10Gi",
        "512Mi",
        "0Gi",
        "0Mi",
        "lots",
        "",
        "99999999999Gi",
        "1Ti",
        "-1Gi",
    ])
    .prop_map(Value::from);
    let whole = (
        mostly(engine),
        mostly(version),
        mostly(replicas),
        mostly(storage),
        mostly(any::<bool>().prop_map(Value::from)),
        maybe(junk()),
    )
        .prop_map(|(engine, version, replicas, storage, retain, extra)| {
            object(vec![
                ("engine", engine),
                ("version", version),
                ("replicas", replicas),
                ("storage", storage),
                ("retainOnDelete", retain),
                ("extra", extra),
            ])
        });
    prop_oneof![19 => whole, 1 => junk()].boxed()
}

pub(crate) fn timestamp() -> BoxedStrategy<Value> {
    prop_oneof![
        Just(json!("2020-01-01T00:00:00Z")),
        Just(json!("2999-01-01T00:00:00Z")),
        Just(json!("yesterday")),
        Just(json!("2026-13-45T99:99:99Z")),
        junk(),
    ]
    .boxed()
}

pub(crate) fn phase_name() -> BoxedStrategy<Value> {
    prop_oneof![
        prop::sample::select(DbPhase::all().to_vec()).prop_map(|p| Value::from(p.name())),
        prop::sample::select(vec![
            "ready",
            "READY",
            "Ready ",
            "Deleted",
            "",
            "Pending\u{0}"
        ])
        .prop_map(Value::from),
        "[A-Za-z]{0,12}".prop_map(Value::from),
        junk(),
    ]
    .boxed()
}

pub(crate) fn condition() -> BoxedStrategy<Value> {
    let typed = (
        maybe(prop_oneof![
            prop::sample::select(vec![
                "Ready",
                "Reconciling",
                "Stalled",
                "DbaasAvailable",
                ""
            ])
            .prop_map(Value::from),
            junk(),
        ]),
        maybe(prop_oneof![
            prop::sample::select(vec!["True", "False", "Unknown", "true", "Maybe"])
                .prop_map(Value::from),
            junk(),
        ]),
        maybe(junk()),
        maybe(junk()),
        maybe(prop_oneof![(-5i64..5).prop_map(Value::from), junk()]),
        maybe(timestamp()),
    )
        .prop_map(|(t, status, reason, message, generation, time)| {
            object(vec![
                ("type", t),
                ("status", status),
                ("reason", reason),
                ("message", message),
                ("observedGeneration", generation),
                ("lastTransitionTime", time),
            ])
        });
    prop_oneof![4 => typed, 1 => junk()].boxed()
}

pub(crate) fn status() -> BoxedStrategy<Value> {
    let conditions = prop_oneof![
        4 => prop::collection::vec(condition(), 0..5).prop_map(Value::from),
        1 => junk(),
    ];
    let paced = prop_oneof![
        (0u64..1_000).prop_map(Value::from),
        Just(json!(u64::MAX)),
        Just(json!(-1)),
        junk(),
    ];
    let history_entry = (
        maybe(phase_name()),
        maybe(phase_name()),
        maybe(timestamp()),
        maybe(junk()),
        maybe(paced),
    )
        .prop_map(|(phase, from, at, reason, paced)| {
            object(vec![
                ("phase", phase),
                ("from", from),
                ("enteredAt", at),
                ("reason", reason),
                ("pacedSeconds", paced),
            ])
        });
    let history = prop_oneof![
        3 => prop::collection::vec(history_entry, 0..4).prop_map(Value::from),
        1 => junk(),
    ];
    let retry = prop_oneof![
        (
            maybe(prop_oneof![(-2i64..40).prop_map(Value::from), junk()]),
            maybe(timestamp())
        )
            .prop_map(|(attempts, next)| object(vec![
                ("attempts", attempts),
                ("nextAttemptTime", next)
            ])),
        junk(),
    ];
    let last_error = prop_oneof![
        (
            maybe(phase_name()),
            maybe(junk()),
            maybe(junk()),
            maybe(timestamp())
        )
            .prop_map(|(phase, reason, message, time)| object(vec![
                ("phase", phase),
                ("reason", reason),
                ("message", message),
                ("time", time),
            ])),
        junk(),
    ];
    let whole = (
        maybe(phase_name()),
        maybe(conditions),
        maybe(history),
        maybe(retry),
        maybe(last_error),
        maybe(prop_oneof![
            (-5i64..5).prop_map(Value::from),
            Just(json!(99)),
            junk()
        ]),
        maybe(prop_oneof!["db-[0-9a-f]{4}".prop_map(Value::from), junk()]),
    )
        .prop_map(
            |(phase, conditions, history, retry, last_error, generation, instance)| {
                object(vec![
                    ("phase", phase),
                    ("conditions", conditions),
                    ("phaseHistory", history),
                    ("retry", retry),
                    ("lastError", last_error),
                    ("observedGeneration", generation),
                    ("instanceId", instance),
                ])
            },
        );
    prop_oneof![9 => whole, 1 => junk()].boxed()
}
