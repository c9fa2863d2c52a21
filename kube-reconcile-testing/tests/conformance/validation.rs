//! Schema keywords of custom resources and `fieldValidation` (Strict / Warn / Ignore) on
//! custom and built-in kinds: status codes, messages, causes and `Warning` headers.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube_reconcile_test_support::both_tiers;
use serde_json::{Value, json};

use kube_reconcile_test_support::tier::Tier;

/// A CRD whose `spec` exercises every value-validation keyword the servers check.
fn probe_crd(group: &str) -> CustomResourceDefinition {
    let mut props = json!({
        "code": {"type": "string", "pattern": "^[A-Z]{3}$"},
        "short": {"type": "string", "minLength": 2, "maxLength": 4},
        "i32": {"type": "integer", "format": "int32"},
        "date": {"type": "string", "format": "date"},
        "dt": {"type": "string", "format": "date-time"},
        "byte": {"type": "string", "format": "byte"},
        "uuid": {"type": "string", "format": "uuid"},
        "ipv4": {"type": "string", "format": "ipv4"},
        "ipv6": {"type": "string", "format": "ipv6"},
        "cidr": {"type": "string", "format": "cidr"},
        "host": {"type": "string", "format": "hostname"},
        "email": {"type": "string", "format": "email"},
        "uri": {"type": "string", "format": "uri"},
        "dur": {"type": "string", "format": "duration"},
        "exmin": {"type": "integer", "minimum": 0, "exclusiveMinimum": true},
        "exmax": {"type": "number", "maximum": 10, "exclusiveMaximum": true},
        "mult": {"type": "integer", "multipleOf": 3},
    });
    let more = json!({
        "props": {"type": "object", "minProperties": 1, "maxProperties": 2, "additionalProperties": {"type": "string"}},
        "set": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
        "map": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
            "items": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}, "v": {"type": "integer"}}}},
        "all": {"type": "integer", "allOf": [{"minimum": 2}, {"maximum": 5}]},
        "any": {"type": "string", "anyOf": [{"pattern": "^a"}, {"pattern": "^b"}]},
        "one": {"type": "integer", "oneOf": [{"minimum": 5}, {"maximum": 7}]},
        "nt": {"type": "string", "not": {"enum": ["x"]}},
        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
        "emb": {"type": "object", "x-kubernetes-embedded-resource": true,
            "properties": {"spec": {"type": "object", "properties": {"x": {"type": "string"}}}}},
        "nested": {"type": "object", "properties": {"list": {"type": "array",
            "items": {"type": "object", "properties": {"a": {"type": "string"}}}}}},
    });
    if let (Some(p), Value::Object(m)) = (props.as_object_mut(), more) {
        p.extend(m);
    }
    let schema =
        json!({"type": "object", "properties": {"spec": {"type": "object", "properties": props}}});
    serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("probes.{group}")},
        "spec": {
            "group": group,
            "names": {"kind": "Probe", "plural": "probes", "singular": "probe", "listKind": "ProbeList"},
            "scope": "Namespaced",
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": schema}}],
        },
    }))
    .expect("a CRD")
}

/// One raw answer: status, `Warning` header texts and the JSON body.
struct Reply {
    code: u16,
    /// The raw `Warning` header values.
    headers: Vec<String>,
    /// Their texts.
    warnings: Vec<String>,
    body: Value,
}

impl Reply {
    fn message(&self) -> &str {
        self.body["message"].as_str().unwrap_or_default()
    }
}

async fn send(cx: &Tier, method: &str, path: &str, content_type: &str, body: &Value) -> Reply {
    send_raw(cx, method, path, content_type, body.to_string()).await
}

