//! A small custom resource for tests: `Widget` in `test.kube-reconcile.dev`.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A widget: something with a size and a colour.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "test.kube-reconcile.dev",
    version = "v1",
    kind = "Widget",
    namespaced
)]
#[kube(status = "WidgetStatus", shortname = "wd")]
#[kube(printcolumn = r#"{"name":"Size","type":"integer","jsonPath":".spec.size"}"#)]
#[kube(printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#)]
pub struct WidgetSpec {
    #[schemars(range(min = 1, max = 10))]
    /// How big it is (1 to 10).
    pub size: i32,
    #[serde(default = "default_colour")]
    /// Its colour (blue when unset).
    pub colour: String,
}

fn default_colour() -> String {
    "blue".into()
}

/// What the widget controller saw.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
pub struct WidgetStatus {
    /// The phase the controller reported.
    pub phase: Option<String>,
    /// The generation the controller last saw.
    pub observed_generation: Option<i64>,
}

/// A red widget of `size`.
pub fn widget(name: &str, size: i32) -> Widget {
    Widget::new(
        name,
        WidgetSpec {
            size,
            colour: "red".into(),
        },
    )
}

/// Installs the Widget CRD on `cx` and gives an `Api` in the test's namespace.
pub async fn widgets(cx: &crate::tier::Tier) -> kube::Api<Widget> {
    cx.install_crd(&<Widget as kube::CustomResourceExt>::crd())
        .await;
    cx.api()
}
