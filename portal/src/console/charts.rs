//! Usage at a glance: seats in use over time and consumption against limits, drawn as
//! server-rendered inline SVG (no JavaScript, nothing fetched), each chart with a title, a
//! description and a data table under it.
//!
//! - `GET /console/usage`: per product (those the account sees): seats in use over time
//!   across its licenses, seats used per license, consumption per feature.
//! - `GET /console/usage/{license}`: one license: seats in use over time against its
//!   seats, its consumption against its license-wide limits (with the overage beyond
//!   them), each active device's consumption against the per-device limits.
//!
//! Seats in use over time are derived from the activations' times: an activation holds a
//! seat from its creation until its deactivation (an on-premise floating server's pool
//! holds its pool's seats; the leases of a floating license are not drawn). The count now
//! is the license's own `seats_used`.
//!
//! Needs [`Action::Read`], as `GET /api/v1/licenses/{id}`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use askama::Template;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use lic_core::format::Features;

use super::edit::when;
use super::{ConsolePage, Frame, Signed};
use crate::auth::Action;
use crate::error::PortalError;
use crate::http::{ApiError, AppState};
use crate::ops::{Activation, LicenseInfo};
use crate::web;

/// This module's pages.
pub(super) const PAGES: &[ConsolePage] = &[
    ConsolePage {
        method: "GET",
        path: "/console/usage",
        needs: Some(Action::Read),
    },
    ConsolePage {
        method: "GET",
        path: "/console/usage/{license}",
        needs: Some(Action::Read),
    },
];

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/usage", get(products_page))
        .route("/console/usage/{license}", get(license_page))
}

/// Bars drawn in a chart at most; the data table lists them all.
const MAX_BARS: usize = 30;

// ----- the charts: pure functions --------------------------------------------------------------

/// `text` safe inside SVG or HTML text and attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `text` cut to `max` characters, with an ellipsis when cut.
fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let mut s: String = text.chars().take(max.saturating_sub(1)).collect();
        s.push('…');
        s
    }
}

/// One bar: a label, a value, and a limit drawn as a mark (the part beyond it is overage).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bar {
    pub(crate) label: String,
    pub(crate) value: u64,
    pub(crate) limit: Option<u64>,
}

impl Bar {
    /// How far the value is beyond the limit (0 within it, or without a limit).
    pub(crate) fn overage(&self) -> u64 {
        self.limit.map_or(0, |l| self.value.saturating_sub(l))
    }
}

const WIDTH: f64 = 640.0;
const LABEL_W: f64 = 190.0;
const VALUE_W: f64 = 110.0;
const ROW_H: f64 = 26.0;

/// `x` with one decimal at most: short, stable output.
fn n(x: f64) -> String {
    let r = (x * 10.0).round() / 10.0;
    if r.fract() == 0.0 {
        format!("{r:.0}")
    } else {
        format!("{r:.1}")
    }
}

/// The opening of an accessible chart: `role="img"`, labelled by its title and
/// description.
fn open_svg(id: &str, title: &str, desc: &str, height: f64) -> String {
    format!(
        "<svg class=\"chart\" id=\"{id}\" role=\"img\" aria-labelledby=\"{id}-title {id}-desc\" \
         viewBox=\"0 0 {w} {h}\" xmlns=\"http://www.w3.org/2000/svg\">\
         <title id=\"{id}-title\">{title}</title><desc id=\"{id}-desc\">{desc}</desc>",
        id = escape(id),
        w = n(WIDTH),
        h = n(height),
        title = escape(title),
        desc = escape(desc),
    )
}

