//! Ingest keys: who may send telemetry, and as which tenant.
//!
//! Invariants:
//! - With `[[ingest.keys]]` configured, every OTLP request (gRPC and HTTP)
//!   needs a known key, as `Authorization: Bearer <key>` or in the header
//!   named by `ingest.header`; without one the answer is 401 /
//!   `UNAUTHENTICATED`. Keys are compared in constant time, against all keys.
//! - The key decides the tenant: every resource of the request is billed
//!   and stored under the key's tenant (and project, if the key pins one).
//!   With `tenant_mode = "require_match"` a resource that names another
//!   tenant makes the whole request fail with 403 / `PERMISSION_DENIED`.
//! - Costs the spans carry themselves (`cost.usd`, `gen_ai.usage.cost`, ...)
//!   are believed only from keys with `trust_provided_cost = true`; for
//!   other keys they are hidden from the meter (and still stored), so the
//!   cost is computed from the tokens and the price catalog.
//! - The pinning travels with the request into the disk buffer
//!   ([`Sender`]), so a replay after a restart bills the same tenant.
//! - With no keys configured, ingest is open (every sender is trusted, as a
//!   local gateway's are), and the server says so when it starts.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use costplane_cost::{Meter, Tenancy};
use costplane_pipeline::Sender;
use costplane_telemetry::usage::UsageRows;
use costplane_telemetry::{MetricInfo, ResourceInfo, TelemetryBatch};
use http::HeaderMap;
use serde::{Deserialize, Serialize};

use crate::auth::constant_time_eq;
use crate::error::{ApiError, ErrorCode};
use crate::secret::{self, Secret};

/// What a resource's own tenant claim counts for when a key is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TenantMode {
    /// The key's tenant replaces whatever the resource says.
    #[default]
    Override,
    /// A resource naming another tenant than the key's is refused.
    RequireMatch,
}

/// `[ingest]`: who may send telemetry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestSection {
    /// `[[ingest.keys]]` entries. None: ingest is open (loopback use).
    pub keys: Vec<IngestKey>,
    /// Another header carrying the key as its whole value (besides
    /// `Authorization: Bearer <key>`), e.g. `x-costplane-key`, settable
    /// through `OTEL_EXPORTER_OTLP_HEADERS`. Empty: Authorization only.
    pub header: String,
    /// `override` (the key's tenant wins) or `require_match`.
    pub tenant_mode: TenantMode,
    /// Per-tenant rate limits (token buckets); 0 turns a limit off.
    pub rate_limit: RateLimitSection,
}

impl Default for IngestSection {
    fn default() -> Self {
        IngestSection {
            keys: Vec::new(),
            header: String::new(),
            tenant_mode: TenantMode::Override,
            rate_limit: RateLimitSection::default(),
        }
    }
}

/// `[ingest.rate_limit]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitSection {
    /// Items (spans, log records, data points) per second per tenant.
    pub items_per_second: u64,
    /// Request bytes (uncompressed) per second per tenant.
    pub bytes_per_second: u64,
    /// Bucket size, in seconds of the rate: how large a burst passes.
    pub burst_seconds: u64,
}

impl Default for RateLimitSection {
    fn default() -> Self {
        RateLimitSection { items_per_second: 0, bytes_per_second: 0, burst_seconds: 1 }
    }
}

/// One `[[ingest.keys]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestKey {
    /// The secret itself (or use `key_file` / `key_env`).
    #[serde(default)]
    pub key: Option<Secret>,
    /// A file whose first line is the secret.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// An environment variable holding the secret.
    #[serde(default)]
    pub key_env: Option<String>,
    /// The tenant everything sent with this key is billed to.
    pub tenant: String,
    /// A project to pin as well (absent: the resource's own project).
    #[serde(default)]
    pub project: Option<String>,
    /// Believe `cost.usd`-style costs the spans carry.
    #[serde(default)]
    pub trust_provided_cost: bool,
}

