//! `[anomalies]` and `[[budgets]]`: detection settings, budgets and their
//! notification targets. Validated at load (`Config::load`).

use costplane_insights::budget::{self, Period, Threshold};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::secret::{Secret, SecretUrl};

/// `[anomalies]`: detection, evaluation cadence and who hears about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnomaliesSection {
    /// Run detection and budget evaluation in the server.
    pub enabled: bool,
    /// How often closed hours are looked at besides when the ledger closes
    /// an hour (e.g. "5m"). Hours close `ledger.close_after_secs` after
    /// their end.
    pub interval: String,
    /// |robust z| above this is unusual.
    pub threshold: f64,
    /// Least impact worth reporting, in the billing currency (per window).
    pub impact_floor: Decimal,
    /// Reference weeks of the seasonal baseline.
    pub weeks: usize,
    /// Hours evaluated on the first start (older history: `--backfill`).
    pub initial_lookback_hours: u32,
    /// Floors per group: the first entry whose set fields all match wins.
    pub floors: Vec<GroupFloor>,
    /// Where new anomalies are sent.
    pub notify: Vec<Target>,
    /// Base of links in notifications (e.g. "https://costplane.example.com");
    /// default: the API's listen address.
    pub public_url: Option<String>,
    /// The hosts notifications may go to (budgets' and `notify` targets,
    /// configured or created through the API): exact names, or
    /// `*.example.com` for its subdomains. Empty: any host.
    pub notify_hosts: Vec<String>,
}

impl Default for AnomaliesSection {
    fn default() -> Self {
        AnomaliesSection {
            enabled: true,
            interval: "5m".into(),
            threshold: 3.0,
            impact_floor: Decimal::ONE,
            weeks: 4,
            initial_lookback_hours: 24,
            floors: Vec::new(),
            notify: Vec::new(),
            public_url: None,
            notify_hosts: Vec::new(),
        }
    }
}

/// The ledger dimensions a group or budget scope names. Unset matches all.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The provider's service (FOCUS `ServiceName`), for cloud bills.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_service: Option<String>,
}

impl Scope {
    /// (dimension name, value) of every set field.
    pub fn fields(&self) -> Vec<(&'static str, &str)> {
        [
            ("tenant", &self.tenant),
            ("project", &self.project),
            ("service", &self.service),
            ("model", &self.model),
            ("source", &self.source),
            ("provider_service", &self.provider_service),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
        .collect()
    }

    /// Whether a group (source, tenant, project, service, model) is inside.
    pub fn contains(&self, group: &super::series::Group) -> bool {
        let ok = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        ok(&self.source, &group.source)
            && ok(&self.tenant, &group.tenant)
            && ok(&self.project, &group.project)
            && ok(&self.service, &group.service)
            && ok(&self.model, &group.model)
            && ok(&self.provider_service, &group.provider_service)
    }
}

/// An impact floor for the groups a scope matches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupFloor {
    #[serde(flatten)]
    pub scope: Scope,
    pub impact_floor: Decimal,
}

/// A webhook secret as budgets are stored: API-created budgets are kept as
/// their JSON, so the value is written there. API answers replace it
/// (`"<set>"`), and `Debug` and `Display` never show it.
fn stored_secret<S: serde::Serializer>(secret: &Secret, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(secret.expose())
}

/// A target URL as budgets are stored (the whole URL, as with secrets;
/// `Debug`, `Display` and logs show only its scheme and host).
fn stored_url<S: serde::Serializer>(url: &SecretUrl, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(url.expose())
}

/// Where a notification goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "lowercase")]
pub enum Target {
    /// JSON POST signed with HMAC-SHA256 of the body under `secret`
    /// (header `X-Costplane-Signature: sha256=<hex>`).
    Webhook {
        #[serde(serialize_with = "stored_url")]
        url: SecretUrl,
        #[serde(serialize_with = "stored_secret")]
        secret: Secret,
    },
    /// Alertmanager's API: `url` is its base, alerts go to `/api/v2/alerts`.
    Alertmanager {
        #[serde(serialize_with = "stored_url")]
        url: SecretUrl,
    },
    /// A Slack-compatible incoming webhook (`{"text": ...}`).
    Slack {
        #[serde(serialize_with = "stored_url")]
        url: SecretUrl,
    },
}

impl Target {
    pub fn url(&self) -> &SecretUrl {
        match self {
            Target::Webhook { url, .. } | Target::Alertmanager { url } | Target::Slack { url } => url,
        }
    }

