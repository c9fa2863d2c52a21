use super::*;

#[test]
fn go_durations_parse_like_controller_runtime_reads_them() {
    assert_eq!(parse_go_duration("90s"), Some(Duration::from_secs(90)));
    assert_eq!(parse_go_duration("1m30s"), Some(Duration::from_secs(90)));
    assert_eq!(
        parse_go_duration("1500ms"),
        Some(Duration::from_millis(1500))
    );
    assert_eq!(parse_go_duration("2h"), Some(Duration::from_secs(7200)));
    assert_eq!(parse_go_duration("90"), None);
    assert_eq!(parse_go_duration("soon"), None);
    assert_eq!(parse_go_duration(""), None);
}

#[test]
fn the_kubeconfig_carries_the_ca_and_admin_credentials_inline() {
    let pki = Pki::generate().expect("pki");
    let yaml = kubeconfig_yaml("https://127.0.0.1:6443", &pki);
    let parsed = kube::config::Kubeconfig::from_yaml(&yaml).expect("valid kubeconfig");
    let cluster = parsed.clusters[0].cluster.as_ref().expect("cluster");
    assert_eq!(cluster.server.as_deref(), Some("https://127.0.0.1:6443"));
    assert!(cluster.certificate_authority_data.is_some());
    let user = parsed.auth_infos[0].auth_info.as_ref().expect("user");
    assert!(user.client_certificate_data.is_some());
    assert!(user.client_key_data.is_some());
}

#[test]
fn a_missing_binary_names_where_it_looked() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let err = runtime
        .block_on(
            ControlPlane::builder()
                .assets(Assets::dir("/nonexistent-envtest"))
                .start(),
        )
        .expect_err("no binaries there");
    let message = err.to_string();
    assert!(message.starts_with("etcd not found"), "{message}");
    assert!(message.contains("/nonexistent-envtest/etcd"), "{message}");
}