impl IngestSection {
    /// Reads `key_file` / `key_env` into `key` (at load time).
    pub fn resolve_secrets(&mut self) -> Result<(), String> {
        for (i, k) in self.keys.iter_mut().enumerate() {
            let what = format!("ingest.keys[{i}]");
            let s = secret::resolve(&what, k.key.as_ref(), k.key_file.as_deref(), k.key_env.as_deref())?;
            (k.key, k.key_file, k.key_env) = (Some(s), None, None);
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<(), String> {
        for (i, k) in self.keys.iter().enumerate() {
            match &k.key {
                Some(s) if s.expose().len() >= 16 => {}
                Some(_) => return Err(format!("ingest.keys[{i}]: keys must be at least 16 characters")),
                None if k.key_file.is_some() || k.key_env.is_some() => {}
                None => return Err(format!("ingest.keys[{i}]: set one of key, key_file or key_env")),
            }
            if k.tenant.trim().is_empty() {
                return Err(format!("ingest.keys[{i}]: tenant must not be empty"));
            }
        }
        if !self.header.is_empty() && http::HeaderName::from_bytes(self.header.as_bytes()).is_err() {
            return Err(format!("ingest.header '{}' is not a valid header name", self.header));
        }
        let r = &self.rate_limit;
        if (r.items_per_second > 0 || r.bytes_per_second > 0) && r.burst_seconds == 0 {
            return Err("ingest.rate_limit.burst_seconds must be at least 1 when a rate is set".into());
        }
        Ok(())
    }
}

/// The keys in force, ready to check requests.
#[derive(Debug, Default)]
pub struct IngestAuth {
    keys: Vec<(Secret, Sender)>,
    header: Option<http::HeaderName>,
    pub mode: TenantMode,
}

impl IngestAuth {
    /// From a loaded (resolved) `[ingest]` section.
    pub fn new(section: &IngestSection) -> Result<IngestAuth, String> {
        section.validate()?;
        let mut keys = Vec::new();
        for (i, k) in section.keys.iter().enumerate() {
            let secret = secret::resolve(&format!("ingest.keys[{i}]"), k.key.as_ref(), k.key_file.as_deref(), k.key_env.as_deref())?;
            let sender = Sender { tenant: k.tenant.clone(), project: k.project.clone(), trust_provided_cost: k.trust_provided_cost };
            keys.push((secret, sender));
        }
        let header = Some(section.header.as_str())
            .filter(|h| !h.is_empty() && !h.eq_ignore_ascii_case("authorization"))
            .map(|h| http::HeaderName::from_bytes(h.as_bytes()).map_err(|e| e.to_string()))
            .transpose()?;
        Ok(IngestAuth { keys, header, mode: section.tenant_mode })
    }

    /// No keys: anyone may send.
    pub fn is_open(&self) -> bool {
        self.keys.is_empty()
    }

    /// Who sent a request with these headers: `None` when ingest is open,
    /// the key's sender when a known key came, 401 otherwise.
    pub fn sender(&self, headers: &HeaderMap) -> Result<Option<Sender>, ApiError> {
        if self.is_open() {
            return Ok(None);
        }
        let bearer = headers
            .get_all(http::header::AUTHORIZATION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| v.trim().strip_prefix("Bearer ").or_else(|| v.trim().strip_prefix("bearer ")).map(str::trim));
        let given = bearer.or_else(|| self.header.as_ref().and_then(|h| headers.get(h)).and_then(|v| v.to_str().ok()).map(str::trim));
        let Some(given) = given.filter(|g| !g.is_empty()) else {
            let how = match &self.header {
                Some(h) => format!("Authorization: Bearer <key> or {h}: <key>"),
                None => "Authorization: Bearer <key>".to_owned(),
            };
            return Err(ApiError::new(ErrorCode::Unauthenticated, format!("an ingest key is required: send {how}")));
        };
        // Every key is compared, so the time taken does not say which matched.
        let mut found = None;
        for (secret, sender) in &self.keys {
            if constant_time_eq(secret.expose().as_bytes(), given.as_bytes()) && found.is_none() {
                found = Some(sender);
            }
        }
        match found {
            Some(s) => Ok(Some(s.clone())),
            None => Err(ApiError::new(ErrorCode::Unauthenticated, "unknown ingest key")),
        }
    }
}

/// Bills every resource of `batch` to the sender's tenant (and project).
/// With `RequireMatch`, a resource that names another tenant fails the
/// request. Resources are shared between rows, so each is rewritten once
/// (found by address: the batch holds every original, so none is reused).
pub fn pin(batch: &mut TelemetryBatch, sender: &Sender, tenancy: &Tenancy, mode: TenantMode) -> Result<(), ApiError> {
    let mut resources: HashMap<*const ResourceInfo, Arc<ResourceInfo>> = HashMap::new();
    let mut pin_resource = |r: &mut Arc<ResourceInfo>| -> Result<(), ApiError> {
        let key = Arc::as_ptr(r);
        if let Some(done) = resources.get(&key) {
            *r = Arc::clone(done);
            return Ok(());
        }
        if mode == TenantMode::RequireMatch {
            if let Some((_, claimed)) = r.attributes.iter().find(|(k, v)| *k == tenancy.tenant_attribute && !v.is_empty()) {
                if *claimed != sender.tenant {
                    return Err(ApiError::new(
                        ErrorCode::PermissionDenied,
                        format!(
                            "a resource claims {} = '{claimed}', but the ingest key is for tenant '{}'",
                            tenancy.tenant_attribute, sender.tenant
                        ),
                    ));
                }
            }
        }
        let mut info = ResourceInfo::clone(r);
        info.attributes.set(&tenancy.tenant_attribute, &sender.tenant);
        if let Some(project) = &sender.project {
            info.attributes.set(&tenancy.project_attribute, project);
        }
        let pinned = Arc::new(info);
        resources.insert(key, Arc::clone(&pinned));
        *r = pinned;
        Ok(())
    };
    for s in &mut batch.spans {
        pin_resource(&mut s.resource)?;
    }
    for l in &mut batch.logs {
        pin_resource(&mut l.resource)?;
    }
    let mut metrics: HashMap<*const MetricInfo, Arc<MetricInfo>> = HashMap::new();
    let mut pin_metric = |m: &mut Arc<MetricInfo>| -> Result<(), ApiError> {
        let key = Arc::as_ptr(m);
        if let Some(done) = metrics.get(&key) {
            *m = Arc::clone(done);
            return Ok(());
        }
        let mut info = MetricInfo::clone(m);
        pin_resource(&mut info.resource)?;
        let pinned = Arc::new(info);
        metrics.insert(key, Arc::clone(&pinned));
        *m = pinned;
        Ok(())
    };
    for p in &mut batch.gauges {
        pin_metric(&mut p.common.metric)?;
    }
    for p in &mut batch.sums {
        pin_metric(&mut p.common.metric)?;
    }
    for p in &mut batch.histograms {
        pin_metric(&mut p.common.metric)?;
    }
    for p in &mut batch.exp_histograms {
        pin_metric(&mut p.common.metric)?;
    }
    for p in &mut batch.summaries {
        pin_metric(&mut p.common.metric)?;
    }
    Ok(())
}

/// Measures `batch`; unless the sender is trusted, without the costs the
/// spans carry (they are put back afterwards: the stored span keeps them).
pub fn measure(meter: &Meter, batch: &mut TelemetryBatch, trusted: bool, received_ns: i64) -> UsageRows {
    if trusted {
        return meter.measure(batch, received_ns);
    }
    let provided = costplane_cost::llm::PROVIDED_COST;
    // Per span that carries any: its index and its attributes as sent.
    let mut hidden: Vec<(usize, costplane_telemetry::Attributes)> = Vec::new();
    for (i, span) in batch.spans.iter_mut().enumerate() {
        if !span.span_attributes.iter().any(|(k, _)| provided.contains(&k)) {
            continue;
        }
        hidden.push((i, span.span_attributes.clone()));
        span.span_attributes.retain(|k, _| !provided.contains(&k));
    }
    let usage = meter.measure(batch, received_ns);
    for (i, sent) in hidden {
        batch.spans[i].span_attributes = sent;
    }
    usage
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(header: &str) -> IngestAuth {
        let section = IngestSection {
            keys: vec![IngestKey {
                key: Some(Secret::new("acme-key-0123456789")),
                key_file: None,
                key_env: None,
                tenant: "acme".into(),
                project: None,
                trust_provided_cost: false,
            }],
            header: header.into(),
            ..IngestSection::default()
        };
        IngestAuth::new(&section).unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn keys_are_required_and_pin_their_tenant() {
        let a = auth("x-costplane-key");
        assert_eq!(a.sender(&headers(&[("authorization", "Bearer acme-key-0123456789")])).unwrap().unwrap().tenant, "acme");
        assert_eq!(a.sender(&headers(&[("x-costplane-key", "acme-key-0123456789")])).unwrap().unwrap().tenant, "acme");
        for bad in
            [headers(&[]), headers(&[("authorization", "Bearer nope-0123456789000")]), headers(&[("authorization", "acme-key-0123456789")])]
        {
            assert_eq!(a.sender(&bad).unwrap_err().code, ErrorCode::Unauthenticated);
        }
        // Only the configured extra header counts.
        assert!(auth("").sender(&headers(&[("x-costplane-key", "acme-key-0123456789")])).is_err());
        assert_eq!(IngestAuth::default().sender(&headers(&[])).unwrap(), None);
    }

    #[test]
    fn short_keys_and_empty_tenants_are_refused() {
        let mut s = IngestSection {
            keys: vec![IngestKey {
                key: Some(Secret::new("short")),
                key_file: None,
                key_env: None,
                tenant: "acme".into(),
                project: None,
                trust_provided_cost: false,
            }],
            ..IngestSection::default()
        };
        assert!(s.validate().unwrap_err().contains("16"));
        s.keys[0].key = Some(Secret::new("long-enough-0123456789"));
        s.keys[0].tenant = " ".into();
        assert!(s.validate().unwrap_err().contains("tenant"));
    }
}
