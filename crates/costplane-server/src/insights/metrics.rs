//! `/metrics` gauges of budgets and anomalies, as of the last evaluation:
//!
//! - `costplane_budget_usd{budget,period}`: the budget's amount;
//! - `costplane_budget_spent_usd{budget,period}`: spend so far this period;
//! - `costplane_budget_spent_ratio{budget,period}`: spent / amount;
//! - `costplane_budget_projected_usd{budget,period}`: projected period total;
//! - `costplane_forecast_month_end_usd{budget}`: the month-end projection of
//!   monthly budgets;
//! - `costplane_anomalies_open{grain,direction}`: open anomalies.
//!
//! A tenant key sees only budgets scoped to its tenant and its anomalies.

use std::sync::Mutex;

use super::budgets::BudgetStatus;
use super::detect::{AnomalyRecord, Status};
use crate::auth::Caller;
use crate::health::{Exposition, Kind};

/// (name, help, value of a budget's status).
type Family = (&'static str, &'static str, fn(&BudgetStatus) -> String);

#[derive(Debug, Default)]
pub struct Gauges {
    budgets: Mutex<Vec<BudgetStatus>>,
    /// (tenant, grain, direction) of each open anomaly.
    open: Mutex<Vec<(String, &'static str, &'static str)>>,
}

impl Gauges {
    pub fn set_budgets(&self, statuses: Vec<BudgetStatus>) {
        *self.budgets.lock().unwrap_or_else(|e| e.into_inner()) = statuses;
    }

    pub fn set_anomalies(&self, all: &[AnomalyRecord]) {
        let open = all
            .iter()
            .filter(|r| r.status == Status::Open)
            .map(|r| (r.group.tenant.clone(), r.anomaly.grain.name(), r.anomaly.direction.name()))
            .collect();
        *self.open.lock().unwrap_or_else(|e| e.into_inner()) = open;
    }

    /// Appends the gauges `caller` may see to a scrape.
    pub fn render(&self, out: &mut Exposition, caller: &Caller) {
        let budgets = self.budgets.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mine: Vec<&BudgetStatus> =
            budgets.iter().filter(|b| caller.tenant().is_none_or(|t| b.scope.tenant.as_deref() == Some(t))).collect();
        let families: [Family; 4] = [
            ("costplane_budget_usd", "Budget amount per period (USD).", |b| b.amount.normalize().to_string()),
            ("costplane_budget_spent_usd", "Spend so far in the budget's current period (USD).", |b| b.spent.normalize().to_string()),
            ("costplane_budget_spent_ratio", "Spend so far / budget amount.", |b| b.spent_ratio.normalize().to_string()),
            ("costplane_budget_projected_usd", "Projected spend at the end of the budget's period (USD).", |b| {
                b.projected.normalize().to_string()
            }),
        ];
        for (name, help, value) in families {
            out.family(name, Kind::Gauge, help);
            for b in &mine {
                out.sample(name, &[("budget", &b.id), ("period", b.period.name())], value(b));
            }
        }
        let name = "costplane_forecast_month_end_usd";
        out.family(name, Kind::Gauge, "Month-end spend projected for monthly budgets' scopes (USD).");
        for b in mine.iter().filter(|b| b.period == costplane_insights::budget::Period::Month) {
            out.sample(name, &[("budget", &b.id)], b.projected.normalize());
        }
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let name = "costplane_anomalies_open";
        out.family(name, Kind::Gauge, "Open cost anomalies.");
        for grain in ["hour", "day"] {
            for direction in ["spike", "drop"] {
                let n = open.iter().filter(|(t, g, d)| *g == grain && *d == direction && caller.tenant().is_none_or(|c| c == t)).count();
                out.sample(name, &[("grain", grain), ("direction", direction)], n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use costplane_insights::budget::Period;
    use rust_decimal::Decimal;

    use super::*;
    use crate::insights::budgets::Origin;
    use crate::insights::config::Scope;

    fn status(id: &str, tenant: Option<&str>, period: Period) -> BudgetStatus {
        BudgetStatus {
            id: id.into(),
            origin: Origin::Config,
            scope: Scope { tenant: tenant.map(Into::into), ..Scope::default() },
            period,
            period_start: String::new(),
            period_end: String::new(),
            amount: Decimal::from(200),
            spent: Decimal::from(50),
            spent_ratio: Decimal::new(25, 2),
            projected: Decimal::new(1_805, 1),
            projection_method: "run-rate",
            projected_low95: None,
            projected_high95: None,
            crossed: Vec::new(),
            currency: "USD".into(),
            crossed_thresholds: Vec::new(),
            notify: Vec::new(),
        }
    }

    #[test]
    fn gauges_render_per_caller() {
        let g = Gauges::default();
        g.set_budgets(vec![status("acme-month", Some("acme"), Period::Month), status("all \"week\"", None, Period::Week)]);
        let render = |caller: &Caller| {
            let mut out = Exposition::new(crate::health::Format::Text);
            g.render(&mut out, caller);
            out.finish()
        };
        let admin = render(&Caller::Admin);
        // $50 of $200 = 0.25; projected 180.5.
        assert!(admin.contains("costplane_budget_usd{budget=\"acme-month\",period=\"month\"} 200\n"), "{admin}");
        assert!(admin.contains("costplane_budget_spent_ratio{budget=\"acme-month\",period=\"month\"} 0.25\n"), "{admin}");
        assert!(admin.contains("costplane_forecast_month_end_usd{budget=\"acme-month\"} 180.5\n"), "{admin}");
        assert!(admin.contains("costplane_budget_spent_usd{budget=\"all \\\"week\\\"\",period=\"week\"} 50\n"), "{admin}");
        assert!(!admin.contains("costplane_forecast_month_end_usd{budget=\"all"), "weekly budgets have no month-end: {admin}");
        assert!(admin.contains("costplane_anomalies_open{grain=\"day\",direction=\"spike\"} 0\n"), "{admin}");
        let globex = render(&Caller::Tenant("globex".into()));
        assert!(!globex.contains("acme-month") && !globex.contains("all \\\"week"), "{globex}");
        let acme = render(&Caller::Tenant("acme".into()));
        assert!(acme.contains("acme-month") && !acme.contains("week\\\""), "{acme}");
    }
}