async fn send_raw(cx: &Tier, method: &str, path: &str, content_type: &str, body: String) -> Reply {
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::CONTENT_TYPE, content_type)
        .body(kube::client::Body::from(body.into_bytes()))
        .expect("request");
    let response = cx.client().send(request).await.expect("send");
    let code = response.status().as_u16();
    let headers: Vec<String> = response
        .headers()
        .get_all(http::header::WARNING)
        .iter()
        .map(|v| v.to_str().expect("ascii warning").to_string())
        .collect();
    let warnings = headers
        .iter()
        .map(|raw| {
            let text = raw.strip_prefix("299 - ").expect("a 299 warning");
            serde_json::from_str::<String>(text).expect("a quoted warning text")
        })
        .collect();
    let bytes = http_body_util::BodyExt::collect(response.into_body())
        .await
        .expect("body")
        .to_bytes();
    Reply {
        code,
        headers,
        warnings,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

/// Installs the probe CRD in a group of the test's own; the collection path and group.
async fn probes(cx: &Tier) -> (String, String) {
    let group = format!("{}.validation.test", cx.namespace());
    cx.install_crd(&probe_crd(&group)).await;
    (
        format!("/apis/{group}/v1/namespaces/{}/probes", cx.namespace()),
        group,
    )
}

fn probe(group: &str, name: &str, spec: &Value) -> Value {
    json!({"apiVersion": format!("{group}/v1"), "kind": "Probe", "metadata": {"name": name}, "spec": spec})
}

/// The causes as sorted `field | reason | message` lines (the real server's order follows
/// Go map iteration, so only the set is stable).
fn causes(body: &Value) -> Vec<String> {
    let mut out: Vec<String> = body["details"]["causes"]
        .as_array()
        .expect("causes")
        .iter()
        .map(|c| {
            format!(
                "{} | {} | {}",
                c["field"].as_str().unwrap(),
                c["reason"].as_str().unwrap(),
                c["message"].as_str().unwrap()
            )
        })
        .collect();
    out.sort();
    out
}

both_tiers! {
    async fn schema_keywords_fail_with_each_field_path_and_the_real_wording(cx: Tier) {
        let (path, group) = probes(&cx).await;
        let good = probe(&group, "good", &json!({
            "code": "ABC", "short": "abc", "i32": 7, "date": "2020-02-29", "dt": "2020-01-01T10:00:00Z",
            "byte": "aGk=", "uuid": "0123456789abcdef0123456789ABCDEF", "ipv4": "10.0.0.1", "ipv6": "fe80::1",
            "cidr": "10.0.0.0/8", "host": "a.b-c.de", "email": "A <a@b.c>", "uri": "https://x/y", "dur": "1h30m",
            "exmin": 1, "exmax": 9.5, "mult": 6, "props": {"a": "b"}, "set": ["a", "b"],
            "map": [{"name": "x"}, {"name": "y"}], "all": 3, "any": "bee", "one": 4, "nt": "y",
        }));
        let ok = send(&cx, "POST", &path, "application/json", &good).await;
        assert_eq!(ok.code, 201, "{}", ok.body);

        let bad = probe(&group, "bad", &json!({
            "code": "abcd", "short": "xxxxxx", "i32": 3_000_000_000_i64, "date": "2020-13-01", "dt": "yesterday",
            "byte": "!!!", "uuid": "nope", "ipv4": "1.2.3", "ipv6": "zz", "cidr": "1.2.3.4", "host": "-bad-",
            "email": "x", "uri": "::", "dur": "5 parsecs", "exmin": 0, "exmax": 10, "mult": 4,
            "props": {"a": "1", "b": "2", "c": "3"}, "set": ["a", "a"], "map": [{"name": "x"}, {"name": "x", "v": 1}],
            "all": 9, "any": "c", "one": 6, "nt": "x",
        }));
        let r = send(&cx, "POST", &path, "application/json", &bad).await;
        assert_eq!((r.code, r.body["reason"].as_str()), (422, Some("Invalid")), "{}", r.body);
        let expected = [
            "<nil> | FieldValueInvalid | Invalid value: \"\": \"spec.all\" must validate all the schemas (allOf)",
            "<nil> | FieldValueInvalid | Invalid value: \"\": \"spec.any\" must validate at least one schema (anyOf)",
            "<nil> | FieldValueInvalid | Invalid value: \"\": \"spec.nt\" must not validate the schema (not)",
            "<nil> | FieldValueInvalid | Invalid value: \"\": \"spec.one\" must validate one and only one schema (oneOf). Found 2 valid alternatives",
            "<nil> | FieldValueInvalid | Invalid value: \"\": Checked value must be of type integer with format int32 in spec.i32",
            "spec.all | FieldValueInvalid | Invalid value: 9: spec.all in body should be less than or equal to 5",
            "spec.any | FieldValueInvalid | Invalid value: \"c\": spec.any in body should match '^a'",
            "spec.byte | FieldValueTypeInvalid | Invalid value: \"!!!\": spec.byte in body must be of type byte: \"!!!\"",
            "spec.cidr | FieldValueTypeInvalid | Invalid value: \"1.2.3.4\": spec.cidr in body must be of type cidr: \"1.2.3.4\"",
            "spec.code | FieldValueInvalid | Invalid value: \"abcd\": spec.code in body should match '^[A-Z]{3}$'",
            "spec.date | FieldValueTypeInvalid | Invalid value: \"2020-13-01\": spec.date in body must be of type date: \"2020-13-01\"",
            "spec.dt | FieldValueTypeInvalid | Invalid value: \"yesterday\": spec.dt in body must be of type date-time: \"yesterday\"",
            "spec.dur | FieldValueTypeInvalid | Invalid value: \"5 parsecs\": spec.dur in body must be of type duration: \"5 parsecs\"",
            "spec.email | FieldValueTypeInvalid | Invalid value: \"x\": spec.email in body must be of type email: \"x\"",
            "spec.exmax | FieldValueInvalid | Invalid value: 10: spec.exmax in body should be less than 10",
            "spec.exmin | FieldValueInvalid | Invalid value: 0: spec.exmin in body should be greater than 0",
            "spec.host | FieldValueTypeInvalid | Invalid value: \"-bad-\": spec.host in body must be of type hostname: \"-bad-\"",
            "spec.ipv4 | FieldValueTypeInvalid | Invalid value: \"1.2.3\": spec.ipv4 in body must be of type ipv4: \"1.2.3\"",
            "spec.ipv6 | FieldValueTypeInvalid | Invalid value: \"zz\": spec.ipv6 in body must be of type ipv6: \"zz\"",
            "spec.map[1] | FieldValueDuplicate | Duplicate value: {\"name\":\"x\"}",
            "spec.mult | FieldValueInvalid | Invalid value: 4: spec.mult in body should be a multiple of 3",
            "spec.props | FieldValueTooMany | Too many: 3: must have at most 2 items",
            "spec.set[1] | FieldValueDuplicate | Duplicate value: \"a\"",
            "spec.short | FieldValueTooLong | Too long: may not be more than 4 bytes",
            "spec.uri | FieldValueTypeInvalid | Invalid value: \"::\": spec.uri in body must be of type uri: \"::\"",
            "spec.uuid | FieldValueTypeInvalid | Invalid value: \"nope\": spec.uuid in body must be of type uuid: \"nope\"",
        ];
        assert_eq!(causes(&r.body), expected, "{}", r.body);
        assert!(r.message().starts_with(&format!("Probe.{group} \"bad\" is invalid: [")), "{}", r.message());
        // Duplicates come after every schema error, as apiextensions checks list types last
        // (in property order, which on the real server is Go's map order).
        let reasons: Vec<&str> = r.body["details"]["causes"].as_array().unwrap().iter().map(|c| c["reason"].as_str().unwrap()).collect();
        assert_eq!(reasons[reasons.len() - 2..], ["FieldValueDuplicate", "FieldValueDuplicate"], "{}", r.message());

        let few = send(&cx, "POST", &path, "application/json", &probe(&group, "few", &json!({"short": "x", "props": {}}))).await;
        assert_eq!(causes(&few.body), [
            "spec.props | FieldValueInvalid | Invalid value: 0: spec.props in body should have at least 1 properties",
            "spec.short | FieldValueInvalid | Invalid value: \"x\": spec.short in body should be at least 2 chars long",
        ], "{}", few.body);
    }

    async fn strict_field_validation_rejects_unknown_and_duplicate_fields(cx: Tier) {
        let (path, group) = probes(&cx).await;
        // Raw text: serde_json cannot build an object with a repeated key.
        let body = format!(
            r#"{{"apiVersion":"{group}/v1","kind":"Probe","metadata":{{"name":"s","bogus":1}},"spec":{{"foo":1,"code":"ABC","code":"ABD","free":{{"x":1}},"emb":{{"apiVersion":"v1","kind":"X","metadata":{{"name":"n","junk":1}},"spec":{{"x":"a","z":1}}}},"nested":{{"list":[{{"a":"b","q":1}}]}}}},"top":1}}"#
        );
        let strict = send_raw(&cx, "POST", &format!("{path}?fieldValidation=Strict"), "application/json", body.clone()).await;
        assert_eq!((strict.code, strict.body["reason"].as_str()), (400, Some("BadRequest")), "{}", strict.body);
        assert_eq!(
            strict.message(),
            r#"Probe in version "v1" cannot be handled as a Probe: strict decoding error: duplicate field "spec.code", unknown field "metadata.bogus", unknown field "spec.emb.spec.z", unknown field "spec.foo", unknown field "spec.nested.list[0].q", unknown field "top", unknown field "spec.emb.metadata.junk""#
        );
        let warned = send_raw(&cx, "POST", &path, "application/json", body).await;
        assert_eq!(warned.code, 201, "{}", warned.body);
        assert_eq!(warned.headers, [
            r#"299 - "duplicate field \"spec.code\"""#,
            r#"299 - "unknown field \"metadata.bogus\"""#,
            r#"299 - "unknown field \"spec.emb.spec.z\"""#,
            r#"299 - "unknown field \"spec.foo\"""#,
            r#"299 - "unknown field \"spec.nested.list[0].q\"""#,
            r#"299 - "unknown field \"top\"""#,
            r#"299 - "unknown field \"spec.emb.metadata.junk\"""#,
        ]);

        let ignored = send(&cx, "POST", &format!("{path}?fieldValidation=Ignore"), "application/json", &probe(&group, "i", &json!({"foo": 1}))).await;
        assert_eq!((ignored.code, ignored.warnings.len()), (201, 0), "{}", ignored.body);
        assert!(ignored.body["spec"].get("foo").is_none(), "pruned: {}", ignored.body);

        let bogus = send(&cx, "POST", &format!("{path}?fieldValidation=Bogus"), "application/json", &probe(&group, "b", &json!({}))).await;
        assert_eq!(bogus.code, 422);
        assert_eq!(bogus.message(), r#"CreateOptions.meta.k8s.io "" is invalid: fieldValidation: Unsupported value: "Bogus": supported values: "", "Ignore", "Strict", "Warn""#);
        assert_eq!((bogus.body["details"]["group"].as_str(), bogus.body["details"]["kind"].as_str()), (Some("meta.k8s.io"), Some("CreateOptions")), "{}", bogus.body);
        assert!(bogus.body["details"].get("name").is_none(), "{}", bogus.body);

        let patched = send(&cx, "PATCH", &format!("{path}/i?fieldValidation=Strict"), "application/merge-patch+json", &json!({"spec": {"foo2": 1}})).await;
        assert_eq!((patched.code, patched.body["reason"].as_str()), (422, Some("Invalid")), "{}", patched.body);
        assert!(patched.message().starts_with(r#" "" is invalid: patch: Invalid value: "{\"apiVersion\":"#), "{}", patched.message());
        assert!(patched.message().ends_with(r#"": strict decoding error: unknown field "spec.foo2""#), "{}", patched.message());
        assert_eq!(patched.body["details"]["causes"][0]["field"], "patch");
        let warned = send(&cx, "PATCH", &format!("{path}/i"), "application/merge-patch+json", &json!({"spec": {"foo2": 1}})).await;
        assert_eq!((warned.code, warned.warnings.as_slice()), (200, [r#"unknown field "spec.foo2""#.to_string()].as_slice()));

        // Server-side apply fails on unknown fields whatever fieldValidation says.
        let applied = send(&cx, "PATCH", &format!("{path}/i?fieldManager=m&fieldValidation=Ignore"), "application/apply-patch+yaml",
            &probe(&group, "i", &json!({"foo4": 1, "code": "ABC"}))).await;
        assert_eq!(applied.code, 500, "{}", applied.body);
        assert_eq!(applied.message(), format!("failed to create typed patch object (/i; {group}/v1, Kind=Probe): .spec.foo4: field not declared in schema"));
    }

    async fn field_validation_covers_built_in_kinds(cx: Tier) {
        let path = format!("/api/v1/namespaces/{}/configmaps", cx.namespace());
        let body = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","bogus":1,"ownerReferences":[{"apiVersion":"v1","kind":"X","name":"n","uid":"u","zz":1}]},"data":{"k":"v","k":"w"},"top":{"x":1}}"#;
        let strict = send_raw(&cx, "POST", &format!("{path}?fieldValidation=Strict"), "application/json", body.to_string()).await;
        assert_eq!(strict.code, 400, "{}", strict.body);
        assert_eq!(
            strict.message(),
            r#"ConfigMap in version "v1" cannot be handled as a ConfigMap: strict decoding error: unknown field "metadata.bogus", unknown field "metadata.ownerReferences[0].zz", duplicate field "data.k", unknown field "top""#
        );

        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "bogus": 1}, "data": {"k": "v"}, "top": 1});
        let made = send(&cx, "POST", &path, "application/json", &cm).await;
        assert_eq!(made.code, 201, "{}", made.body);
        assert_eq!(made.warnings, [r#"unknown field "metadata.bogus""#, r#"unknown field "top""#]);
        assert!(made.body.get("top").is_none(), "dropped: {}", made.body);

        let smp = send(&cx, "PATCH", &format!("{path}/a?fieldValidation=Strict"), "application/strategic-merge-patch+json", &json!({"top3": 1, "data": {"z": "1"}})).await;
        assert_eq!(smp.code, 422, "{}", smp.body);
        assert_eq!(smp.message(), r#" "" is invalid: patch: Invalid value: "map[data:map[z:1] top3:1]": strict decoding error: unknown field "top3""#);
        assert_eq!(smp.body["details"], json!({"causes": [{
            "reason": "FieldValueInvalid",
            "message": r#"Invalid value: "map[data:map[z:1] top3:1]": strict decoding error: unknown field "top3""#,
            "field": "patch",
        }]}));
        let json_patch = send(&cx, "PATCH", &format!("{path}/a?fieldValidation=Strict"), "application/json-patch+json", &json!([{"op": "add", "path": "/top4", "value": 1}])).await;
        assert_eq!(json_patch.code, 422, "{}", json_patch.body);
        assert!(json_patch.message().ends_with(r#"": strict decoding error: unknown field "top4""#), "{}", json_patch.message());

        let put = send(&cx, "PUT", &format!("{path}/a?fieldValidation=Strict"), "application/json", &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "top6": 1})).await;
        assert_eq!(put.code, 400);
        assert_eq!(put.message(), r#"ConfigMap in version "v1" cannot be handled as a ConfigMap: strict decoding error: unknown field "top6""#);

        let apply = send(&cx, "PATCH", &format!("{path}/a?fieldManager=m"), "application/apply-patch+yaml", &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "top5": 1})).await;
        assert_eq!(apply.code, 500);
        assert_eq!(apply.message(), "failed to create typed patch object (/a; /v1, Kind=ConfigMap): .top5: field not declared in schema");
        let pods = format!("/api/v1/namespaces/{}/pods/pp?fieldManager=m", cx.namespace());
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "pp", "namespace": cx.namespace()},
            "spec": {"containers": [{"name": "c", "image": "i", "zz": 1}]}});
        let apply = send(&cx, "PATCH", &pods, "application/apply-patch+yaml", &pod).await;
        assert_eq!(apply.code, 500, "{}", apply.body);
        assert_eq!(apply.message(), format!(r#"failed to create typed patch object ({}/pp; /v1, Kind=Pod): .spec.containers[name="c"].zz: field not declared in schema"#, cx.namespace()));

        let deployments = format!("/apis/apps/v1/namespaces/{}/deployments?fieldValidation=Strict", cx.namespace());
        let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {
            "replicas": 1, "selector": {"matchLabels": {"a": "b"}},
            "template": {"metadata": {"labels": {"a": "b"}, "junk": 1}, "spec": {"containers": [{"name": "c", "image": "i", "bad": 1, "ports": [{"containerPort": 80, "zzz": 2}]}]}}}});
        let r = send(&cx, "POST", &deployments, "application/json", &d).await;
        assert_eq!(r.code, 400, "{}", r.body);
        assert_eq!(r.message(), r#"Deployment in version "v1" cannot be handled as a Deployment: strict decoding error: unknown field "spec.template.metadata.junk", unknown field "spec.template.spec.containers[0].bad", unknown field "spec.template.spec.containers[0].ports[0].zzz""#);
    }

    async fn duplicate_keys_in_an_apply_follow_field_validation(cx: Tier) {
        let (path, group) = probes(&cx).await;
        let body = format!("{{\"apiVersion\":\"{group}/v1\",\"kind\":\"Probe\",\"metadata\":{{\"name\":\"c\"}},\n\"spec\":{{\"code\":\"ABC\",\n\"code\":\"ABD\"}}}}");
        let strict = send_raw(&cx, "PATCH", &format!("{path}/c?fieldManager=m&fieldValidation=Strict"), "application/apply-patch+yaml", body.clone()).await;
        assert_eq!(strict.code, 400, "{}", strict.body);
        assert_eq!(strict.message(), "error strict decoding patch: error converting YAML to JSON: yaml: unmarshal errors:\n  line 3: key \"code\" already set in map");
        let warned = send_raw(&cx, "PATCH", &format!("{path}/c?fieldManager=m"), "application/apply-patch+yaml", body).await;
        assert_eq!(warned.code, 201, "{}", warned.body);
        assert_eq!(warned.headers, [r#"299 - "line 3: key \"code\" already set in map""#]);
    }
}