/// A horizontal bar chart: a row per bar (at most [`MAX_BARS`]), bars scaled to the
/// largest value or limit, a limit as a line across its bar, the part beyond it drawn as
/// overage.
pub(crate) fn bar_chart(id: &str, title: &str, desc: &str, bars: &[Bar]) -> String {
    let shown = &bars[..bars.len().min(MAX_BARS)];
    if shown.is_empty() {
        let mut svg = open_svg(id, title, desc, 40.0);
        svg.push_str("<text class=\"empty\" x=\"10\" y=\"25\">No data yet</text></svg>");
        return svg;
    }
    let scale = shown
        .iter()
        .flat_map(|b| [Some(b.value), b.limit])
        .flatten()
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let area = WIDTH - LABEL_W - VALUE_W;
    let width_of = |v: u64| (v as f64 / scale * area).clamp(0.0, area);
    let height = ROW_H * shown.len() as f64 + 10.0;
    let mut svg = open_svg(id, title, desc, height);
    for (i, bar) in shown.iter().enumerate() {
        let y = 5.0 + ROW_H * i as f64;
        let within = bar.limit.map_or(bar.value, |l| bar.value.min(l));
        let _ = write!(
            svg,
            "<g class=\"row\"><text class=\"label\" x=\"{lx}\" y=\"{ty}\" text-anchor=\"end\">{label}</text>\
             <rect class=\"bar\" x=\"{x}\" y=\"{y}\" width=\"{w}\" height=\"{h}\"/>",
            lx = n(LABEL_W - 8.0),
            ty = n(y + ROW_H * 0.62),
            label = escape(&shorten(&bar.label, 28)),
            x = n(LABEL_W),
            y = n(y + 3.0),
            w = n(width_of(within)),
            h = n(ROW_H - 8.0),
        );
        if bar.overage() > 0 {
            let _ = write!(
                svg,
                "<rect class=\"bar-over\" x=\"{x}\" y=\"{y}\" width=\"{w}\" height=\"{h}\"/>",
                x = n(LABEL_W + width_of(within)),
                y = n(y + 3.0),
                w = n(width_of(bar.value) - width_of(within)),
                h = n(ROW_H - 8.0),
            );
        }
        if let Some(limit) = bar.limit {
            let _ = write!(
                svg,
                "<line class=\"limit\" x1=\"{x}\" x2=\"{x}\" y1=\"{y1}\" y2=\"{y2}\"/>",
                x = n(LABEL_W + width_of(limit)),
                y1 = n(y),
                y2 = n(y + ROW_H - 2.0),
            );
        }
        let text = match bar.limit {
            Some(l) if bar.overage() > 0 => format!("{} / {l} (+{})", bar.value, bar.overage()),
            Some(l) => format!("{} / {l}", bar.value),
            None => bar.value.to_string(),
        };
        let _ = write!(
            svg,
            "<text class=\"value\" x=\"{x}\" y=\"{ty}\">{text}</text></g>",
            x = n(WIDTH - VALUE_W + 6.0),
            ty = n(y + ROW_H * 0.62),
            text = escape(&text),
        );
    }
    svg.push_str("</svg>");
    svg
}

/// A value from a point in time on, until the next point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Step {
    pub(crate) at: i64,
    pub(crate) value: u64,
}

/// The seats held over time by spans `(from, until, seats)` (`until`: none while held):
/// a step at every time the count changes, from the first span's start.
pub(crate) fn seats_over_time(spans: &[(i64, Option<i64>, u64)]) -> Vec<Step> {
    let mut changes: BTreeMap<i64, i128> = BTreeMap::new();
    for &(from, until, seats) in spans {
        let seats = i128::from(seats);
        *changes.entry(from).or_default() += seats;
        if let Some(until) = until {
            *changes.entry(until.max(from)).or_default() -= seats;
        }
    }
    let mut held: i128 = 0;
    let mut out: Vec<Step> = Vec::new();
    for (at, change) in changes {
        held += change;
        let value = u64::try_from(held.max(0)).unwrap_or(u64::MAX);
        if out.last().is_none_or(|s| s.value != value) {
            out.push(Step { at, value });
        }
    }
    out
}

