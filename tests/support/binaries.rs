//! Finding the Kubernetes binaries the project builds (tools/envtest/build.sh) or the user provides.

use std::path::PathBuf;

/// The version the project's tools/envtest pins.
pub fn pinned_version() -> Option<String> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tools/envtest/versions.env"
    ))
    .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("KUBERNETES_VERSION="))
        .map(str::to_string)
}

/// Where `name` is: `$KUBEBUILDER_ASSETS`, the project's build cache, or `PATH`.
pub fn find(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(assets) = std::env::var_os("KUBEBUILDER_ASSETS") {
        dirs.push(assets.into());
    }
    if let Some(dir) = std::env::var_os("KUBE_RECONCILE_ENVTEST_DIR") {
        dirs.push(dir.into());
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")));
    if let (Some(cache), Some(version)) = (cache, pinned_version()) {
        dirs.push(cache.join("kube-reconcile").join("envtest").join(version));
    }
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

/// A fresh temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "{prefix}-{}-{}",
            std::process::id(),
            fastrand_suffix()
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

fn fastrand_suffix() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_nanos()) ^ d.as_secs())
}
