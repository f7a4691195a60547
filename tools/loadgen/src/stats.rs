//! Percentiles of measured durations.

use std::time::Duration;

use serde_json::{Value, json};

/// p50/p90/p99/max in milliseconds of a set of samples.
pub fn summary(samples: &[Duration]) -> Value {
    if samples.is_empty() {
        return json!({"count": 0});
    }
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(|a, b| a.total_cmp(b));
    let pick = |p: f64| {
        let idx = ((p / 100.0) * (ms.len() as f64 - 1.0)).round() as usize;
        (ms[idx.min(ms.len() - 1)] * 1000.0).round() / 1000.0
    };
    json!({"count": ms.len(), "p50_ms": pick(50.0), "p90_ms": pick(90.0), "p99_ms": pick(99.0), "max_ms": pick(100.0)})
}

pub fn describe(name: &str, s: &Value) -> String {
    format!(
        "{name}: n={} p50={}ms p90={}ms p99={}ms max={}ms",
        s["count"], s["p50_ms"], s["p90_ms"], s["p99_ms"], s["max_ms"]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let s = summary(&samples);
        assert_eq!(s["p50_ms"], 51.0);
        assert_eq!(s["p99_ms"], 99.0);
        assert_eq!(s["max_ms"], 100.0);
    }
}