/// A step chart of `steps` from the first until `until`, scaled to the largest value or
/// `capacity` (drawn as a dashed line), dates under it.
pub(crate) fn step_chart(
    id: &str,
    title: &str,
    desc: &str,
    steps: &[Step],
    until: i64,
    capacity: Option<u64>,
) -> String {
    const H: f64 = 220.0;
    const LEFT: f64 = 56.0;
    const RIGHT: f64 = 16.0;
    const TOP: f64 = 14.0;
    const BOTTOM: f64 = 30.0;
    let Some(first) = steps.first() else {
        let mut svg = open_svg(id, title, desc, 40.0);
        svg.push_str("<text class=\"empty\" x=\"10\" y=\"25\">No seat was taken yet</text></svg>");
        return svg;
    };
    let start = first.at;
    let end = until
        .max(steps.last().map_or(start, |s| s.at))
        .max(start + 1);
    let top = steps
        .iter()
        .map(|s| s.value)
        .chain(capacity)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let x_of =
        |t: i64| LEFT + ((t - start) as f64 / (end - start) as f64 * plot_w).clamp(0.0, plot_w);
    let y_of = |v: u64| TOP + plot_h - (v as f64 / top * plot_h).clamp(0.0, plot_h);
    let mut svg = open_svg(id, title, desc, H);
    // Axes, with the scale's ends.
    let _ = write!(
        svg,
        "<line class=\"axis\" x1=\"{l}\" x2=\"{l}\" y1=\"{t}\" y2=\"{b}\"/>\
         <line class=\"axis\" x1=\"{l}\" x2=\"{r}\" y1=\"{b}\" y2=\"{b}\"/>\
         <text class=\"tick\" x=\"{lt}\" y=\"{ty}\" text-anchor=\"end\">{top}</text>\
         <text class=\"tick\" x=\"{lt}\" y=\"{b}\" text-anchor=\"end\">0</text>\
         <text class=\"tick\" x=\"{l}\" y=\"{dy}\">{from}</text>\
         <text class=\"tick\" x=\"{r}\" y=\"{dy}\" text-anchor=\"end\">{to}</text>",
        l = n(LEFT),
        r = n(WIDTH - RIGHT),
        t = n(TOP),
        b = n(TOP + plot_h),
        lt = n(LEFT - 6.0),
        ty = n(TOP + 10.0),
        top = top as u64,
        dy = n(H - 8.0),
        from = escape(&day(start)),
        to = escape(&day(end)),
    );
    if let Some(c) = capacity {
        let _ = write!(
            svg,
            "<line class=\"limit\" x1=\"{l}\" x2=\"{r}\" y1=\"{y}\" y2=\"{y}\"/>\
             <text class=\"tick\" x=\"{r}\" y=\"{ly}\" text-anchor=\"end\">{c} seats</text>",
            l = n(LEFT),
            r = n(WIDTH - RIGHT),
            y = n(y_of(c)),
            ly = n((y_of(c) - 4.0).max(TOP)),
        );
    }
    let mut path = format!("M{} {}", n(x_of(first.at)), n(y_of(first.value)));
    for s in &steps[1..] {
        let _ = write!(path, " H{} V{}", n(x_of(s.at)), n(y_of(s.value)));
    }
    let _ = write!(path, " H{}", n(x_of(end)));
    let _ = write!(svg, "<path class=\"line\" d=\"{path}\"/></svg>");
    svg
}

/// `t` as YYYY-MM-DD.
fn day(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| t.to_string())
}

// ----- from the portal's data to the charts -----------------------------------------------------

/// What an activation held, and when: `(from, until, seats)`; `None` for the leases of a
/// floating license, which are not drawn.
fn span(a: &Activation) -> Option<(i64, Option<i64>, u64)> {
    if a.floating && a.pool_seats.is_none() {
        return None;
    }
    let seats = u64::try_from(a.pool_seats.unwrap_or(1)).unwrap_or(0);
    let until = match (a.deactivated, a.state.as_str()) {
        (Some(t), _) => Some(t),
        (None, "active") => None,
        // Ended without a time of its own: its last sign of life.
        (None, _) => Some(a.last_accessed),
    };
    Some((a.created, until, seats))
}

/// A row of a data table under a chart.
struct Row {
    label: String,
    value: String,
    limit: String,
    overage: String,
}

fn rows_of(bars: &[Bar]) -> Vec<Row> {
    bars.iter()
        .map(|b| Row {
            label: b.label.clone(),
            value: b.value.to_string(),
            limit: b.limit.map_or_else(|| "—".into(), |l| l.to_string()),
            overage: b.overage().to_string(),
        })
        .collect()
}

