//! The cache's bookkeeping, fed by hand: what a read answers, and when it asks the server.

use super::*;

fn config_maps() -> ApiResource {
    ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&())
}

fn map(name: &str, version: &str) -> DynamicObject {
    let mut obj = DynamicObject::new(name, &config_maps()).within("ns");
    obj.metadata.resource_version = Some(version.to_owned());
    obj
}

/// A cache of config maps fed by hand, synced.
fn cache() -> (ChildCache, Feeder) {
    let (cache, mut feeder) = unsynced();
    feeder.on(watcher::Event::Init);
    feeder.on(watcher::Event::InitDone);
    (cache, feeder)
}

/// A cache of config maps fed by hand, whose first list is not in yet.
fn unsynced() -> (ChildCache, Feeder) {
    let objects = Arc::new(Objects::default());
    let cache = ChildCache::default();
    cache.inner.kinds.write().unwrap().push(Kind {
        gvk: gvk_of(&config_maps()),
        objects: objects.clone(),
    });
    let feeder = Feeder::new(objects, "ours", &config_maps());
    (cache, feeder)
}

/// Where a read goes: `"server"`, or the cache's answer (`"absent"` or the version).
fn read(cache: &ChildCache, name: &str) -> String {
    match cache.get(&config_maps(), Some("ns"), name) {
        Cached::Hit(Some(json)) => json
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        Cached::Hit(None) => "absent".to_owned(),
        Cached::Miss => "server".to_owned(),
    }
}

#[test]
fn a_kind_not_cached_is_read_from_the_server() {
    let cache = ChildCache::default();
    assert_eq!(read(&cache, "a"), "server");
    cache.saw(&config_maps(), Some("ns"), "a", Some(&map("a", "5")));
    assert_eq!(
        cache.pending(),
        0,
        "nothing to remember for a kind not cached"
    );
}

#[test]
fn the_cache_answers_until_we_write_and_again_once_it_has_our_write() {
    let (cache, mut feed) = cache();
    feed.on(watcher::Event::Apply(map("a", "4")));
    assert_eq!(read(&cache, "a"), "4");
    assert_eq!(
        read(&cache, "b"),
        "absent",
        "the cache knows what is not there"
    );

    // We wrote version 5: the cached 4 is older, so the server is asked.
    cache.saw(&config_maps(), Some("ns"), "a", Some(&map("a", "5")));
    assert_eq!(read(&cache, "a"), "server");
    feed.on(watcher::Event::Apply(map("a", "5")));
    assert_eq!(read(&cache, "a"), "5");
    assert_eq!(cache.pending(), 0, "forgotten once the cache caught up");

    // A newer version than ours (someone else wrote after us) is fine too.
    cache.saw(&config_maps(), Some("ns"), "a", Some(&map("a", "6")));
    feed.on(watcher::Event::Apply(map("a", "9")));
    assert_eq!(read(&cache, "a"), "9");
}

#[test]
fn a_create_the_cache_has_not_seen_is_not_read_as_missing() {
    let (cache, mut feed) = cache();
    cache.saw(&config_maps(), Some("ns"), "new", Some(&map("new", "7")));
    assert_eq!(
        read(&cache, "new"),
        "server",
        "absent from the cache, but we created it"
    );
    feed.on(watcher::Event::Apply(map("new", "7")));
    assert_eq!(read(&cache, "new"), "7");
}

#[test]
fn deletes_and_conflicts_go_to_the_server_until_the_cache_agrees() {
    let (cache, mut feed) = cache();
    feed.on(watcher::Event::Apply(map("a", "4")));
    cache.saw(&config_maps(), Some("ns"), "a", None);
    assert_eq!(
        read(&cache, "a"),
        "server",
        "deleted, and the cache still has it"
    );
    feed.on(watcher::Event::Delete(map("a", "5")));
    assert_eq!(read(&cache, "a"), "absent");

    feed.on(watcher::Event::Apply(map("b", "8")));
    cache.stale(&config_maps(), Some("ns"), "b");
    assert_eq!(read(&cache, "b"), "server", "a conflict: ask the server");
    cache.saw(&config_maps(), Some("ns"), "b", Some(&map("b", "8")));
    assert_eq!(read(&cache, "b"), "8");
}

