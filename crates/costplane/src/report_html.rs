//! The monthly report's page: plain HTML with inline SVG charts and print
//! CSS, so the file opens anywhere and Chromium prints it as it looks.
//! Money is the API's decimal text; chart geometry alone uses floats.

use std::fmt::Write as _;

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;

/// One line of a time chart.
pub struct Series {
    pub name: String,
    pub points: Vec<(String, Decimal)>,
}

pub struct Page {
    pub month: String,
    pub tenant: Option<String>,
    pub currency: String,
    /// The month's total, as the API gave it.
    pub total: String,
    pub change: String,
    pub daily: Vec<(String, Decimal)>,
    pub tokens: Vec<Series>,
    pub by_model: Vec<(String, String)>,
    pub by_operation: Vec<(String, String)>,
    pub by_tenant: Vec<(String, String)>,
    pub by_service: Vec<(String, String)>,
    pub by_source: Vec<(String, String)>,
    /// model, cost, tokens, cost per 1k tokens
    pub efficiency: Vec<(String, String, String, String)>,
    /// model, provider, tenant, token type, tokens
    pub unpriced: Vec<[String; 5]>,
    /// Estimates against invoices, one line (empty: left out).
    pub reconciliation: String,
    /// The month's routes with the highest cost per request.
    pub unit_routes: Vec<UnitRoute>,
}

/// One route of the cost-per-request table, as the API's text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitRoute {
    pub service: String,
    pub route: String,
    pub requests: String,
    pub p50: String,
    pub p95: String,
    pub error_ratio: String,
    pub llm: String,
    /// `unknown` when no request has a known compute cost.
    pub compute: String,
    pub telemetry: String,
    pub total: String,
    pub per_request: String,
}

/// The cost-per-request table (its section left empty of rows when the
/// month had no requests).
fn unit_table(rows: &[UnitRoute], currency: &str) -> String {
    if rows.is_empty() {
        return "<p class=\"muted\">No requests this month.</p>".into();
    }
    let mut s = String::from(
        "<table id=\"unit-routes\"><tr><th>Service</th><th>Route</th><th class=\"num\">Requests</th><th class=\"num\">p50 s</th>\
         <th class=\"num\">p95 s</th><th class=\"num\">Error ratio</th><th class=\"num\">LLM</th><th class=\"num\">Compute</th>\
         <th class=\"num\">Telemetry</th><th class=\"num\">Total</th><th class=\"num\">Per request</th></tr>",
    );
    for r in rows {
        let compute = if r.compute == "unknown" { "unknown".to_owned() } else { format!("{} {currency}", esc(&r.compute)) };
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{} {currency}</td><td class=\"num\">{compute}</td>\
             <td class=\"num\">{} {currency}</td><td class=\"num\">{} {currency}</td><td class=\"num\">{} {currency}</td></tr>",
            esc(name(&r.service)),
            esc(name(&r.route)),
            esc(&r.requests),
            esc(&r.p50),
            esc(&r.p95),
            esc(&r.error_ratio),
            esc(&r.llm),
            esc(&r.telemetry),
            esc(&r.total),
            esc(&r.per_request),
        );
    }
    s.push_str("</table>");
    s
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn f(d: &Decimal) -> f64 {
    d.to_f64().unwrap_or(0.0)
}

fn name(s: &str) -> &str {
    if s.is_empty() {
        "(none)"
    } else {
        s
    }
}

const COLORS: [&str; 6] = ["#2f6fde", "#e07b39", "#3a9d5d", "#9b59b6", "#c0392b", "#7f8c8d"];

fn bars(points: &[(String, Decimal)], currency: &str) -> String {
    if points.iter().all(|(_, v)| v.is_zero()) {
        return "<p class=\"muted\">No costs this month.</p>".into();
    }
    let (w, h, left, bottom) = (900.0, 220.0, 70.0, 28.0);
    let max = points.iter().map(|(_, v)| f(v)).fold(0.0_f64, f64::max);
    let slot = (w - left) / points.len().max(1) as f64;
    let mut s = format!("<svg viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"daily cost\">");
    for frac in [0.0, 0.5, 1.0] {
        let y = 8.0 + (h - 8.0 - bottom) * (1.0 - frac);
        let _ = write!(
            s,
            "<line x1=\"{left}\" x2=\"{w}\" y1=\"{y}\" y2=\"{y}\" stroke=\"#ddd\"/><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{:.4} {currency}</text>",
            left - 4.0,
            y + 4.0,
            max * frac
        );
    }
    for (i, (label, v)) in points.iter().enumerate() {
        let bh = if max > 0.0 { (h - 8.0 - bottom) * f(v) / max } else { 0.0 };
        let x = left + i as f64 * slot;
        let _ = write!(
            s,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"#2f6fde\"><title>{}: {} {currency}</title></rect>",
            x + 1.0,
            h - bottom - bh,
            (slot - 2.0).max(1.0),
            esc(label),
            v.normalize()
        );
        if i % 5 == 0 {
            let _ = write!(s, "<text x=\"{x:.1}\" y=\"{}\">{}</text>", h - 10.0, esc(&label[label.len().saturating_sub(5)..]));
        }
    }
    s.push_str("</svg>");
    s
}

