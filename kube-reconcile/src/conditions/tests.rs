use super::*;
use proptest::prelude::*;

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(secs).expect("in range")
}

#[test]
fn a_new_type_is_appended_and_stamped() {
    let mut list = Conditions::new();
    assert!(list.set(Condition::true_("Ready", "Up", "ok"), at(10)));
    assert!(list.set(Condition::false_("Stalled", "Fine", ""), at(11)));
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].last_transition(), Some(at(10)));
    assert_eq!(list[1].type_, "Stalled");
}

#[test]
fn an_explicit_transition_time_wins_over_now() {
    let mut list = Conditions::new();
    let mut c = Condition::true_("Ready", "Up", "ok");
    c.last_transition_time = Some(meta::Time(at(3)));
    list.set(c, at(10));
    assert_eq!(list.find("Ready").unwrap().last_transition(), Some(at(3)));
}

#[test]
fn observed_generation_alone_is_a_change() {
    let mut list = Conditions::new();
    list.set(
        Condition::true_("Ready", "Up", "ok").observed_generation(Some(1)),
        at(1),
    );
    assert!(list.set(
        Condition::true_("Ready", "Up", "ok").observed_generation(Some(2)),
        at(2)
    ));
    let ready = list.find("Ready").unwrap();
    assert_eq!(ready.observed_generation, Some(2));
    assert_eq!(ready.last_transition(), Some(at(1)));
}

#[test]
fn remove_and_is_true_read_by_type() {
    let mut list = Conditions::new();
    list.set(Condition::true_("Ready", "Up", ""), at(1));
    assert!(list.is_true("Ready"));
    assert!(!list.is_true("Other"));
    assert!(list.remove("Ready"));
    assert!(!list.remove("Ready"));
    assert!(list.is_empty());
}

#[test]
fn corrupt_entries_read_leniently_and_duplicates_keep_the_first() {
    let list: Conditions = serde_json::from_value(serde_json::json!([
        { "type": "Ready", "status": "Maybe", "reason": 7, "lastTransitionTime": "yesterday" },
        { "type": "Ready", "status": "True" },
        { "status": "True" }
    ]))
    .unwrap();
    assert_eq!(list.len(), 2);
    let ready = list.find("Ready").unwrap();
    assert_eq!(ready.status, ConditionStatus::Unknown);
    assert_eq!(ready.reason, "");
    assert_eq!(ready.last_transition_time, None);
    let null: Conditions = serde_json::from_value(serde_json::Value::Null).unwrap();
    assert!(null.is_empty());
}

#[test]
fn a_list_with_entries_that_are_not_objects_or_no_list_at_all_still_reads() {
    // Found by tests/bad_input.rs: `[null]` made the whole object unreadable.
    let list: Conditions = serde_json::from_value(serde_json::json!([
        null,
        7,
        "Ready",
        [],
        { "type": "Ready", "status": "True" }
    ]))
    .unwrap();
    assert_eq!(list.len(), 1);
    assert!(list.is_true("Ready"));
    for garbage in [
        serde_json::json!("Ready"),
        serde_json::json!(5),
        serde_json::json!({}),
    ] {
        let list: Conditions = serde_json::from_value(garbage).unwrap();
        assert!(list.is_empty());
    }
}

#[test]
fn conversion_with_k8s_openapi_keeps_every_field() {
    let mut list = Conditions::new();
    list.set(
        Condition::false_("Ready", "Down", "gone").observed_generation(Some(4)),
        at(9),
    );
    let c = list[0].clone();
    let k: meta::Condition = c.clone().into();
    assert_eq!(k.status, "False");
    assert_eq!(Condition::from(k), c);
}

#[test]
fn serialized_form_is_what_the_api_server_stores() {
    let mut list = Conditions::new();
    list.set(Condition::true_("Ready", "Up", "ok"), at(0));
    assert_eq!(
        serde_json::to_value(&list).unwrap(),
        serde_json::json!([{
            "type": "Ready", "status": "True", "reason": "Up", "message": "ok",
            "lastTransitionTime": "1970-01-01T00:00:00Z"
        }])
    );
}

fn condition() -> impl Strategy<Value = Condition> {
    (
        prop::sample::select(vec!["Ready", "Reconciling", "Stalled"]),
        prop::sample::select(vec![
            ConditionStatus::True,
            ConditionStatus::False,
            ConditionStatus::Unknown,
        ]),
        prop::sample::select(vec!["A", "B"]),
        prop::option::of(0i64..3),
    )
        .prop_map(|(t, s, r, g)| Condition::new(t, s, r, "").observed_generation(g))
}

proptest! {
    #[test]
    fn transition_time_moves_only_when_status_changes(
        steps in prop::collection::vec(condition(), 1..40)
    ) {
        let mut list = Conditions::new();
        for (i, c) in steps.into_iter().enumerate() {
            let now = at(i64::try_from(i).unwrap() + 1);
            let before = list.find(&c.type_).cloned();
            let changed = list.set(c.clone(), now);
            let after = list.find(&c.type_).unwrap();
            match before {
                None => {
                    prop_assert!(changed);
                    prop_assert_eq!(after.last_transition(), Some(now));
                }
                Some(b) => {
                    let status_moved = b.status != c.status;
                    let expect = if status_moved { Some(now) } else { b.last_transition() };
                    prop_assert_eq!(after.last_transition(), expect);
                    prop_assert_eq!(changed, b != *after);
                }
            }
            prop_assert_eq!(after.status, c.status);
            prop_assert_eq!(&after.reason, &c.reason);
            // At most one condition per type.
            let mut types: Vec<_> = list.iter().map(|c| c.type_.clone()).collect();
            types.sort();
            types.dedup();
            prop_assert_eq!(types.len(), list.len());
        }
    }
}
