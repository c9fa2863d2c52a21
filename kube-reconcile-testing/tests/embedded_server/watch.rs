//! Watches: both list modes, 410 after compaction, dropped streams resumed.

use super::*;

async fn watch_sees_changes(config: watcher::Config) {
    let server = ApiServer::new();
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    cms.create(&PostParams::default(), &cm("before"))
        .await
        .unwrap();
    let mut seen = watcher(cms.clone(), config).applied_objects().boxed();
    let first = tokio::time::timeout(Duration::from_secs(5), seen.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.name_any(), "before");
    cms.create(&PostParams::default(), &cm("after"))
        .await
        .unwrap();
    let second = tokio::time::timeout(Duration::from_secs(5), seen.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(second.name_any(), "after");
}

#[tokio::test]
async fn watcher_works_in_list_watch_mode() {
    watch_sees_changes(watcher::Config::default()).await;
}

#[tokio::test]
async fn watcher_works_in_streaming_list_mode() {
    watch_sees_changes(watcher::Config::default().streaming_lists()).await;
}

#[tokio::test]
async fn watch_from_a_compacted_version_gets_410_and_the_watcher_relists() {
    let server = ApiServer::builder().history(5).build();
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    for i in 0..20 {
        cms.create(&PostParams::default(), &cm(&format!("old-{i}")))
            .await
            .unwrap();
    }
    let err = cms
        .watch(&kube::api::WatchParams::default(), "1")
        .await
        .unwrap()
        .boxed()
        .try_next()
        .await;
    match err {
        Ok(Some(kube::api::WatchEvent::Error(e))) => assert_eq!(e.code, 410),
        other => panic!("expected a 410 watch error, got {other:?}"),
    }
    server.faults().inject(
        Fault::expired()
            .verb(Verb::Watch)
            .resource("configmaps")
            .times(1),
    );
    let mut seen = watcher(cms.clone(), watcher::Config::default())
        .applied_objects()
        .boxed();
    let first = tokio::time::timeout(Duration::from_secs(10), seen.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(first.name_any().starts_with("old-"));
}

#[tokio::test(start_paused = true)]
async fn dropped_watch_streams_are_resumed_by_the_watcher() {
    let server = ApiServer::new();
    server
        .faults()
        .inject(Fault::drop_watch(Duration::from_secs(5)).resource("configmaps"));
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let stream = watcher(cms.clone(), watcher::Config::default()).applied_objects();
    tokio::spawn(stream.for_each(move |o| {
        let _ = tx.send(o.map(|o| o.name_any()));
        async {}
    }));
    cms.create(&PostParams::default(), &cm("one"))
        .await
        .unwrap();
    assert_eq!(rx.recv().await.unwrap().unwrap(), "one");
    tokio::time::sleep(Duration::from_secs(12)).await;
    cms.create(&PostParams::default(), &cm("two"))
        .await
        .unwrap();
    let next = tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(next, "two");
    assert!(
        server.requests().get(Verb::Watch, "configmaps") >= 2,
        "the stream was dropped and resumed: {}",
        server.requests()
    );
}