    /// Checks the URL: `http` or `https`, with a host that `hosts` allows
    /// (any host when it is empty). The message names the host, never the
    /// whole URL (its path may hold a token).
    pub fn check_url(&self, hosts: &[String]) -> Result<(), String> {
        let url = reqwest::Url::parse(self.url().expose()).map_err(|e| format!("url is not a URL ({e}); use http(s)://host/path"))?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(format!("url scheme {:?} is not allowed: notification URLs must start with http:// or https://", url.scheme()));
        }
        let host = url.host_str().filter(|h| !h.is_empty()).ok_or("url has no host; use http(s)://host/path")?;
        if !hosts.is_empty() && !host_allowed(host, hosts) {
            return Err(format!("host {host:?} is not in anomalies.notify_hosts; add it there to send notifications to it"));
        }
        Ok(())
    }

    pub fn validate(&self, at: &str, hosts: &[String]) -> Result<(), String> {
        self.check_url(hosts).map_err(|e| format!("{at}: {e}"))?;
        if let Target::Webhook { secret, .. } = self {
            if secret.expose().len() < 16 {
                return Err(format!("{at}: a webhook secret must be at least 16 characters"));
            }
        }
        Ok(())
    }
}

/// Whether `host` is one of `hosts` (case-insensitive), or a subdomain of
/// a `*.domain` entry.
pub fn host_allowed(host: &str, hosts: &[String]) -> bool {
    let host = host.trim_end_matches('.');
    hosts.iter().any(|h| match h.strip_prefix("*.") {
        Some(domain) => {
            host.len() > domain.len() + 1 && host.is_char_boundary(host.len() - domain.len()) && {
                let (sub, tail) = host.split_at(host.len() - domain.len());
                sub.ends_with('.') && tail.eq_ignore_ascii_case(domain)
            }
        }
        None => host.eq_ignore_ascii_case(h.trim_end_matches('.')),
    })
}

/// Checks `anomalies.notify_hosts` entries: host names, or `*.domain`.
fn validate_hosts(hosts: &[String]) -> Result<(), String> {
    for (i, h) in hosts.iter().enumerate() {
        let name = h.strip_prefix("*.").unwrap_or(h);
        let ok = !name.is_empty()
            && name.len() <= 253
            && name.chars().all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c))
            && !name.contains('*');
        if !ok {
            return Err(format!("anomalies.notify_hosts[{i}]: {h:?} is not a host name (e.g. hooks.slack.com or *.example.com)"));
        }
    }
    Ok(())
}

/// One budget (`[[budgets]]` in the config, or created through the API).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetConfig {
    /// A stable name: letters, digits, `-`, `_`, `.`.
    pub id: String,
    #[serde(default)]
    pub scope: Scope,
    pub period: Period,
    /// In the billing currency.
    pub amount: Decimal,
    #[serde(default = "budget::default_thresholds")]
    pub thresholds: Vec<Threshold>,
    #[serde(default)]
    pub notify: Vec<Target>,
}

impl BudgetConfig {
    /// Checks the budget; notification targets must be on `hosts` (when
    /// not empty).
    pub fn validate(&self, at: &str, hosts: &[String]) -> Result<(), String> {
        if self.id.is_empty() || self.id.len() > 100 || !self.id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            return Err(format!("{at}: id {:?} must be 1 to 100 letters, digits, '-', '_' or '.'", self.id));
        }
        budget::validate(self.amount, &self.thresholds).map_err(|e| format!("{at} ({}): {e}", self.id))?;
        if let Some(s) = &self.scope.source {
            if !["llm", "telemetry", "kubernetes", "cloud"].contains(&s.as_str()) {
                return Err(format!("{at} ({}): source {s:?} is not llm, telemetry, kubernetes or cloud", self.id));
            }
        }
        for (i, t) in self.notify.iter().enumerate() {
            t.validate(&format!("{at}.notify[{i}]"), hosts)?;
        }
        Ok(())
    }
}

