//! What controllers use: the event recorder and a `Controller` on custom resources.

use super::*;

#[tokio::test]
async fn events_from_the_recorder_show_as_core_v1_events() {
    let server = ApiServer::new();
    let client: Client = server.client();
    let widgets = with_widgets(&server).await;
    let w = widgets
        .create(&PostParams::default(), &widget("ev", 1))
        .await
        .unwrap();
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "widget-controller".into(),
            instance: None,
        },
    );
    let event = Event {
        type_: EventType::Normal,
        reason: "Provisioning".into(),
        note: Some("started provisioning".into()),
        action: "Provision".into(),
        secondary: None,
    };
    recorder.publish(&event, &w.object_ref(&())).await.unwrap();
    let core: Api<CoreEvent> = Api::default_namespaced(client);
    let lp = ListParams::default().fields("involvedObject.kind=Widget,involvedObject.name=ev");
    let events = core.list(&lp).await.unwrap();
    assert_eq!(events.items.len(), 1);
    assert_eq!(
        events.items[0].message.as_deref(),
        Some("started provisioning")
    );
    assert_eq!(events.items[0].reason.as_deref(), Some("Provisioning"));
}

#[tokio::test]
async fn a_controller_reconciles_custom_resources() {
    let server = ApiServer::new();
    let widgets = with_widgets(&server).await;
    widgets
        .create(&PostParams::default(), &widget("c", 2))
        .await
        .unwrap();
    let reconcile = |w: Arc<Widget>, api: Arc<Api<Widget>>| async move {
        let status = WidgetStatus {
            phase: Some("Ready".into()),
            observed_generation: w.metadata.generation,
        };
        api.patch_status(
            &w.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({"status": status})),
        )
        .await?;
        Ok::<_, kube::Error>(Action::await_change())
    };
    let controller = Controller::new(widgets.clone(), watcher::Config::default()).run(
        reconcile,
        |_, _, _| Action::requeue(Duration::from_secs(1)),
        Arc::new(widgets.clone()),
    );
    tokio::spawn(controller.for_each(|_| async {}));
    let ready = await_condition(widgets.clone(), "c", |w: Option<&Widget>| {
        w.and_then(|w| w.status.as_ref())
            .and_then(|s| s.phase.as_deref())
            == Some("Ready")
    });
    tokio::time::timeout(Duration::from_secs(5), ready)
        .await
        .unwrap()
        .unwrap();
}
