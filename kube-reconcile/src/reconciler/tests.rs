use super::compose::controller_fns;
use super::*;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::ObjectMeta;

fn cm(ns: &str, name: &str, uid: Option<&str>) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            namespace: Some(ns.into()),
            name: Some(name.into()),
            uid: uid.map(Into::into),
            ..ObjectMeta::default()
        },
        ..ConfigMap::default()
    }
}

#[test]
fn object_keys_are_equal_only_for_the_same_uid() {
    let a = ObjectKey::of(&cm("ns", "db", Some("u1")));
    let recreated = ObjectKey::of(&cm("ns", "db", Some("u2")));
    assert_ne!(a, recreated);
    assert_eq!(a.to_string(), "ns/db");
    assert_eq!(a.uid(), "u1");
}

#[test]
fn object_without_uid_is_keyed_by_namespace_and_name() {
    let key = ObjectKey::of(&cm("ns", "db", None));
    assert_eq!(key.uid(), "ns/db");
}

#[tokio::test]
async fn plain_functions_are_reconcilers_and_errors_reach_error_policy() {
    async fn fails(_: Arc<ConfigMap>, _: Arc<()>) -> Result<Action, crate::ErrorClass> {
        Err(crate::ErrorClass::Conflict)
    }
    let (mut reconcile, error_policy) = controller_fns(fails);
    let obj = Arc::new(cm("ns", "a", Some("u")));
    let err = reconcile(Arc::clone(&obj), Arc::new(())).await.unwrap_err();
    assert_eq!(
        error_policy(obj, &err, Arc::new(())),
        Action::requeue(Duration::from_secs(1))
    );
}

#[test]
fn deferral_becomes_a_requeue() {
    let outcome: Outcome<()> = Outcome::Deferred(Deferral {
        retry_after: Duration::from_millis(250),
        reason: DeferReason::BackingOff,
    });
    assert_eq!(
        outcome.into_result(),
        Ok(Action::requeue(Duration::from_millis(250)))
    );
}
