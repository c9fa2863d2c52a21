//! Finding the `kube-apiserver`, `etcd` and `kubectl` binaries.

use std::path::{Path, PathBuf};

use super::EnvtestError;

/// Where the harness finds `kube-apiserver`, `etcd` and `kubectl`.
///
/// The default search follows controller-runtime's envtest conventions, so binaries
/// downloaded with `setup-envtest` work without Go, then falls back to the directory that
/// this project's `tools/envtest/build.sh` fills:
///
/// 1. `TEST_ASSET_KUBE_APISERVER`, `TEST_ASSET_ETCD`, `TEST_ASSET_KUBECTL`: the path of
///    one binary each;
/// 2. `KUBEBUILDER_ASSETS`: a directory holding all three;
/// 3. `KUBE_RECONCILE_ENVTEST_DIR`: the output directory of `tools/envtest/build.sh`;
/// 4. `$XDG_CACHE_HOME/kube-reconcile/envtest/<version>` (or `~/.cache/...`), newest
///    version first — where `tools/envtest/build.sh` puts its builds by default.
///
/// `PATH` is not searched: a distribution's `etcd` is often too old for a current
/// kube-apiserver.
///
/// # Default
///
/// The search above. [`Assets::dir`] searches one directory only.
///
/// # Examples
///
/// ```
/// use kube_reconcile_testing::{Assets, EnvtestError};
///
/// let assets = Assets::dir("/nonexistent");
/// let err = assets.find("etcd").unwrap_err();
/// assert!(matches!(err, EnvtestError::BinaryNotFound { .. }));
/// assert!(err.to_string().contains("/nonexistent/etcd"));
/// ```
#[derive(Clone, Debug, Default)]
pub struct Assets {
    dir: Option<PathBuf>,
}

impl Assets {
    /// Searches only `dir`.
    #[must_use]
    pub fn dir(dir: impl Into<PathBuf>) -> Self {
        Assets {
            dir: Some(dir.into()),
        }
    }

    /// The path of the binary `name` (`kube-apiserver`, `etcd` or `kubectl`).
    ///
    /// # Errors
    ///
    /// [`EnvtestError::BinaryNotFound`] naming every place searched.
    pub fn find(&self, name: &str) -> Result<PathBuf, EnvtestError> {
        let candidates = self.candidates(name);
        if let Some(found) = candidates.iter().find(|p| is_executable(p)) {
            return Ok(found.clone());
        }
        let mut searched: Vec<String> =
            candidates.iter().map(|p| p.display().to_string()).collect();
        if self.dir.is_none() {
            searched.insert(0, format!("${}", asset_variable(name)));
            if std::env::var_os("KUBEBUILDER_ASSETS").is_none() {
                searched.push("$KUBEBUILDER_ASSETS (unset)".into());
            }
        }
        Err(EnvtestError::BinaryNotFound {
            name: name.to_string(),
            searched: searched.join(", "),
        })
    }

    /// Every path where `name` is looked for, in order.
    pub fn candidates(&self, name: &str) -> Vec<PathBuf> {
        if let Some(dir) = &self.dir {
            return vec![dir.join(name)];
        }
        let mut paths = Vec::new();
        if let Some(path) = std::env::var_os(asset_variable(name)) {
            paths.push(PathBuf::from(path));
        }
        for var in ["KUBEBUILDER_ASSETS", "KUBE_RECONCILE_ENVTEST_DIR"] {
            if let Some(dir) = std::env::var_os(var) {
                paths.push(PathBuf::from(dir).join(name));
            }
        }
        if let Some(cache) = build_cache() {
            paths.extend(
                versions_newest_first(&cache)
                    .into_iter()
                    .map(|d| d.join(name)),
            );
        }
        paths
    }
}

/// `TEST_ASSET_KUBE_APISERVER` for `kube-apiserver`, as controller-runtime names them.
fn asset_variable(name: &str) -> String {
    format!("TEST_ASSET_{}", name.to_ascii_uppercase().replace('-', "_"))
}

/// `$XDG_CACHE_HOME/kube-reconcile/envtest`, else `~/.cache/kube-reconcile/envtest`.
fn build_cache() -> Option<PathBuf> {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(cache.join("kube-reconcile").join("envtest"))
}

/// The `v<major>.<minor>.<patch>` subdirectories of `dir`, newest first.
fn versions_newest_first(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut versions: Vec<((u64, u64, u64), PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| Some((parse_version(e.file_name().to_str()?)?, e.path())))
        .collect();
    versions.sort_by_key(|v| std::cmp::Reverse(v.0));
    versions.into_iter().map(|(_, p)| p).collect()
}

fn parse_version(name: &str) -> Option<(u64, u64, u64)> {
    let mut parts = name.strip_prefix('v')?.splitn(3, '.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    let patch = parts.next()?.parse().ok()?;
    Some((major, minor, patch))
}

fn is_executable(path: &Path) -> bool {
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        meta.is_file() && meta.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        meta.is_file()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asset_variables_follow_controller_runtime_names() {
        assert_eq!(
            asset_variable("kube-apiserver"),
            "TEST_ASSET_KUBE_APISERVER"
        );
        assert_eq!(asset_variable("etcd"), "TEST_ASSET_ETCD");
    }

    #[test]
    fn versions_parse_only_when_they_are_release_tags() {
        assert_eq!(parse_version("v1.37.2"), Some((1, 37, 2)));
        assert_eq!(parse_version("v1.9.10"), Some((1, 9, 10)));
        assert_eq!(parse_version("1.37.2"), None);
        assert_eq!(parse_version("v1.37"), None);
        assert_eq!(parse_version("latest"), None);
    }

    #[test]
    fn cached_versions_are_searched_newest_first_by_number_not_by_name() {
        let dir = std::env::temp_dir().join(format!(
            "kube-reconcile-assets-test-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        for v in ["v1.9.0", "v1.37.2", "v1.10.1", "notes"] {
            std::fs::create_dir_all(dir.join(v)).expect("create version dir");
        }
        let found: Vec<String> = versions_newest_first(&dir)
            .iter()
            .filter_map(|p| p.file_name()?.to_str().map(str::to_string))
            .collect();
        std::fs::remove_dir_all(&dir).expect("remove test dir");
        assert_eq!(found, ["v1.37.2", "v1.10.1", "v1.9.0"]);
    }

    #[test]
    fn a_single_directory_is_the_only_candidate() {
        let assets = Assets::dir("/opt/k8s");
        assert_eq!(assets.candidates("etcd"), [PathBuf::from("/opt/k8s/etcd")]);
    }
}