fn lines(series: &[Series]) -> String {
    let days: std::collections::BTreeSet<&str> = series.iter().flat_map(|s| s.points.iter().map(|(d, _)| d.as_str())).collect();
    if days.is_empty() {
        return "<p class=\"muted\">No LLM tokens this month.</p>".into();
    }
    let days: Vec<&str> = days.into_iter().collect();
    let (w, h, left, bottom) = (900.0, 220.0, 70.0, 28.0);
    let max = series.iter().flat_map(|s| s.points.iter().map(|(_, v)| f(v))).fold(0.0_f64, f64::max).max(1.0);
    let step = (w - left - 10.0) / (days.len().max(2) - 1) as f64;
    let mut s = format!("<svg viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"tokens per day\">");
    let _ = write!(s, "<text x=\"{}\" y=\"14\" text-anchor=\"end\">{max:.0}</text>", left - 4.0);
    for (k, serie) in series.iter().enumerate() {
        let color = COLORS[k % COLORS.len()];
        let pts: Vec<String> = serie
            .points
            .iter()
            .filter_map(|(d, v)| {
                let i = days.iter().position(|x| x == d)?;
                Some(format!("{:.1},{:.1}", left + i as f64 * step, h - bottom - (h - 8.0 - bottom) * f(v) / max))
            })
            .collect();
        let _ = write!(s, "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>", pts.join(" "));
        for p in &pts {
            let (x, y) = p.split_once(',').unwrap_or(("0", "0"));
            let _ = write!(s, "<circle cx=\"{x}\" cy=\"{y}\" r=\"2.5\" fill=\"{color}\"/>");
        }
        let _ = write!(s, "<text x=\"{}\" y=\"{}\" fill=\"{color}\">{}</text>", left + 10.0 + 110.0 * k as f64, h - 4.0, esc(&serie.name));
    }
    s.push_str("</svg>");
    s
}

fn ranking(rows: &[(String, String)], currency: &str) -> String {
    let rows: Vec<&(String, String)> = rows.iter().take(10).collect();
    if rows.is_empty() {
        return "<p class=\"muted\">None this month.</p>".into();
    }
    let max = rows.iter().map(|(_, c)| c.parse::<f64>().unwrap_or(0.0)).fold(0.0_f64, f64::max);
    let mut s = String::from("<table>");
    for (n, c) in rows {
        let pct = if max > 0.0 { 100.0 * c.parse::<f64>().unwrap_or(0.0) / max } else { 0.0 };
        let _ = write!(
            s,
            "<tr><td>{}</td><td class=\"bar\"><svg viewBox=\"0 0 100 10\" preserveAspectRatio=\"none\"><rect width=\"{pct:.1}\" height=\"10\" fill=\"#2f6fde\"/></svg></td><td class=\"num\">{} {currency}</td></tr>",
            esc(name(n)),
            esc(c)
        );
    }
    s.push_str("</table>");
    s
}

