//! What several test files of the binary share: a real `bmad2pf serve` on
//! a free loopback port, and an HTTP client to talk to it.
#![allow(dead_code)] // Each test binary uses a different part.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A `bmad2pf serve` process, killed when dropped.
pub struct Server {
    pub child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `bmad2pf serve ARGS --port 0` in `cwd` with `env`, and returns
/// once its log names the address it listens on.
pub fn serve(
    cwd: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> Result<Server, Box<dyn std::error::Error>> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_bmad2pf"))
        .current_dir(cwd)
        .arg("serve")
        .args(args)
        .args(["--port", "0"])
        .env("LOG_LEVEL", "info")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(at) = line.find("http://127.0.0.1:") {
                let address: String = line[at..]
                    .chars()
                    .take_while(|c| !c.is_whitespace() && *c != '"' && *c != ')')
                    .collect();
                let _ = tx.send(address.trim_end_matches('/').to_string());
            }
        }
    });
    // Generous: a loaded CI machine starts the binary slowly.
    let base = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(base) => base,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err("`bmad2pf serve` never said where it listens".into());
        }
    };
    Ok(Server { child, base })
}

/// Installs ring as this process's TLS crypto provider, for the clients
/// made without a configuration of their own (the tests' reqwest clients,
/// the MCP SDK's default one): reqwest is built without a provider, and
/// the workspace's rustls has ring only. Later calls change nothing.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A client builder for the tests' requests (see [`install_crypto_provider`]).
pub fn http_client_builder() -> reqwest::ClientBuilder {
    install_crypto_provider();
    reqwest::Client::builder()
}

/// A client for the tests' requests (see [`http_client_builder`]).
pub fn http_client() -> reqwest::Result<reqwest::Client> {
    http_client_builder().build()
}
