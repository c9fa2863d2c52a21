//! Arbitrary bytes, paths and headers: every answer is a typed `metav1.Status`.

use super::*;
use proptest::prelude::*;

const PREFIXES: &[&str] = &[
    "/api/v1/namespaces/default/configmaps",
    "/api/v1/namespaces",
    "/apis/apps/v1/namespaces/default/statefulsets",
    "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
    "/apis/events.k8s.io/v1/namespaces/default/events",
    "/api/v1/namespaces/default/events",
    "/apis",
    "/openapi/v3",
    "",
];
const CONTENT_TYPES: &[&str] = &[
    "application/json",
    "application/merge-patch+json",
    "application/json-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
    "text/plain",
];

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..120),
        Just(br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"},"data":{"a":"b"}}"#.to_vec()),
        Just(br#"[{"op":"replace","path":"/metadata/labels","value":{"a":"b"}}]"#.to_vec()),
        Just(br#"{"metadata":{"finalizers":null,"ownerReferences":[{"uid":7}]}}"#.to_vec()),
        Just(br#"{"apiVersion":"apiextensions.k8s.io/v1","kind":"CustomResourceDefinition","metadata":{"name":"a.b.c"},"spec":{}}"#.to_vec()),
        "[ -~]{0,80}".prop_map(String::into_bytes),
    ]
}

/// Headers a client might send, sensible or not.
fn headers() -> impl Strategy<Value = Vec<(String, String)>> {
    let name = prop_oneof![
        prop::sample::select(vec![
            "accept",
            "content-type",
            "content-length",
            "authorization",
            "user-agent",
            "x-kubernetes-pb",
            "transfer-encoding",
        ])
        .prop_map(str::to_owned),
        "[a-z][a-z0-9-]{0,12}",
    ];
    let value = prop_oneof![
        prop::sample::select(vec![
            "application/json",
            "application/json;as=Table;v=v1;g=meta.k8s.io",
            "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io",
            "application/vnd.kubernetes.protobuf",
            "application/yaml",
            "*/*",
            "0",
            "99999999999",
            "chunked",
        ])
        .prop_map(str::to_owned),
        "[ -~]{0,30}",
    ];
    prop::collection::vec((name, value), 0..4)
}

/// Paths into what exists (a CRD, a widget, a config map, their status) and around it.
const OBJECT_PATHS: &[&str] = &[
    "/apis/test.kube-reconcile.dev/v1/namespaces/default/widgets",
    "/apis/test.kube-reconcile.dev/v1/namespaces/default/widgets/w",
    "/apis/test.kube-reconcile.dev/v1/namespaces/default/widgets/w/status",
    "/apis/test.kube-reconcile.dev/v1/widgets",
    "/apis/test.kube-reconcile.dev/v1",
    "/apis/test.kube-reconcile.dev",
    "/api/v1/namespaces/default/configmaps/x",
    "/api/v1/namespaces/default/configmaps/x/status",
    "/api/v1/namespaces/default",
    "/api/v1/namespaces/default/status",
    "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.test.kube-reconcile.dev",
    "/api",
    "/version",
    "/healthz",
];

/// Every error answer is a `metav1.Status` whose code is the HTTP status.
async fn check_status_body(
    resp: http::Response<kube_reconcile_testing::Body>,
    what: &str,
) -> Result<u16, String> {
    let code = resp.status().as_u16();
    if !(200..600).contains(&code) {
        return Err(format!("{what} -> {code}"));
    }
    if code < 400 {
        // Success bodies may be watch streams: not read.
        return Ok(code);
    }
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .map_err(|e| format!("{what}: {e}"))?
        .to_bytes();
    let status: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| format!("{what} -> {code} with a body that is not JSON ({e}): {body:?}"))?;
    let ok = status["kind"] == "Status"
        && status["apiVersion"] == "v1"
        && status["status"] == "Failure"
        && status["code"] == code
        && status["message"].as_str().is_some_and(|m| !m.is_empty());
    if ok {
        Ok(code)
    } else {
        Err(format!("{what} -> {code} with {status}"))
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn any_request_gets_an_http_answer_and_never_a_panic(
        method in prop::sample::select(vec![
            "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE", "get", "BREW",
        ]),
        prefix in prop::sample::select([PREFIXES, OBJECT_PATHS].concat()),
        tail in prop::collection::vec("[a-zA-Z0-9._%-]{0,10}", 0..4),
        query in prop_oneof![
            4 => "(watch=true&timeoutSeconds=0|watch=1&timeoutSeconds=0&allowWatchBookmarks=true|limit=[0-9]{1,2}|limit=-1|continue=[a-zA-Z0-9]{0,12}|labelSelector=[a-z!=(), ]{0,12}|fieldSelector=[a-z.=,]{0,12}|resourceVersion=[0-9a-z]{0,4}|resourceVersionMatch=(Exact|NotOlderThan|x)|dryRun=(All|x)|fieldManager=x&force=(true|maybe)|propagationPolicy=(Foreground|Orphan|x)|gracePeriodSeconds=-?[0-9]{1,3}|sendInitialEvents=true&watch=true&timeoutSeconds=0){0,1}",
            1 => "[a-zA-Z0-9=&%._-]{0,40}",
        ],
        headers in headers(),
        ct in prop::sample::select(CONTENT_TYPES.to_vec()),
        body in body(),
    ) {
        let path = format!("{prefix}/{}?{query}", tail.join("/"));
        let mut builder = http::Request::builder().method(method).uri(&path).header("content-type", ct);
        for (name, value) in &headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let Ok(req) = builder.body(bytes::Bytes::from(body)) else {
            return Ok(());
        };
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
        let what = format!("{method} {path} {headers:?}");
        let answer = rt.block_on(async {
            let server = ApiServer::new();
            // Something to address: a custom resource with status, a config map.
            let widgets = with_widgets(&server).await;
            widgets.create(&PostParams::default(), &widget("w", 1)).await.unwrap();
            Api::<ConfigMap>::default_namespaced(server.client())
                .create(&PostParams::default(), &cm("x"))
                .await
                .unwrap();
            let resp = server.call(req).await;
            check_status_body(resp, &what).await
        });
        prop_assert!(answer.is_ok(), "{}", answer.unwrap_err());
    }
}
