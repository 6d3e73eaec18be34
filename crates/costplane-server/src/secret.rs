//! Secrets in the configuration (API keys, ingest keys, passwords, and
//! notification URLs, whose paths carry tokens).
//!
//! A [`Secret`] never shows its value through `Debug`, `Display` or
//! `Serialize` (all print `[redacted]`), so a configuration logged or dumped
//! whole leaks nothing; code that needs the value asks for it by name with
//! [`Secret::expose`]. A secret may be written in the file, or referenced:
//! `key_file` (the first line of a file) or `key_env` (an environment
//! variable), resolved once when the configuration loads.

use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

const REDACTED: &str = "[redacted]";

/// A secret string.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for comparing or sending; never for logging.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret(value.to_owned())
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(REDACTED)
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// A URL whose path or query may carry a token (Slack incoming webhooks,
/// webhook receivers, Alertmanager behind a token). `Debug`, `Display` and
/// `Serialize` show `scheme://host[:port]/[redacted]`, enough to tell
/// targets apart in logs; [`SecretUrl::expose`] gives the whole URL.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretUrl(String);

impl SecretUrl {
    pub fn new(value: impl Into<String>) -> Self {
        SecretUrl(value.into())
    }

    /// The whole URL, for sending to it; never for logging.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `scheme://host[:port]`: what logs and errors may name.
    pub fn shown(&self) -> String {
        match reqwest::Url::parse(&self.0) {
            Ok(u) => format!("{}://{}{}", u.scheme(), u.host_str().unwrap_or(""), u.port().map(|p| format!(":{p}")).unwrap_or_default()),
            Err(_) => "<not a URL>".to_owned(),
        }
    }
}

impl From<&str> for SecretUrl {
    fn from(value: &str) -> Self {
        SecretUrl(value.to_owned())
    }
}

impl From<String> for SecretUrl {
    fn from(value: String) -> Self {
        SecretUrl(value)
    }
}

impl std::fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{REDACTED}", self.shown())
    }
}

impl std::fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{REDACTED}", self.shown())
    }
}

impl Serialize for SecretUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SecretUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(SecretUrl)
    }
}

/// Resolves a secret given inline, in a file or in an environment variable:
/// exactly one of the three must be set. `what` names the field in errors.
pub fn resolve(what: &str, inline: Option<&Secret>, file: Option<&Path>, env: Option<&str>) -> Result<Secret, String> {
    match (inline.filter(|s| !s.is_empty()), file, env) {
        (Some(s), None, None) => Ok(s.clone()),
        (None, Some(path), None) => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("{what}: cannot read key_file {}: {e}", path.display()))?;
            let first = text.lines().next().unwrap_or("").trim();
            if first.is_empty() {
                return Err(format!("{what}: key_file {} is empty", path.display()));
            }
            Ok(Secret::new(first))
        }
        (None, None, Some(name)) => match std::env::var(name) {
            Ok(v) if !v.trim().is_empty() => Ok(Secret::new(v.trim())),
            _ => Err(format!("{what}: the environment variable {name} (key_env) is not set")),
        },
        (None, None, None) => Err(format!("{what}: set one of key, key_file or key_env")),
        _ => Err(format!("{what}: set only one of key, key_file or key_env")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_value_never_prints() {
        let s = Secret::new("tenant-acme-0123456789");
        assert_eq!(format!("{s:?} {s}"), "[redacted] [redacted]");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"[redacted]\"");
        #[derive(Debug)]
        #[allow(dead_code)]
        struct Holder {
            key: Secret,
        }
        assert!(!format!("{:?}", Holder { key: s.clone() }).contains("acme"));
        assert_eq!(s.expose(), "tenant-acme-0123456789");
    }

    #[test]
    fn urls_show_their_host_only() {
        let u = SecretUrl::new("https://hooks.slack.com:8443/services/T0/B0/tok3n?x=q");
        assert_eq!(format!("{u:?}"), "https://hooks.slack.com:8443/[redacted]");
        assert_eq!(format!("{u}"), "https://hooks.slack.com:8443/[redacted]");
        assert_eq!(serde_json::to_string(&u).unwrap(), "\"https://hooks.slack.com:8443/[redacted]\"");
        assert_eq!(u.expose(), "https://hooks.slack.com:8443/services/T0/B0/tok3n?x=q");
        assert_eq!(format!("{:?}", SecretUrl::new("not a url tok3n")), "<not a URL>/[redacted]");
    }

    #[test]
    fn secrets_come_from_one_place() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key");
        std::fs::write(&file, "from-a-file-0123456789\nignored\n").unwrap();
        assert_eq!(resolve("k", None, Some(&file), None).unwrap().expose(), "from-a-file-0123456789");
        std::env::set_var("COSTPLANE_TEST_SECRET_RESOLVE", "from-the-env-0123456789");
        assert_eq!(resolve("k", None, None, Some("COSTPLANE_TEST_SECRET_RESOLVE")).unwrap().expose(), "from-the-env-0123456789");
        assert!(resolve("k", None, None, Some("COSTPLANE_TEST_SECRET_UNSET")).unwrap_err().contains("not set"));
        assert!(resolve("k", Some(&Secret::new("x")), Some(&file), None).unwrap_err().contains("only one"));
        assert!(resolve("k", None, None, None).unwrap_err().contains("one of"));
    }
}
