//! Requests as clients and kubectl send them: bad input, tables, discovery, the HTTP
//! listener, field validation.

use super::*;

#[tokio::test]
#[allow(clippy::too_many_lines, reason = "one request per kind of bad input")]
async fn bad_requests_get_typed_errors_and_never_a_panic() {
    let server = ApiServer::new();
    let send = |method: &str, path: &str, body: &'static [u8], ct: &str| {
        let req = http::Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", ct)
            .body(bytes::Bytes::from_static(body))
            .unwrap();
        let server = server.clone();
        async move { server.call(req).await.status().as_u16() }
    };
    assert_eq!(
        send(
            "POST",
            "/api/v1/namespaces/default/configmaps",
            b"{not json",
            "application/json"
        )
        .await,
        400
    );
    assert_eq!(
        send(
            "GET",
            "/apis/nope.example/v1/things",
            b"",
            "application/json"
        )
        .await,
        404
    );
    assert_eq!(
        send(
            "POST",
            "/api/v1/namespaces/default/configmaps",
            br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"Bad_Name"}}"#,
            "application/json"
        )
        .await,
        422
    );
    assert_eq!(
        send(
            "PATCH",
            "/api/v1/namespaces/default/configmaps/x",
            b"{}",
            "text/plain"
        )
        .await,
        415
    );
    assert_eq!(
        send(
            "POST",
            "/api/v1/namespaces/missing/configmaps",
            br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"}}"#,
            "application/json"
        )
        .await,
        404
    );
    for garbage in [
        &b"\xff\xfe"[..],
        b"[]",
        b"null",
        b"{\"metadata\": 7}",
        b"{\"kind\": []}",
    ] {
        let req = http::Request::builder()
            .method("POST")
            .uri("/api/v1/namespaces/default/configmaps")
            .body(bytes::Bytes::from_static(garbage))
            .unwrap();
        let code = server.call(req).await.status().as_u16();
        assert!((400..500).contains(&code), "{garbage:?} → {code}");
    }
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    let mut huge = cm("huge");
    huge.data = Some([("blob".to_string(), "x".repeat(1_600_000))].into());
    let err = cms.create(&PostParams::default(), &huge).await.unwrap_err();
    assert_eq!(api_code(&err), 422);
    assert!(
        err.to_string().contains(
            "ConfigMap \"huge\" is invalid: []: Too long: may not be more than 1048576 bytes"
        ),
        "{err}"
    );
    // Any object over etcd's 1.5 MiB: a 500 from etcd; a body over 3 MiB: 413 before decoding.
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::default_namespaced(server.client());
    let lease = |n: usize| -> k8s_openapi::api::coordination::v1::Lease {
        serde_json::from_value(
            json!({"metadata": {"name": "huge"}, "spec": {"holderIdentity": "x".repeat(n)}}),
        )
        .unwrap()
    };
    let err = leases
        .create(&PostParams::default(), &lease(1_600_000))
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), 500);
    assert!(
        err.to_string().contains("etcdserver: request is too large"),
        "{err}"
    );
    assert_eq!(
        api_code(
            &leases
                .create(&PostParams::default(), &lease(3_200_000))
                .await
                .unwrap_err()
        ),
        413
    );
}

#[tokio::test]
async fn kubectl_style_table_output_uses_printer_columns() {
    let server = ApiServer::new();
    let widgets = with_widgets(&server).await;
    widgets
        .create(&PostParams::default(), &widget("t", 7))
        .await
        .unwrap();
    let req = http::Request::builder()
        .uri("/apis/test.kube-reconcile.dev/v1/namespaces/default/widgets")
        .header(
            "accept",
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
        )
        .body(bytes::Bytes::new())
        .unwrap();
    let resp = server.call(req).await;
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    let table: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let names: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Name", "Size", "Phase"]); // printer columns replace the default Age, as in kube-apiserver
    assert_eq!(table["rows"][0]["cells"][0], "t");
    assert_eq!(table["rows"][0]["cells"][1], 7);
}

