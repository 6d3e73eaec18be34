//! The one adapter from allocation lines to ledger rows (`x_Source =
//! kubernetes`). Everything Kubernetes-specific lands in the `x_Namespace`,
//! `x_Pod`, `x_Node`, `x_Cluster`, `x_Container`, `x_SharedFrom` columns
//! and again in `Tags` (with pod labels as `label:<key>`, and the average
//! usage and request the cost was derived from).

use costplane_telemetry::usage::{ChargeStatus, LedgerExt, LedgerRow, PricingStatus, Source};
use rust_decimal::Decimal;

use crate::allocate::{Line, Resource, HOUR_NS};

pub const SOURCE: Source = Source::Kubernetes;
const UNASSIGNED: &str = "unassigned";

fn category(r: Resource) -> &'static str {
    match r {
        Resource::Cpu | Resource::Ram | Resource::Gpu | Resource::IdleCpu | Resource::IdleRam => "Compute",
        Resource::Volume => "Storage",
        Resource::NetworkReceive | Resource::NetworkTransmit => "Networking",
        Resource::Shared => "Other",
    }
}

/// The service a Kubernetes row belongs to: the pod's
/// `app.kubernetes.io/name` or `app` label, else its namespace.
fn service_of(l: &Line) -> String {
    let label = |k: &str| l.id.labels.iter().find(|(lk, _)| lk == k).map(|(_, v)| v.clone());
    label("app.kubernetes.io/name").or_else(|| label("app")).unwrap_or_else(|| l.id.namespace.clone())
}

fn dec(d: Decimal) -> String {
    d.normalize().to_string()
}

/// Ledger rows of priced lines (`charge_status`: the hour's, from the closer).
pub fn rows(lines: &[Line], currency: &str, price_version: &str, charge_status: ChargeStatus) -> Vec<LedgerRow> {
    lines
        .iter()
        .map(|l| {
            let id = &l.id;
            let mut tags = serde_json::json!({
                "cluster": id.cluster, "namespace": id.namespace, "pod": id.pod,
                "node": id.node, "container": id.container,
            });
            if !id.tenant.is_empty() {
                tags["tenant"] = id.tenant.clone().into();
            }
            for (k, v) in &id.labels {
                tags[format!("label:{k}")] = v.clone().into();
            }
            if matches!(l.resource, Resource::Cpu | Resource::Ram | Resource::Gpu) {
                tags["usage_avg"] = dec(l.usage_avg).into();
                tags["request_avg"] = dec(l.request_avg).into();
            }
            if !l.shared_from.is_empty() {
                tags["shared_from"] = l.shared_from.clone().into();
                tags["share_split"] = l.detail.clone().into();
            } else if l.resource == Resource::Volume {
                tags["volume"] = l.detail.clone().into();
            }
            let resource_id = match l.resource {
                Resource::IdleCpu | Resource::IdleRam => format!("{}/{}/__idle__", id.cluster, id.node),
                Resource::Shared => format!("{}/{}/__shared__/{}", id.cluster, id.namespace, l.shared_from),
                Resource::Volume => format!("{}/{}/{}/{}", id.cluster, id.namespace, id.pod, l.detail),
                _ => format!("{}/{}/{}/{}", id.cluster, id.namespace, id.pod, id.container),
            };
            let quantity = l.quantity.round_dp(costplane_telemetry::usage::MONEY_SCALE);
            LedgerRow::builder(SOURCE, l.hour_ns, l.hour_ns + HOUR_NS)
                .cost(l.cost, currency)
                .service("Kubernetes", category(l.resource))
                .provider("Kubernetes")
                .publisher("costplane")
                .resource(resource_id, if id.pod.is_empty() { id.namespace.clone() } else { id.pod.clone() })
                .consumed(quantity, l.resource.unit())
                .sku(format!("kubernetes/{}", l.resource.as_str()))
                .tags(tags.to_string())
                .owner(if id.tenant.is_empty() { UNASSIGNED.into() } else { id.tenant.clone() }, id.namespace.clone(), service_of(l))
                .operation(l.resource.as_str())
                .usage_type(l.resource.usage_type())
                .priced(PricingStatus::Priced, price_version)
                .charge_status(charge_status)
                .allocation(None, if l.shared_from.is_empty() { String::new() } else { format!("shared:{}", l.detail) })
                .ext(LedgerExt {
                    namespace: id.namespace.clone(),
                    pod: id.pod.clone(),
                    node: id.node.clone(),
                    cluster: id.cluster.clone(),
                    container: id.container.clone(),
                    shared_from: l.shared_from.clone(),
                    ..LedgerExt::default()
                })
                .build()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use costplane_telemetry::usage::UsageType;

    #[test]
    fn each_resource_is_stored_as_its_usage_type() {
        use Resource::*;
        for r in [Cpu, Ram, Gpu, Volume, NetworkReceive, NetworkTransmit, IdleCpu, IdleRam, Shared] {
            assert_eq!(r.usage_type().as_str(), r.as_str());
            assert_eq!(UsageType::parse(SOURCE, r.as_str()), Ok(r.usage_type()));
        }
    }
}
