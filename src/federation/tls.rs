//! TLS for federation: the listener's certificate, the outbound client's
//! trust (system roots plus configured CAs), and self-signed pairs for
//! development (`plexus tls self-signed`).

use std::path::Path;

use crate::config::FederationConfig;

/// Installs the process-wide rustls crypto provider (aws-lc-rs), once.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// The outbound HTTP client for federation requests.
pub fn client(
    config: &FederationConfig,
    dns: std::sync::Arc<super::resolve::Dns>,
    user_agent: &str,
) -> Result<reqwest::Client, String> {
    install_crypto_provider();
    let mut builder = reqwest::Client::builder()
        .user_agent(user_agent)
        .dns_resolver(dns)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(std::time::Duration::from_secs(10))
        .timeout(std::time::Duration::from_secs(60))
        .pool_idle_timeout(std::time::Duration::from_secs(60))
        .pool_max_idle_per_host(2);
    for path in &config.extra_ca_files {
        let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("{} holds no PEM certificate: {e}", path.display()))?;
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    if !config.verify_tls {
        tracing::warn!("federation.verify_tls is off: other servers' certificates are not checked");
        builder = builder.tls_danger_accept_invalid_certs(true);
    }
    builder.build().map_err(|e| format!("cannot build the federation HTTP client: {e}"))
}

/// Writes a self-signed certificate for `names` and its key as PEM files
/// (`<dir>/federation.crt`, `<dir>/federation.key`, the key mode 0600).
pub fn write_self_signed(names: Vec<String>, dir: &Path) -> Result<(std::path::PathBuf, std::path::PathBuf), String> {
    let certified = rcgen::generate_simple_self_signed(names).map_err(|e| format!("cannot make a certificate: {e}"))?;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let cert_path = dir.join("federation.crt");
    let key_path = dir.join("federation.key");
    std::fs::write(&cert_path, certified.cert.pem())
        .map_err(|e| format!("cannot write {}: {e}", cert_path.display()))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    use std::io::Write;
    options
        .open(&key_path)
        .and_then(|mut f| f.write_all(certified.signing_key.serialize_pem().as_bytes()))
        .map_err(|e| format!("cannot write {}: {e}", key_path.display()))?;
    Ok((cert_path, key_path))
}