#[tokio::test]
async fn discovery_finds_custom_resources_both_ways() {
    let server = ApiServer::new();
    with_widgets(&server).await;
    for aggregated in [false, true] {
        let discovery = kube::Discovery::new(server.client());
        let discovery = if aggregated {
            discovery.run_aggregated().await
        } else {
            discovery.run().await
        }
        .unwrap();
        let group = discovery
            .get("test.kube-reconcile.dev")
            .expect("group discovered");
        let (ar, caps) = group.recommended_kind("Widget").expect("kind discovered");
        assert_eq!(ar.plural, "widgets");
        assert_eq!(caps.scope, kube::discovery::Scope::Namespaced);
    }
    let version = server.client().apiserver_version().await.unwrap();
    assert_eq!(version.major, "1");
}

#[tokio::test]
async fn the_http_listener_refuses_requests_without_its_token_and_keeps_its_kubeconfig_private() {
    let server = ApiServer::new();
    let http = server.serve().await.unwrap();
    // No token, then a wrong one: 401, and nothing is served.
    for token in [None, Some("not-the-token")] {
        let mut config = http.config().await.unwrap();
        config.auth_info.token = token.map(|t| t.to_owned().into());
        let client = Client::try_from(config).unwrap();
        let err = Api::<ConfigMap>::default_namespaced(client)
            .list(&kube::api::ListParams::default())
            .await
            .unwrap_err();
        let kube::Error::Api(status) = err else {
            panic!("{err:?}")
        };
        assert_eq!((status.code, status.reason.as_str()), (401, "Unauthorized"));
    }
    // The kubeconfig carries the token and is written for its owner only.
    let dir = std::env::temp_dir().join(format!("kr-kubeconfig-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("kubeconfig");
    http.write_kubeconfig(&path).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert!(
        http.write_kubeconfig(&path).is_err(),
        "an existing file is never overwritten"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn kubectl_can_reach_the_http_listener() {
    let server = ApiServer::new();
    let http = server.serve().await.unwrap();
    let client = Client::try_from(http.config().await.unwrap()).unwrap();
    let cms: Api<ConfigMap> = Api::default_namespaced(client);
    cms.create(&PostParams::default(), &cm("over-http"))
        .await
        .unwrap();
    assert!(http.kubeconfig().contains(&http.url()));
    assert_eq!(
        Api::<ConfigMap>::default_namespaced(server.client())
            .get("over-http")
            .await
            .unwrap()
            .name_any(),
        "over-http"
    );
}

#[tokio::test]
async fn field_validation_from_kube_patch_params_is_honoured() {
    use kube::api::ValidationDirective;
    let server = ApiServer::new();
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("fv".into());
    cms.create(&PostParams::default(), &cm).await.unwrap();
    let patch = Patch::Merge(json!({"data": {"k": "v"}, "unknownTop": true}));

    let strict = PatchParams::default().validation(ValidationDirective::Strict);
    let err = cms.patch("fv", &strict, &patch).await.unwrap_err();
    let kube::Error::Api(status) = err else {
        panic!("expected an API error, got {err:?}")
    };
    assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));
    assert!(
        status
            .message
            .ends_with(r#": strict decoding error: unknown field "unknownTop""#),
        "{}",
        status.message
    );

    // Warn (the default) and Ignore admit the patch and drop the unknown field.
    for params in [
        PatchParams::default(),
        PatchParams::default().validation(ValidationDirective::Ignore),
    ] {
        let patched = cms.patch("fv", &params, &patch).await.unwrap();
        assert_eq!(patched.data.unwrap()["k"], "v");
    }
    let raw: Api<kube::api::DynamicObject> = Api::default_namespaced_with(
        server.client(),
        &kube::api::ApiResource::erase::<ConfigMap>(&()),
    );
    let stored = raw.get("fv").await.unwrap();
    assert!(stored.data.get("unknownTop").is_none(), "{:?}", stored.data);
}
