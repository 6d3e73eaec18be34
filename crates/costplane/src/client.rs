//! What the client subcommands (`sql`, `reprice`, `import`, `loadgen`, `report`)
//! share: finding the running server the way `serve` was configured
//! (`--config`, `COSTPLANE_HTTP_ADDR`), and telling a costplane answer from
//! anything else listening there.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use costplane_server::{Config, Overrides};

/// Where the running server is, read as `serve` reads it.
#[derive(Args, Clone)]
pub struct ServerArgs {
    /// TOML configuration file (the one `serve` uses).
    #[arg(long, env = "COSTPLANE_CONFIG")]
    pub config: Option<PathBuf>,
    /// The server's API listen address, as given to `serve` (default from
    /// the config file, else 127.0.0.1:8080).
    #[arg(long, env = "COSTPLANE_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,
    /// The server's API as a URL (beats --http-addr), e.g. https://costplane.internal.
    #[arg(long, env = "COSTPLANE_SERVER")]
    pub server: Option<String>,
    /// An API key, when the server has keys configured.
    #[arg(long, env = "COSTPLANE_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
}

impl ServerArgs {
    /// The configuration file's settings with this command's flags applied.
    pub fn config(&self, overrides: Overrides) -> anyhow::Result<Config> {
        let mut config = Config::load(self.config.as_deref())?;
        config.apply(Overrides { http_addr: self.http_addr, ..overrides })?;
        Ok(config)
    }

    /// The API's base URL (no trailing slash).
    pub fn base_url(&self, config: &Config) -> String {
        if let Some(url) = &self.server {
            return url.trim_end_matches('/').to_owned();
        }
        let mut addr = config.http.addr;
        // A server listening on every interface is reached on loopback.
        if addr.ip().is_unspecified() {
            addr.set_ip(if addr.is_ipv4() { [127, 0, 0, 1].into() } else { std::net::Ipv6Addr::LOCALHOST.into() });
        }
        format!("http://{addr}")
    }

    pub fn authorize(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.api_key {
            Some(key) => req.bearer_auth(key),
            None => req,
        }
    }
}

/// The JSON body of a costplane API answer; anything else (an HTML page, a
/// proxy's error, another service) is named for what it is.
pub async fn costplane_json(resp: reqwest::Response, base: &str) -> anyhow::Result<(reqwest::StatusCode, serde_json::Value)> {
    let status = resp.status();
    let is_json = is_json(resp.headers());
    let text = resp.text().await.unwrap_or_default();
    answer_json(status, is_json, &text, base)
}

/// [`costplane_json`] for an answer of the blocking client.
pub fn costplane_json_blocking(resp: reqwest::blocking::Response, base: &str) -> anyhow::Result<(reqwest::StatusCode, serde_json::Value)> {
    let status = resp.status();
    let is_json = is_json(resp.headers());
    let text = resp.text().unwrap_or_default();
    answer_json(status, is_json, &text, base)
}

fn is_json(headers: &reqwest::header::HeaderMap) -> bool {
    headers.get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.trim_start().starts_with("application/json"))
}

fn answer_json(
    status: reqwest::StatusCode,
    is_json: bool,
    text: &str,
    base: &str,
) -> anyhow::Result<(reqwest::StatusCode, serde_json::Value)> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(body) if is_json && body.is_object() => Ok((status, body)),
        _ => {
            let sample: String = text.chars().take(120).collect();
            bail!("that is not a costplane server at {base} (it answered {status}: {:?}); check --server / --http-addr", sample.trim())
        }
    }
}

impl ServerArgs {
    /// `GET path?query` on the server these arguments name, its JSON answer;
    /// an error answer fails with the server's message, saying `what` failed.
    /// Parameters whose value is `None` are left out.
    pub async fn get_json(&self, path: &str, query: &[(&str, Option<String>)], what: &str) -> anyhow::Result<serde_json::Value> {
        let config = self.config(Default::default())?;
        let base = self.base_url(&config);
        let url = format!("{base}{path}");
        let query: Vec<(&str, &String)> = query.iter().filter_map(|(k, v)| v.as_ref().map(|v| (*k, v))).collect();
        let req = self.authorize(reqwest::Client::new().get(&url).query(&query));
        let resp = req.send().await.with_context(|| format!("cannot reach {url}; is `costplane serve` running?"))?;
        let (status, body) = costplane_json(resp, &base).await?;
        if !status.is_success() {
            bail!("{what} failed ({status}): {}", body["error"].as_str().unwrap_or("unknown error"));
        }
        Ok(body)
    }
}

/// Whether `e` (or a cause) is a broken pipe: the reader went away, as
/// `costplane sql ... | head` does, which is not a failure.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(server: Option<&str>, http_addr: Option<&str>) -> ServerArgs {
        ServerArgs { config: None, http_addr: http_addr.map(|a| a.parse().unwrap()), server: server.map(Into::into), api_key: None }
    }

    #[test]
    fn the_server_is_found_as_serve_was_told() {
        let a = args(None, None);
        assert_eq!(a.base_url(&a.config(Overrides::default()).unwrap()), "http://127.0.0.1:8080");
        let a = args(None, Some("127.0.0.1:9090"));
        assert_eq!(a.base_url(&a.config(Overrides::default()).unwrap()), "http://127.0.0.1:9090");
        // A server listening on every interface is reached on loopback.
        let mut every = Config::default();
        every.http.addr = "0.0.0.0:9091".parse().unwrap();
        assert_eq!(args(None, None).base_url(&every), "http://127.0.0.1:9091");
        assert_eq!(args(Some("https://cp.example/"), None).base_url(&every), "https://cp.example");
    }

    #[test]
    fn broken_pipes_are_recognised_through_context() {
        let e = anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::BrokenPipe)).context("writing rows");
        assert!(is_broken_pipe(&e));
        assert!(!is_broken_pipe(&anyhow::anyhow!("other")));
    }
}