/// Checks `[anomalies]` and `[[budgets]]` (ids unique).
pub fn validate(anomalies: &AnomaliesSection, budgets: &[BudgetConfig]) -> Result<(), String> {
    crate::config::parse_duration(&anomalies.interval).map_err(|e| format!("anomalies.interval: {e}"))?;
    let detect = costplane_insights::DetectConfig {
        threshold: anomalies.threshold,
        impact_floor: anomalies.impact_floor,
        baseline: costplane_insights::baseline::BaselineConfig { weeks: anomalies.weeks, ..Default::default() },
    };
    detect.validate().map_err(|e| format!("anomalies: {e}"))?;
    for (i, f) in anomalies.floors.iter().enumerate() {
        if f.impact_floor < Decimal::ZERO {
            return Err(format!("anomalies.floors[{i}]: impact_floor must not be negative"));
        }
    }
    validate_hosts(&anomalies.notify_hosts)?;
    for (i, t) in anomalies.notify.iter().enumerate() {
        t.validate(&format!("anomalies.notify[{i}]"), &anomalies.notify_hosts)?;
    }
    let mut seen = std::collections::HashSet::new();
    for (i, b) in budgets.iter().enumerate() {
        b.validate(&format!("budgets[{i}]"), &anomalies.notify_hosts)?;
        if !seen.insert(b.id.as_str()) {
            return Err(format!("budgets[{i}]: id {:?} is used twice", b.id));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        #[serde(default)]
        anomalies: AnomaliesSection,
        #[serde(default)]
        budgets: Vec<BudgetConfig>,
    }

    fn parse(text: &str) -> Result<File, String> {
        let f: File = toml::from_str(text).map_err(|e| e.to_string())?;
        validate(&f.anomalies, &f.budgets)?;
        Ok(f)
    }

    #[test]
    fn budgets_parse_with_default_thresholds() {
        let f = parse(
            r#"
            [anomalies]
            threshold = 4
            floors = [{ tenant = "tiny", impact_floor = "0.1" }]
            [[budgets]]
            id = "acme-llm"
            scope = { tenant = "acme", source = "llm" }
            period = "month"
            amount = "1000"
            notify = [
              { kind = "webhook", url = "http://127.0.0.1:9/hook", secret = "0123456789abcdef" },
              { kind = "alertmanager", url = "http://127.0.0.1:9093" },
              { kind = "slack", url = "https://hooks.example/T/B/x" },
            ]
            "#,
        )
        .unwrap();
        let b = &f.budgets[0];
        assert_eq!(b.amount, Decimal::from(1000));
        assert_eq!(
            b.thresholds.iter().map(Threshold::label).collect::<Vec<_>>(),
            ["50%-actual", "90%-actual", "100%-actual", "100%-forecast"]
        );
        assert_eq!(b.scope.fields(), vec![("tenant", "acme"), ("source", "llm")]);
        assert_eq!(f.anomalies.floors[0].impact_floor, Decimal::new(1, 1));
    }

    #[test]
    fn webhook_secrets_never_print_but_are_stored() {
        let t = Target::Webhook { url: "https://hooks.example/x/t0ken".into(), secret: "s3cret-0123456789abcdef".into() };
        assert!(!format!("{t:?}").contains("s3cret"));
        assert!(!format!("{t:?}").contains("t0ken"));
        let stored = serde_json::to_string(&t).unwrap();
        let back: Target = serde_json::from_str(&stored).unwrap();
        assert_eq!(back, t);
    }

    #[test]
    fn notification_urls_are_http_to_allowed_hosts() {
        let slack = |url: &str| Target::Slack { url: url.into() };
        assert!(slack("https://hooks.slack.com/services/T/B/x").check_url(&[]).is_ok());
        for bad in ["file:///etc/passwd", "gopher://x/", "ftp://x/", "http://", "hooks.slack.com/x", "javascript:alert(1)"] {
            assert!(slack(bad).check_url(&[]).is_err(), "{bad}");
        }
        let hosts = vec!["hooks.slack.com".to_owned(), "*.example.com".to_owned()];
        assert!(slack("https://HOOKS.slack.com/x").check_url(&hosts).is_ok());
        assert!(slack("https://a.b.example.com/x").check_url(&hosts).is_ok());
        for refused in
            ["https://example.com/x", "https://evil.com/hooks.slack.com", "https://hooks.slack.com.evil.com/", "http://169.254.169.254/"]
        {
            let e = slack(refused).check_url(&hosts).unwrap_err();
            assert!(e.contains("notify_hosts") && !e.contains("/x"), "{refused}: {e}");
        }
        // The allow-list applies to configured budgets at load.
        let text = "[anomalies]\nnotify_hosts = [\"hooks.example\"]\n[[budgets]]\nid = \"b\"\nperiod = \"day\"\namount = \"1\"\n\
                    notify = [{ kind = \"slack\", url = \"https://elsewhere.example/x\" }]";
        assert!(parse(text).map(|_| ()).unwrap_err().contains("notify_hosts"));
        assert!(parse("[anomalies]\nnotify_hosts = [\"a b\"]").map(|_| ()).unwrap_err().contains("not a host name"));
    }

    #[test]
    fn bad_budgets_are_refused_with_the_reason() {
        let base = "[[budgets]]\nid = \"b\"\nperiod = \"month\"\n";
        for (extra, want) in [
            ("amount = \"0\"", "must be positive"),
            ("amount = \"5\"\ncolor = \"red\"", "unknown field"),
            ("amount = \"5\"\nscope = { team = \"x\" }", "unknown field"),
            ("amount = \"5\"\nnotify = [{ kind = \"webhook\", url = \"http://x\", secret = \"short\" }]", "at least 16"),
            ("amount = \"5\"\nnotify = [{ kind = \"pager\", url = \"http://x\" }]", "unknown variant"),
            ("amount = \"5\"\nscope = { source = \"gpu\" }", "is not llm"),
            ("amount = \"5\"\nthresholds = [{ percent = \"0\" }]", "above 0"),
        ] {
            let err = parse(&format!("{base}{extra}")).map(|_| ()).unwrap_err();
            assert!(err.contains(want), "{extra}: {err}");
        }
        let twice = format!("{base}amount = \"1\"\n{base}amount = \"2\"\n");
        assert!(parse(&twice).map(|_| ()).unwrap_err().contains("used twice"));
        assert!(parse("[[budgets]]\nid = \"a b\"\nperiod = \"day\"\namount = \"1\"").map(|_| ()).unwrap_err().contains("letters"));
        assert!(parse("[anomalies]\nthreshold = 0").map(|_| ()).is_err());
    }
}