/// A chart and its data table.
struct Chart {
    id: String,
    title: String,
    svg: String,
    /// The table's column headings: label, value, limit (no limit column if empty).
    columns: (&'static str, &'static str, &'static str),
    rows: Vec<Row>,
    more: usize,
}

fn bar_section(
    id: &str,
    title: &str,
    desc: &str,
    columns: (&'static str, &'static str, &'static str),
    bars: &[Bar],
) -> Chart {
    Chart {
        id: id.into(),
        title: title.into(),
        svg: bar_chart(id, title, desc, bars),
        columns,
        rows: rows_of(bars),
        more: bars.len().saturating_sub(MAX_BARS),
    }
}

fn step_section(
    id: &str,
    title: &str,
    desc: &str,
    steps: &[Step],
    now: i64,
    capacity: Option<u64>,
) -> Chart {
    Chart {
        id: id.into(),
        title: title.into(),
        svg: step_chart(id, title, desc, steps, now, capacity),
        columns: ("From", "Seats in use", ""),
        rows: steps
            .iter()
            .map(|s| Row {
                label: when(s.at),
                value: s.value.to_string(),
                limit: String::new(),
                overage: String::new(),
            })
            .collect(),
        more: 0,
    }
}

/// One product's section of the overview.
struct ProductUsage {
    code: String,
    name: String,
    licenses: usize,
    seats: i64,
    seats_used: i64,
    charts: Vec<Chart>,
}

#[derive(Template)]
#[template(path = "console/usage.html")]
struct ProductsPage<'a> {
    frame: Frame<'a>,
    products: Vec<ProductUsage>,
}

struct Limits {
    feature: String,
    consumed: i64,
    total_limit: String,
    overage: String,
    device_limit: String,
}

#[derive(Template)]
#[template(path = "console/usage_license.html")]
struct LicensePage<'a> {
    frame: Frame<'a>,
    license: &'a LicenseInfo,
    active_devices: usize,
    limits: Vec<Limits>,
    charts: Vec<Chart>,
}

fn refusal(state: &AppState, signed: &Signed, e: PortalError) -> Response {
    signed.refusal(state, &ApiError::from(e))
}

