//! Finding the Kubernetes binaries: the library's `Assets` search (`TEST_ASSET_*`,
//! `KUBEBUILDER_ASSETS`, the `tools/envtest/build.sh` cache), then `PATH`.

use std::path::PathBuf;

use kube_reconcile_testing::Assets;

/// The version the project's tools/envtest pins.
pub fn pinned_version() -> Option<String> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tools/envtest/versions.env"
    ))
    .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("KUBERNETES_VERSION="))
        .map(str::to_string)
}

/// Where `name` is: the harness's search, else `PATH` (fine for kubectl, which any
/// recent version of will do).
pub fn find(name: &str) -> Option<PathBuf> {
    Assets::default().find(name).ok().or_else(|| {
        std::env::split_paths(&std::env::var_os("PATH")?)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// A fresh temporary directory, removed on drop.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A new directory named after `prefix` and the process.
    pub fn new(prefix: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "{prefix}-{}-{}",
            std::process::id(),
            unique_suffix()
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn unique_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{SystemTime, UNIX_EPOCH};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_nanos()) ^ d.as_secs());
    nanos.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed) << 32)
}