#[test]
fn a_version_that_is_not_a_number_is_read_from_the_server() {
    let (cache, mut feed) = cache();
    feed.on(watcher::Event::Apply(map("a", "x1")));
    cache.saw(&config_maps(), Some("ns"), "a", Some(&map("a", "x1")));
    assert_eq!(read(&cache, "a"), "server");
}

#[test]
fn a_relist_replaces_the_cache_at_its_end_and_only_our_fields_are_kept() {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
    let (cache, mut feed) = cache();
    feed.on(watcher::Event::Apply(map("gone", "3")));
    let mut owned = map("kept", "4");
    owned.metadata.managed_fields = Some(
        ["ours", "kube-controller-manager"]
            .map(|m| ManagedFieldsEntry {
                manager: Some(m.to_owned()),
                ..ManagedFieldsEntry::default()
            })
            .into(),
    );
    feed.on(watcher::Event::Init);
    feed.on(watcher::Event::InitApply(owned));
    assert_eq!(
        read(&cache, "gone"),
        "3",
        "the old state serves until the list ends"
    );
    feed.on(watcher::Event::InitDone);
    assert_eq!(read(&cache, "gone"), "absent");
    let Cached::Hit(Some(kept)) = cache.get(&config_maps(), Some("ns"), "kept") else {
        panic!("kept is cached")
    };
    let managers: Vec<_> = kept["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["manager"].as_str().unwrap())
        .collect();
    assert_eq!(managers, ["ours"]);
}

#[test]
fn a_child_is_kept_deflated_and_read_back_whole() {
    let (cache, mut feed) = cache();
    let mut settings = map("settings", "7");
    settings.metadata.labels = Some(
        [
            ("app.kubernetes.io/managed-by", "ours"),
            ("app.kubernetes.io/instance", "db-1"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .into(),
    );
    settings.data = serde_json::json!({ "data": {
        "postgresql.conf": "max_connections = 100\nshared_buffers = 128MB\n".repeat(20),
    }});
    feed.on(watcher::Event::Apply(settings.clone()));
    let objects = &cache.inner.kinds.read().unwrap()[0].objects;
    let map = objects.map.read().unwrap();
    let entry = &map[&(Some("ns".to_owned()), "settings".to_owned())];
    assert_eq!(entry.len, serde_json::to_vec(&settings).unwrap().len());
    assert!(
        entry.deflated.len() * 4 < entry.len,
        "{} bytes deflated from {}",
        entry.deflated.len(),
        entry.len
    );
    let Cached::Hit(Some(read)) = cache.get(&config_maps(), Some("ns"), "settings") else {
        panic!("settings is cached")
    };
    assert_eq!(read, serde_json::to_value(&settings).unwrap());
}

#[tokio::test(start_paused = true)]
async fn a_read_waits_for_the_first_list_of_its_kind_and_no_longer() {
    let (cache, mut feed) = unsynced();
    let started = tokio::time::Instant::now();
    let waiting = tokio::spawn({
        let cache = cache.clone();
        async move { cache.until_synced(&config_maps()).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "no list yet");
    feed.on(watcher::Event::Init);
    feed.on(watcher::Event::InitApply(map("a", "4")));
    feed.on(watcher::Event::InitDone);
    waiting.await.unwrap();
    assert_eq!(started.elapsed(), std::time::Duration::from_millis(300));
    assert_eq!(read(&cache, "a"), "4");
    // Synced: no wait at all.
    cache.until_synced(&config_maps()).await;
    assert_eq!(started.elapsed(), std::time::Duration::from_millis(300));
}

#[tokio::test(start_paused = true)]
async fn a_read_waits_at_most_the_sync_wait_and_not_for_a_failed_watch() {
    let (cache, _feed) = unsynced();
    let started = tokio::time::Instant::now();
    cache.until_synced(&config_maps()).await;
    assert_eq!(started.elapsed(), SYNC_WAIT, "then the server is asked");
    assert_eq!(read(&cache, "a"), "server");
    let objects = cache.objects_of(&config_maps()).unwrap();
    objects.failed.store(true, Ordering::Release);
    cache.until_synced(&config_maps()).await;
    assert_eq!(
        started.elapsed(),
        SYNC_WAIT,
        "a failed watch is not waited for"
    );
}

#[tokio::test(start_paused = true)]
async fn without_a_starter_a_kind_never_read_is_not_waited_for() {
    let cache = ChildCache::default();
    let started = tokio::time::Instant::now();
    cache.until_synced(&config_maps()).await;
    assert_eq!(started.elapsed(), std::time::Duration::ZERO);
    assert_eq!(read(&cache, "a"), "server");
}

/// A config map as an operator's children of one kind look: the same labels, owner and
/// shape, their own name, uid and settings.
fn child(name: &str, version: &str) -> DynamicObject {
    let mut obj = map(name, version);
    obj.metadata.uid = Some(format!("8a1c2f3e-0000-4000-8000-{name:0>12}"));
    obj.metadata.labels = Some(
        [
            ("app.kubernetes.io/managed-by", "database-operator"),
            ("app.kubernetes.io/instance", name),
            ("app.kubernetes.io/component", "settings"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .into(),
    );
    obj.data = serde_json::json!({ "data": {
        "postgresql.conf": format!("max_connections = 100\nshared_buffers = 128MB\ncluster_name = '{name}'\n"),
    }});
    obj
}

#[test]
fn children_of_a_kind_are_deflated_after_the_first_and_read_back_whole() {
    let (cache, mut feed) = cache();
    for (name, version) in [("db-1", "3"), ("db-2", "4"), ("db-3", "5")] {
        feed.on(watcher::Event::Apply(child(name, version)));
    }
    let objects = cache.inner.kinds.read().unwrap()[0].objects.clone();
    for (name, version) in [("db-2", "4"), ("db-3", "5")] {
        let json = serde_json::to_vec(&child(name, version)).unwrap();
        let alone = miniz_oxide::deflate::compress_to_vec(&json, 6).len();
        let kept = objects.map.read().unwrap()[&(Some("ns".to_owned()), name.to_owned())]
            .deflated
            .len();
        assert!(
            kept * 2 < alone,
            "{name}: {kept} bytes after the primer, {alone} on its own"
        );
        let Cached::Hit(Some(read)) = cache.get(&config_maps(), Some("ns"), name) else {
            panic!("{name} is cached")
        };
        assert_eq!(read, serde_json::to_value(child(name, version)).unwrap());
    }
    // A relist keeps the primer: the entries it brings are read back too.
    feed.on(watcher::Event::Init);
    feed.on(watcher::Event::InitApply(child("db-4", "6")));
    feed.on(watcher::Event::InitDone);
    assert_eq!(read(&cache, "db-4"), "6");
    assert_eq!(read(&cache, "db-1"), "absent");
}

#[test]
fn a_secret_primes_its_kind_without_its_data() {
    let secrets = ApiResource::erase::<k8s_openapi::api::core::v1::Secret>(&());
    let objects = Arc::new(Objects::default());
    let cache = ChildCache::default();
    cache.inner.kinds.write().unwrap().push(Kind {
        gvk: gvk_of(&secrets),
        objects: objects.clone(),
    });
    let mut feed = Feeder::new(objects.clone(), "ours", &secrets);
    let secret = |name: &str, password: &str| {
        let mut obj = DynamicObject::new(name, &secrets).within("ns");
        // As the items of a list come: without their kind.
        obj.types = None;
        obj.metadata.resource_version = Some("9".to_owned());
        obj.data = serde_json::json!({ "data": { "password": password }, "type": "Opaque" });
        obj
    };
    feed.on(watcher::Event::Init);
    feed.on(watcher::Event::InitApply(secret(
        "db-1",
        "c2VjcmV0LW9uZQ==",
    )));
    feed.on(watcher::Event::InitDone);
    feed.on(watcher::Event::Apply(secret("db-2", "c2VjcmV0LXR3bw==")));
    let primer = objects
        .primer
        .get()
        .expect("the first Secret primes the kind");
    let text = String::from_utf8_lossy(primer.text());
    assert!(text.contains("\"db-1\""), "{text}");
    assert!(
        !text.contains("c2VjcmV0"),
        "the primer keeps a password: {text}"
    );
    for (name, password) in [("db-1", "c2VjcmV0LW9uZQ=="), ("db-2", "c2VjcmV0LXR3bw==")] {
        let Cached::Hit(Some(read)) = cache.get(&secrets, Some("ns"), name) else {
            panic!("{name} is cached")
        };
        assert_eq!(read["data"]["password"], password);
    }
}