impl Page {
    pub fn render(&self) -> String {
        let cur = esc(&self.currency);
        let scope = match &self.tenant {
            Some(t) => format!("tenant {}", esc(t)),
            None => "all tenants".to_owned(),
        };
        let mut h = String::new();
        let _ = write!(
            h,
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>costplane cost report {month}</title><style>\
             body{{font:13px/1.4 system-ui,sans-serif;color:#1d2330;margin:24px}}h1{{margin:0 0 4px}}h2{{font-size:15px;margin:22px 0 6px}}\
             .muted{{color:#667085}}.total{{font-size:30px;font-weight:700}}table{{border-collapse:collapse;width:100%}}\
             td,th{{padding:3px 6px;border-bottom:1px solid #e4e7ec;text-align:left}}.num{{text-align:right;white-space:nowrap}}\
             td.bar{{width:40%}}td.bar svg{{width:100%;height:10px}}svg text{{font-size:11px;fill:#667085}}\
             .grid{{display:grid;grid-template-columns:1fr 1fr;gap:18px}}section{{break-inside:avoid}}\
             @page{{size:A4;margin:14mm}}</style></head><body>\
             <h1>costplane cost report</h1><div class=\"muted\">{month} · {scope} · {cur} · figures from the costplane API</div>\
             <section><h2>Total</h2><div class=\"total\" id=\"total\">{total} {cur}</div><div>Month over month: {change}</div></section>\
             <section><h2>Daily cost</h2>{daily}</section>\
             <section><h2>Token usage per day (LLM)</h2>{tokens}</section>",
            month = esc(&self.month),
            total = esc(&self.total),
            change = esc(&self.change),
            daily = bars(&self.daily, &cur),
            tokens = lines(&self.tokens),
        );
        let _ = write!(
            h,
            "<div class=\"grid\"><section><h2>Cost by model</h2>{}</section><section><h2>Cost by operation</h2>{}</section>\
             <section><h2>Top tenants</h2>{}</section><section><h2>Top services</h2>{}</section></div>\
             <section><h2>Cost by source</h2>{}</section>",
            ranking(&self.by_model, &cur),
            ranking(&self.by_operation, &cur),
            ranking(&self.by_tenant, &cur),
            ranking(&self.by_service, &cur),
            ranking(&self.by_source, &cur),
        );
        h.push_str("<section><h2>Efficiency by model</h2><table><tr><th>Model</th><th class=\"num\">Cost</th><th class=\"num\">Tokens</th><th class=\"num\">Cost per 1k tokens</th></tr>");
        for (m, c, t, p) in &self.efficiency {
            let _ = write!(
                h,
                "<tr><td>{}</td><td class=\"num\">{} {cur}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                esc(name(m)),
                esc(c),
                esc(t),
                esc(p)
            );
        }
        h.push_str("</table></section>");
        let _ = write!(
            h,
            "<section><h2>Cost per request: top routes</h2>{}<p class=\"muted\">LLM, compute and telemetry of the month's requests \
             (server spans) per route, as costplane unit-costs gives them; compute is unknown, not 0, on pods without a Kubernetes \
             cost.</p></section>",
            unit_table(&self.unit_routes, &cur)
        );
        h.push_str("<section><h2>Unpriced usage</h2>");
        if self.unpriced.is_empty() {
            h.push_str("<p class=\"muted\">Every model was priced.</p>");
        } else {
            h.push_str("<table><tr><th>Model</th><th>Provider</th><th>Tenant</th><th>Token type</th><th class=\"num\">Tokens</th></tr>");
            for r in &self.unpriced {
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td></tr>",
                    esc(&r[0]),
                    esc(&r[1]),
                    esc(&r[2]),
                    esc(&r[3]),
                    esc(&r[4])
                );
            }
            h.push_str("</table>");
        }
        h.push_str("</section>");
        if !self.reconciliation.is_empty() {
            let _ = write!(
                h,
                "<section><h2>Estimates against invoices</h2><p id=\"reconciliation\">{}</p></section>",
                esc(&self.reconciliation)
            );
        }
        h.push_str("</body></html>\n");
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn text_is_escaped_and_totals_kept_as_given() {
        let page = Page {
            month: "2026-11".into(),
            tenant: Some("<script>".into()),
            currency: "USD".into(),
            total: "0.0104".into(),
            change: "no costs the month before".into(),
            daily: vec![("2026-11-23".into(), Decimal::from_str("0.0104").unwrap())],
            tokens: vec![],
            by_model: vec![("gpt-4o".into(), "0.0035".into())],
            by_operation: vec![],
            by_tenant: vec![],
            by_service: vec![],
            by_source: vec![],
            efficiency: vec![],
            unpriced: vec![],
            reconciliation: "Estimated 1 · invoiced <2>".into(),
            unit_routes: vec![UnitRoute {
                service: "shop".into(),
                route: "<b>".into(),
                compute: "unknown".into(),
                per_request: "0.004033333333".into(),
                ..UnitRoute::default()
            }],
        };
        let html = page.render();
        assert!(html.contains("0.0104 USD") && html.contains("&lt;script&gt;") && !html.contains("<script>"));
        assert!(html.contains("<p id=\"reconciliation\">Estimated 1 · invoiced &lt;2&gt;</p>"), "{html}");
        assert!(html.contains("<svg") && !html.contains("http://") && !html.contains("https://"));
        assert!(html.contains("<td>&lt;b&gt;</td>") && html.contains("0.004033333333 USD</td></tr>"), "{html}");
        assert!(html.contains("<td class=\"num\">unknown</td>"), "{html}");
    }
}
