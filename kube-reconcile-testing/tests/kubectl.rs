//! `kubectl` against the embedded server's HTTP listener: apply, get, describe, delete, explain.
//!
//! Skips with a printed reason when no kubectl is found (build one with
//! `tools/envtest/build.sh kubectl`); fails instead when `KUBE_RECONCILE_REQUIRE_KUBECTL=1`.

use std::{path::Path, process::Command};

use kube::{
    Api, CustomResourceExt, Resource,
    runtime::events::{Event, EventType, Recorder, Reporter},
};
use kube_reconcile_test_support::{binaries, widget::Widget};
use kube_reconcile_testing::ApiServer;

struct Kubectl<'a> {
    bin: std::path::PathBuf,
    kubeconfig: &'a Path,
    cache: &'a Path,
}

impl Kubectl<'_> {
    async fn run(&self, args: &[&str]) -> (bool, String) {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--kubeconfig")
            .arg(self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.cache)
            .args(args);
        let out = tokio::task::spawn_blocking(move || cmd.output())
            .await
            .unwrap()
            .expect("run kubectl");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    async fn ok(&self, args: &[&str]) -> String {
        let (ok, text) = self.run(args).await;
        assert!(ok, "kubectl {} failed:\n{text}", args.join(" "));
        text
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_applies_gets_describes_deletes_and_explains() {
    let Some(bin) = binaries::find("kubectl") else {
        assert!(
            std::env::var("KUBE_RECONCILE_REQUIRE_KUBECTL").as_deref() != Ok("1"),
            "kubectl not found and KUBE_RECONCILE_REQUIRE_KUBECTL=1 (build it: tools/envtest/build.sh kubectl)"
        );
        eprintln!(
            "SKIPPED: kubectl not found (build it with tools/envtest/build.sh kubectl, or set KUBEBUILDER_ASSETS)"
        );
        return;
    };
    let server = ApiServer::new();
    let http = server.serve().await.unwrap();
    let dir = binaries::TempDir::new("kube-reconcile-kubectl");
    let kubeconfig = dir.0.join("kubeconfig");
    http.write_kubeconfig(&kubeconfig).unwrap();
    let cache = dir.0.join("cache");
    let kubectl = Kubectl {
        bin,
        kubeconfig: &kubeconfig,
        cache: &cache,
    };

    let crd_file = dir.0.join("crd.json");
    std::fs::write(
        &crd_file,
        serde_json::to_string_pretty(&Widget::crd()).unwrap(),
    )
    .unwrap();
    let out = kubectl
        .ok(&["apply", "-f", crd_file.to_str().unwrap()])
        .await;
    assert!(
        out.contains("widgets.test.kube-reconcile.dev created"),
        "{out}"
    );

    let widget_file = dir.0.join("widget.yaml");
    std::fs::write(
        &widget_file,
        "apiVersion: test.kube-reconcile.dev/v1\nkind: Widget\nmetadata:\n  name: w1\nspec:\n  size: 3\n",
    )
    .unwrap();
    let out = kubectl
        .ok(&["apply", "-f", widget_file.to_str().unwrap()])
        .await;
    assert!(
        out.contains("widget.test.kube-reconcile.dev/w1 created"),
        "{out}"
    );
    let out = kubectl
        .ok(&["apply", "-f", widget_file.to_str().unwrap()])
        .await;
    assert!(out.contains("unchanged"), "{out}");

    let out = kubectl.ok(&["get", "widgets"]).await;
    let header = out.lines().next().unwrap_or_default();
    assert!(
        header.contains("NAME") && header.contains("SIZE") && header.contains("PHASE"),
        "{out}"
    );
    assert!(
        out.lines().any(|l| l.starts_with("w1") && l.contains('3')),
        "{out}"
    );

    let out = kubectl.ok(&["get", "widget", "w1", "-o", "yaml"]).await;
    assert!(
        out.contains("size: 3") && out.contains("colour: blue"),
        "{out}"
    );

    let widgets: Api<Widget> = Api::default_namespaced(server.client());
    let w = widgets.get("w1").await.unwrap();
    let recorder = Recorder::new(
        server.client(),
        Reporter {
            controller: "widget-controller".into(),
            instance: None,
        },
    );
    let event = Event {
        type_: EventType::Normal,
        reason: "Configured".into(),
        note: Some("widget configured".into()),
        action: "Configure".into(),
        secondary: None,
    };
    recorder.publish(&event, &w.object_ref(&())).await.unwrap();
    let out = kubectl.ok(&["describe", "widget", "w1"]).await;
    assert!(
        out.contains("Events:") && out.contains("Configured") && out.contains("widget configured"),
        "{out}"
    );

    let out = kubectl.ok(&["explain", "widgets.spec"]).await;
    assert!(out.contains("size") && out.contains("colour"), "{out}");

    let out = kubectl.ok(&["delete", "widget", "w1"]).await;
    assert!(out.contains("deleted"), "{out}");
    let (found, out) = kubectl.run(&["get", "widget", "w1"]).await;
    assert!(!found && out.contains("NotFound"), "{out}");
}

/// An embedded server on HTTP with a kubeconfig and a kubectl cache for it; `None` (after
/// printing why) when no kubectl is found.
struct Session {
    server: ApiServer,
    _http: kube_reconcile_testing::HttpServer,
    dir: binaries::TempDir,
    bin: std::path::PathBuf,
    kubeconfig: std::path::PathBuf,
    cache: std::path::PathBuf,
}

impl Session {
    async fn start(name: &str) -> Option<Session> {
        let Some(bin) = binaries::find("kubectl") else {
            assert!(
                std::env::var("KUBE_RECONCILE_REQUIRE_KUBECTL").as_deref() != Ok("1"),
                "kubectl not found and KUBE_RECONCILE_REQUIRE_KUBECTL=1 (build it: tools/envtest/build.sh kubectl)"
            );
            eprintln!("SKIPPED: kubectl not found");
            return None;
        };
        let server = ApiServer::new();
        let http = server.serve().await.unwrap();
        let dir = binaries::TempDir::new(name);
        let kubeconfig = dir.0.join("kubeconfig");
        http.write_kubeconfig(&kubeconfig).unwrap();
        let cache = dir.0.join("cache");
        Some(Session {
            server,
            _http: http,
            dir,
            bin,
            kubeconfig,
            cache,
        })
    }

    fn kubectl(&self) -> Kubectl<'_> {
        Kubectl {
            bin: self.bin.clone(),
            kubeconfig: self.kubeconfig.as_path(),
            cache: self.cache.as_path(),
        }
    }

    /// Writes `text` to `name` in the session's directory; its path.
    fn file(&self, name: &str, text: &str) -> String {
        let path = self.dir.0.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_apply_validates_fields_strictly_unless_told_to_warn() {
    let Some(session) = Session::start("kube-reconcile-kubectl-strict").await else {
        return;
    };
    let kubectl = session.kubectl();
    let crd = session.file(
        "crd.json",
        &serde_json::to_string_pretty(&Widget::crd()).unwrap(),
    );
    kubectl.ok(&["apply", "-f", &crd]).await;

    let widget = session.file(
        "widget.yaml",
        "apiVersion: test.kube-reconcile.dev/v1\nkind: Widget\nmetadata:\n  name: w1\nspec:\n  size: 3\n  bogus: 1\n",
    );
    let (ok, out) = kubectl.run(&["apply", "-f", &widget]).await;
    assert!(!ok, "{out}");
    assert!(
        out.contains(r#"Widget in version "v1" cannot be handled as a Widget: strict decoding error: unknown field "spec.bogus""#),
        "{out}"
    );
    let out = kubectl
        .ok(&["apply", "--validate=warn", "-f", &widget])
        .await;
    assert!(
        out.contains(r#"Warning: unknown field "spec.bogus""#)
            && out.contains("widget.test.kube-reconcile.dev/w1 created"),
        "{out}"
    );
    let out = kubectl.ok(&["get", "widget", "w1", "-o", "yaml"]).await;
    // Only the last-applied annotation keeps it; the stored spec was pruned.
    assert!(
        out.contains("  size: 3") && !out.contains("  bogus: 1"),
        "{out}"
    );

    let cm = session.file(
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c1\ndata:\n  k: v\nbogus: 1\n",
    );
    let (ok, out) = kubectl.run(&["apply", "-f", &cm]).await;
    assert!(!ok, "{out}");
    assert!(
        out.contains(r#"ConfigMap in version "v1" cannot be handled as a ConfigMap: strict decoding error: unknown field "bogus""#),
        "{out}"
    );
    drop(session.server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_applies_and_explains_built_ins_from_their_served_schemas() {
    let Some(session) = Session::start("kube-reconcile-kubectl-builtins").await else {
        return;
    };
    let kubectl = session.kubectl();
    // Client-side apply of a built-in computes its patch from the served schemas.
    let deploy = |image: &str| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d1\nspec:\n  selector:\n    matchLabels: {{app: d}}\n  template:\n    metadata:\n      labels: {{app: d}}\n    spec:\n      containers:\n      - name: main\n        image: {image}\n      - name: side\n        image: busybox\n"
        )
    };
    let file = session.file("deploy.yaml", &deploy("nginx:1"));
    let out = kubectl.ok(&["apply", "-f", &file]).await;
    assert!(out.contains("deployment.apps/d1 created"), "{out}");
    let file = session.file("deploy.yaml", &deploy("nginx:2"));
    let out = kubectl.ok(&["apply", "-f", &file]).await;
    assert!(out.contains("deployment.apps/d1 configured"), "{out}");
    let out = kubectl
        .ok(&[
            "get",
            "deployment",
            "d1",
            "-o",
            "jsonpath={.spec.template.spec.containers[*].image}",
        ])
        .await;
    assert_eq!(out.trim(), "nginx:2 busybox");

    let out = kubectl.ok(&["explain", "configmap"]).await;
    assert!(
        out.contains("ConfigMap holds configuration data") && out.contains("binaryData"),
        "{out}"
    );
    let out = kubectl
        .ok(&["explain", "deployment.spec.template.spec.containers.image"])
        .await;
    assert!(out.contains("Container image name"), "{out}");
}