fn clamp(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

async fn products_page(State(state): State<AppState>, signed: Signed) -> Response {
    if let Err(r) = signed.require(&state, Action::Read) {
        return r;
    }
    let scope = signed.staff.products.as_deref();
    let portal = &state.portal;
    let (products, licenses, activations) = match (
        portal.products(scope).await,
        portal.licenses(scope).await,
        portal.activations(None, scope).await,
    ) {
        (Ok(p), Ok(l), Ok(a)) => (p, l, a),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return refusal(&state, &signed, e),
    };
    let now = chrono::Utc::now().timestamp();
    let mut out = Vec::new();
    for product in products {
        let mut mine: Vec<&LicenseInfo> = licenses
            .iter()
            .filter(|l| l.product == product.code)
            .collect();
        let spans: Vec<_> = activations
            .iter()
            .filter(|a| a.product == product.code)
            .filter_map(span)
            .collect();
        let seats: i64 = mine.iter().map(|l| l.seats).sum();
        let seats_used: i64 = mine.iter().map(|l| l.seats_used).sum();
        let code = &product.code;
        let steps = seats_over_time(&spans);
        let over_time = step_section(
            &format!("seats-{}", web::file_stem(code)),
            &format!("Seats in use over time, {code}"),
            &format!(
                "Seats held by the activations of {code}'s {} license(s), from their \
                 activations and deactivations; {seats_used} of {seats} seats in use now.",
                mine.len()
            ),
            &steps,
            now,
            Some(clamp(seats)),
        );
        mine.sort_by(|a, b| b.seats_used.cmp(&a.seats_used).then(a.id.cmp(&b.id)));
        let per_license: Vec<Bar> = mine
            .iter()
            .map(|l| Bar {
                label: match &l.customer {
                    Some(c) => format!("{} ({c})", l.id),
                    None => l.id.clone(),
                },
                value: clamp(l.seats_used),
                limit: Some(clamp(l.seats)),
            })
            .collect();
        let by_license = bar_section(
            &format!("licenses-{}", web::file_stem(code)),
            &format!("Seats used per license, {code}"),
            &format!("Seats used of each license's seats, most used first ({code})."),
            ("License", "Seats used", "Seats"),
            &per_license,
        );
        let mut consumed: BTreeMap<String, u64> = BTreeMap::new();
        for l in &mine {
            for (feature, total) in &l.usage {
                let entry = consumed.entry(feature.clone()).or_default();
                *entry = entry.saturating_add(clamp(*total));
            }
        }
        let by_feature: Vec<Bar> = consumed
            .into_iter()
            .map(|(label, value)| Bar {
                label,
                value,
                limit: None,
            })
            .collect();
        let consumption = bar_section(
            &format!("consumption-{}", web::file_stem(code)),
            &format!("Consumption per feature, {code}"),
            &format!(
                "Units consumed per feature across {code}'s licenses, as reported by their \
                 devices (limits are per license: open a license for them)."
            ),
            ("Feature", "Consumed", ""),
            &by_feature,
        );
        out.push(ProductUsage {
            code: product.code.clone(),
            name: product.name.clone(),
            licenses: mine.len(),
            seats,
            seats_used,
            charts: vec![over_time, by_license, consumption],
        });
    }
    web::page(
        StatusCode::OK,
        &ProductsPage {
            frame: signed.frame(&state),
            products: out,
        },
    )
}

async fn license_page(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = signed.require(&state, Action::Read) {
        return r;
    }
    let portal = &state.portal;
    let license = match portal.license(&id).await {
        Ok(l) => l,
        Err(e) => return refusal(&state, &signed, e),
    };
    if let Err(r) = signed.sees(&state, &license.product, "license", &id) {
        return r;
    }
    let (policy, activations) = match (
        portal.policy(&license.policy).await,
        portal.activations(Some(&id), None).await,
    ) {
        (Ok(p), Ok(a)) => (p, a),
        (Err(e), _) | (_, Err(e)) => return refusal(&state, &signed, e),
    };
    let features: Features = license
        .features
        .clone()
        .unwrap_or_else(|| policy.features.clone());
    let now = chrono::Utc::now().timestamp();
    let spans: Vec<_> = activations.iter().filter_map(span).collect();
    let over_time = step_section(
        "seats",
        &format!("Seats in use over time, license {id}"),
        &format!(
            "Seats held by the license's activations, from their activations and \
             deactivations; {} of {} seats in use now.",
            license.seats_used, license.seats
        ),
        &seats_over_time(&spans),
        now,
        Some(clamp(license.seats)),
    );
    // License-wide consumption: every feature consumed, limited or given a limit.
    let mut names: Vec<String> = license.usage.keys().cloned().collect();
    names.extend(license.total_limits.keys().cloned());
    names.extend(
        features
            .iter()
            .filter(|(_, f)| f.limit.is_some())
            .map(|(name, _)| name.clone()),
    );
    names.sort();
    names.dedup();
    let totals: Vec<Bar> = names
        .iter()
        .map(|f| Bar {
            label: f.clone(),
            value: clamp(license.usage.get(f).copied().unwrap_or(0)),
            limit: license.total_limits.get(f).copied(),
        })
        .collect();
    let limits = names
        .iter()
        .zip(&totals)
        .map(|(f, bar)| Limits {
            feature: f.clone(),
            consumed: license.usage.get(f).copied().unwrap_or(0),
            total_limit: bar.limit.map_or_else(|| "none".into(), |l| l.to_string()),
            overage: bar.overage().to_string(),
            device_limit: match features.get(f) {
                Some(feature) => match (feature.limit, feature.overage, feature.max_overage) {
                    (None, _, _) => "none".into(),
                    (Some(l), false, _) => l.to_string(),
                    (Some(l), true, None) => format!("{l}, overage allowed"),
                    (Some(l), true, Some(cap)) => format!("{l}, overage up to {cap} more"),
                },
                None => "not licensed".into(),
            },
        })
        .collect();
    let consumption = bar_section(
        "consumption",
        &format!("Consumption against license-wide limits, license {id}"),
        "Units consumed per feature across every device of the license, as reported, against \
         the license-wide limit where there is one; the part beyond it is overage.",
        ("Feature", "Consumed", "License-wide limit"),
        &totals,
    );
    let active: Vec<&Activation> = activations.iter().filter(|a| a.state == "active").collect();
    let mut per_device = Vec::new();
    for a in &active {
        for (name, feature) in features.iter().filter(|(_, f)| f.limit.is_some()) {
            per_device.push(Bar {
                label: format!("{} · {name}", shorten(&a.device_kid, 12)),
                value: clamp(a.usage.get(name).copied().unwrap_or(0)),
                limit: feature.limit,
            });
        }
    }
    let devices = bar_section(
        "devices",
        &format!("Consumption per active device, license {id}"),
        "Units each active device consumed of each feature that has a per-device limit, \
         against that limit; the part beyond it is overage.",
        ("Device · feature", "Consumed", "Per-device limit"),
        &per_device,
    );
    web::page(
        StatusCode::OK,
        &LicensePage {
            frame: signed.frame(&state),
            license: &license,
            active_devices: active.len(),
            limits,
            charts: vec![over_time, consumption, devices],
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn widths(svg: &str, class: &str) -> Vec<f64> {
        svg.split(&format!("<rect class=\"{class}\""))
            .skip(1)
            .filter_map(|r| r.split("width=\"").nth(1))
            .filter_map(|r| r.split('"').next())
            .filter_map(|w| w.parse().ok())
            .collect()
    }

    fn bar(label: &str, value: u64, limit: Option<u64>) -> Bar {
        Bar {
            label: label.into(),
            value,
            limit,
        }
    }

    #[test]
    fn bars_scale_to_the_largest_value_or_limit() {
        let svg = bar_chart(
            "c",
            "T",
            "D",
            &[
                bar("a", 50, None),
                bar("b", 100, None),
                bar("c", 25, Some(200)),
            ],
        );
        let w = widths(&svg, "bar");
        let area = WIDTH - LABEL_W - VALUE_W;
        assert_eq!(
            w,
            // Scaled to the largest limit, 200: 50, 100 and 25 are a quarter, a half and
            // an eighth of the width.
            vec![
                n(area / 4.0).parse().unwrap_or(-1.0),
                n(area / 2.0).parse().unwrap_or(-1.0),
                n(area / 8.0).parse().unwrap_or(-1.0)
            ]
        );
        assert!(svg.contains("25 / 200"), "{svg}");
        assert!(svg.starts_with(
            "<svg class=\"chart\" id=\"c\" role=\"img\" aria-labelledby=\"c-title c-desc\""
        ));
        assert!(svg.contains("<title id=\"c-title\">T</title><desc id=\"c-desc\">D</desc>"));
    }

    #[test]
    fn the_part_beyond_a_limit_is_overage() {
        let b = bar("x", 150, Some(100));
        assert_eq!(b.overage(), 50);
        let svg = bar_chart("c", "T", "D", &[b]);
        let within = widths(&svg, "bar")[0];
        let over = widths(&svg, "bar-over")[0];
        assert!((within / over - 2.0).abs() < 0.05, "{within} {over}");
        assert!(svg.contains("150 / 100 (+50)"), "{svg}");
        assert_eq!(bar("y", 10, Some(100)).overage(), 0);
        assert_eq!(bar("z", 10, None).overage(), 0);
    }

    #[test]
    fn empty_data_says_so() {
        let svg = bar_chart("c", "T", "D", &[]);
        assert!(
            svg.contains("No data yet") && svg.ends_with("</svg>"),
            "{svg}"
        );
        let svg = step_chart("s", "T", "D", &[], 0, Some(3));
        assert!(svg.contains("No seat was taken yet"), "{svg}");
        assert!(seats_over_time(&[]).is_empty());
    }

    #[test]
    fn huge_values_stay_inside_the_chart() {
        let svg = bar_chart(
            "c",
            "T",
            "D",
            &[bar("a", u64::MAX, Some(u64::MAX / 2)), bar("b", 1, None)],
        );
        let area = WIDTH - LABEL_W - VALUE_W;
        for w in widths(&svg, "bar")
            .into_iter()
            .chain(widths(&svg, "bar-over"))
        {
            assert!((0.0..=area + 0.1).contains(&w), "{w}: {svg}");
        }
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        let steps = seats_over_time(&[(0, None, u64::MAX), (5, None, u64::MAX)]);
        assert_eq!(steps.last().map(|s| s.value), Some(u64::MAX));
        let svg = step_chart("s", "T", "D", &steps, i64::MAX, None);
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
    }

    #[test]
    fn labels_and_titles_are_escaped() {
        let svg = bar_chart(
            "c",
            "<T&>",
            "\"D'",
            &[bar("<script>alert(1)</script>", 1, None)],
        );
        assert!(!svg.contains("<script"), "{svg}");
        assert!(
            svg.contains("&lt;T&amp;&gt;") && svg.contains("&quot;D&#39;"),
            "{svg}"
        );
        assert!(svg.contains("&lt;script&gt;"), "{svg}");
    }

    #[test]
    fn seats_rise_and_fall_with_activations() {
        // Two devices, one pool of 3, one device gone at t=30.
        let steps = seats_over_time(&[(10, Some(30), 1), (20, None, 1), (25, None, 3)]);
        assert_eq!(
            steps,
            vec![
                Step { at: 10, value: 1 },
                Step { at: 20, value: 2 },
                Step { at: 25, value: 5 },
                Step { at: 30, value: 4 },
            ]
        );
        // A seat given back at the moment another is taken: no step.
        let steps = seats_over_time(&[(0, Some(5), 1), (5, None, 1)]);
        assert_eq!(steps, vec![Step { at: 0, value: 1 }]);
        let svg = step_chart("s", "T", "D", &steps, 100, Some(2));
        assert!(
            svg.contains("class=\"limit\"") && svg.contains("2 seats"),
            "{svg}"
        );
    }
}
