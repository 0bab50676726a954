//! Prometheus metrics: counters and histograms in the text exposition format.
//!
//! A function lives for one invocation (or a warm instance for a few), so nobody scrapes
//! it: the runtime *pushes* the registry at the end of each invocation to VictoriaMetrics
//! (`/api/v1/import/prometheus`) or a Pushgateway (`/metrics/job/<job>`), and the HTTP
//! host also serves `GET /metrics` for a scraper. A push failure is logged, never fatal.
//!
//! Hand-written rather than a metrics crate: two metric kinds and one text format are
//! all we need, and the functions stay small to cold-start.

mod config;
pub use config::MetricsConfig;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// Upper bounds (seconds) for phase durations: sub-second API calls up to a 10-minute catch-up.
pub const DURATION_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

type Labels = Vec<(String, String)>;

#[derive(Debug, Clone)]
struct Histogram {
    buckets: Vec<u64>,
    sum: f64,
    count: u64,
}

#[derive(Default)]
struct Family {
    help: &'static str,
    counters: BTreeMap<Labels, f64>,
    histograms: BTreeMap<Labels, Histogram>,
}

/// A set of metric families. Most code uses the process-wide [`global`] one.
#[derive(Default)]
pub struct Registry {
    families: Mutex<BTreeMap<&'static str, Family>>,
}

/// The process-wide registry.
pub fn global() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Registry::default)
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    let mut l: Labels = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    l.sort();
    l
}

impl Registry {
    /// Add `by` to a counter.
    pub fn inc(&self, name: &'static str, help: &'static str, pairs: &[(&str, &str)], by: f64) {
        let mut f = self.families.lock().unwrap_or_else(|p| p.into_inner());
        let family = f.entry(name).or_default();
        family.help = help;
        *family.counters.entry(labels(pairs)).or_insert(0.0) += by;
    }

    /// Record one observation (seconds) in a histogram with [`DURATION_BUCKETS`].
    pub fn observe(
        &self,
        name: &'static str,
        help: &'static str,
        pairs: &[(&str, &str)],
        value: Duration,
    ) {
        let v = value.as_secs_f64();
        let mut f = self.families.lock().unwrap_or_else(|p| p.into_inner());
        let family = f.entry(name).or_default();
        family.help = help;
        let h = family
            .histograms
            .entry(labels(pairs))
            .or_insert_with(|| Histogram {
                buckets: vec![0; DURATION_BUCKETS.len()],
                sum: 0.0,
                count: 0,
            });
        for (i, bound) in DURATION_BUCKETS.iter().enumerate() {
            if v <= *bound {
                h.buckets[i] += 1;
            }
        }
        h.sum += v;
        h.count += 1;
    }

    pub fn is_empty(&self) -> bool {
        self.families.lock().map(|f| f.is_empty()).unwrap_or(true)
    }

    /// The Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let f = self.families.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        for (name, family) in f.iter() {
            let kind = if family.histograms.is_empty() {
                "counter"
            } else {
                "histogram"
            };
            let _ = writeln!(out, "# HELP {name} {}", family.help);
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (l, v) in &family.counters {
                let _ = writeln!(out, "{name}{} {}", render_labels(l, None), number(*v));
            }
            for (l, h) in &family.histograms {
                for (bound, n) in DURATION_BUCKETS.iter().zip(&h.buckets) {
                    let _ = writeln!(
                        out,
                        "{name}_bucket{} {n}",
                        render_labels(l, Some(&number(*bound)))
                    );
                }
                let _ = writeln!(
                    out,
                    "{name}_bucket{} {}",
                    render_labels(l, Some("+Inf")),
                    h.count
                );
                let _ = writeln!(
                    out,
                    "{name}_sum{} {}",
                    render_labels(l, None),
                    number(h.sum)
                );
                let _ = writeln!(out, "{name}_count{} {}", render_labels(l, None), h.count);
            }
        }
        out
    }
}

fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

fn render_labels(l: &Labels, le: Option<&str>) -> String {
    let mut parts: Vec<String> = l
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Where to push, from `[metrics]` in the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PushFormat {
    /// `POST <url>/api/v1/import/prometheus` (VictoriaMetrics, vmagent).
    Victoriametrics,
    /// `POST <url>/metrics/job/<job>` (Prometheus Pushgateway).
    Pushgateway,
}

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("pushing metrics to {url} failed: {message}")]
    Failed { url: String, message: String },
}

/// Push the registry's text. `url` is the server's base URL (no credentials in it).
pub async fn push(
    registry: &Registry,
    url: &str,
    format: PushFormat,
    job: &str,
    timeout: Duration,
) -> Result<(), PushError> {
    let target = match format {
        PushFormat::Victoriametrics => {
            format!(
                "{}/api/v1/import/prometheus?extra_label=job={job}",
                url.trim_end_matches('/')
            )
        }
        PushFormat::Pushgateway => format!("{}/metrics/job/{job}", url.trim_end_matches('/')),
    };
    let fail = |message: String| PushError::Failed {
        url: url.to_string(),
        message,
    };
    let response = reqwest::Client::new()
        .post(&target)
        .timeout(timeout)
        .header("content-type", "text/plain; version=0.0.4")
        .body(registry.render())
        .send()
        .await
        .map_err(|e| fail(e.without_url().to_string()))?;
    if !response.status().is_success() {
        return Err(fail(format!("HTTP {}", response.status())));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let r = Registry::default();
        r.inc(
            "pgsurge_decisions_total",
            "Decisions.",
            &[("decision", "scale-up"), ("reason", "x\"y")],
            1.0,
        );
        r.inc(
            "pgsurge_decisions_total",
            "Decisions.",
            &[("reason", "x\"y"), ("decision", "scale-up")],
            1.0,
        );
        r.observe(
            "pgsurge_phase_seconds",
            "Phases.",
            &[("phase", "clone")],
            Duration::from_millis(300),
        );
        let text = r.render();
        assert!(
            text.contains("# TYPE pgsurge_decisions_total counter"),
            "{text}"
        );
        assert!(
            text.contains(r#"pgsurge_decisions_total{decision="scale-up",reason="x\"y"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"pgsurge_phase_seconds_bucket{phase="clone",le="0.25"} 0"#),
            "{text}"
        );
        assert!(
            text.contains(r#"pgsurge_phase_seconds_bucket{phase="clone",le="0.5"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"pgsurge_phase_seconds_bucket{phase="clone",le="+Inf"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"pgsurge_phase_seconds_count{phase="clone"} 1"#),
            "{text}"
        );
    }
}
