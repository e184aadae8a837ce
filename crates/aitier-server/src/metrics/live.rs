//! What is read at scrape time from where it is kept: the providers'
//! counters and histograms per model, each routed model's deployments
//! (load, health, breaker), the limits' refusals and the ledger.
use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;

use aitier_core::{EngineHistograms, ModelRegistry, Provider, ProviderStats};
use aitier_tenancy::Tenancy;
use aitier_upstream::{BreakerState, Deployment};

use crate::deployments::Routers;

/// name (counters without `_total`, which the encoder adds), type, help,
/// and how to read it from the stats.
type Series = (
    &'static str,
    MetricType,
    &'static str,
    fn(&ProviderStats) -> u64,
);

const PROVIDER_SERIES: [Series; 12] = [
    (
        "aitier_prompt_tokens",
        MetricType::Counter,
        "Prompt tokens accepted.",
        |s| s.prompt_tokens,
    ),
    (
        "aitier_prompt_tokens_computed",
        MetricType::Counter,
        "Prompt tokens evaluated rather than served from the prefix cache.",
        |s| s.prompt_computed,
    ),
    (
        "aitier_generated_tokens",
        MetricType::Counter,
        "Tokens generated.",
        |s| s.generated_tokens,
    ),
    (
        "aitier_requests_finished",
        MetricType::Counter,
        "Requests that ran to completion.",
        |s| s.requests_finished,
    ),
    (
        "aitier_requests_cancelled",
        MetricType::Counter,
        "Requests dropped because the client went away.",
        |s| s.requests_cancelled,
    ),
    (
        "aitier_sequences_running",
        MetricType::Gauge,
        "Sequences decoding now.",
        |s| s.running,
    ),
    (
        "aitier_sequences_waiting",
        MetricType::Gauge,
        "Sequences waiting for a slot.",
        |s| s.waiting,
    ),
    (
        "aitier_grammar_masks",
        MetricType::Counter,
        "Token masks computed for constrained sequences.",
        |s| s.grammar_masks,
    ),
    (
        "aitier_grammar_mask_microseconds",
        MetricType::Counter,
        "Microseconds spent computing token masks (overlapping the decode).",
        |s| s.grammar_mask_micros,
    ),
    (
        "aitier_kv_cells_used",
        MetricType::Gauge,
        "KV cache cells holding tokens: running sequences and the prefixes idle slots keep.",
        |s| s.kv_cells_used,
    ),
    (
        "aitier_kv_cells",
        MetricType::Gauge,
        "KV cache cells in all (slots x context per slot).",
        |s| s.kv_cells_total,
    ),
    (
        "aitier_sequences_preempted",
        MetricType::Counter,
        "Sequences paused to hand their slot to another tenant over its share.",
        |s| s.preempted,
    ),
];

/// name, help, and which of an engine's histograms.
type EngineSeries = (
    &'static str,
    &'static str,
    fn(&EngineHistograms) -> &Histogram,
);

const ENGINE_HISTOGRAMS: [EngineSeries; 3] = [
    (
        "aitier_queue_wait_seconds",
        "From a sequence's arrival at the engine until it has a slot.",
        |h| &h.queue_wait_seconds,
    ),
    (
        "aitier_step_tokens",
        "Tokens in each decode step (decoding sequences plus prompt chunks).",
        |h| &h.step_tokens,
    ),
    (
        "aitier_step_seconds",
        "Wall time of each decode step.",
        |h| &h.step_seconds,
    ),
];

/// name, help, and how to read it from a deployment.
type DeploymentGauge = (&'static str, &'static str, fn(&Deployment) -> i64);

const DEPLOYMENT_GAUGES: [DeploymentGauge; 3] = [
    (
        "aitier_deployment_outstanding",
        "Requests in flight to the deployment.",
        |d| i64::from(d.outstanding()),
    ),
    (
        "aitier_deployment_healthy",
        "1 when the last health check passed.",
        |d| i64::from(d.healthy()),
    ),
    (
        "aitier_deployment_breaker",
        "Circuit breaker: 0 closed, 1 half-open, 2 open.",
        |d| match d.breaker_state() {
            BreakerState::Closed => 0,
            BreakerState::HalfOpen => 1,
            BreakerState::Open => 2,
        },
    ),
];

/// Reads the providers, routers and tenancy when scraped.
pub(super) struct Live {
    pub models: Arc<ModelRegistry>,
    pub routers: Routers,
    pub tenancy: Arc<Tenancy>,
}

impl fmt::Debug for Live {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Live")
    }
}

impl Live {
    /// Each ready model once, under its own name (not its aliases').
    fn models(&self) -> Vec<(String, Arc<dyn Provider>)> {
        let mut seen = HashSet::new();
        self.models
            .ready()
            .into_iter()
            .filter(|(_, p)| seen.insert(Arc::as_ptr(p) as *const () as usize))
            .collect()
    }

    fn providers(&self, encoder: &mut DescriptorEncoder) -> fmt::Result {
        let stats: Vec<(String, ProviderStats)> = self
            .models()
            .into_iter()
            .map(|(name, p)| (name, p.stats()))
            .collect();
        for (name, kind, help, read) in PROVIDER_SERIES {
            let mut family = encoder.encode_descriptor(name, help, None, kind)?;
            for (model, s) in &stats {
                let labels = [("model", model.as_str())];
                let sample = family.encode_family(&labels)?;
                match kind {
                    MetricType::Counter => ConstCounter::new(read(s)).encode(sample)?,
                    _ => ConstGauge::new(read(s) as i64).encode(sample)?,
                }
            }
        }
        Ok(())
    }

    fn deployments(&self, encoder: &mut DescriptorEncoder) -> fmt::Result {
        let routers = self.routers.read().unwrap_or_else(|p| p.into_inner());
        for (name, help, read) in DEPLOYMENT_GAUGES {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (model, router) in routers.iter() {
                for d in router.deployments() {
                    let labels = [("model", model.as_str()), ("deployment", d.name.as_str())];
                    ConstGauge::new(read(d)).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        Ok(())
    }

    /// Every local engine's histograms, by model and deployment (a lone
    /// local model is its own deployment).
    fn engines(&self, encoder: &mut DescriptorEncoder) -> fmt::Result {
        let mut engines: Vec<(String, String, EngineHistograms)> = Vec::new();
        for (model, p) in self.models() {
            if let Some(h) = p.histograms() {
                engines.push((model.clone(), model, h));
            }
        }
        let routers = self.routers.read().unwrap_or_else(|p| p.into_inner());
        for (model, router) in routers.iter() {
            for d in router.deployments() {
                if let Some(h) = d.provider.histograms() {
                    engines.push((model.clone(), d.name.clone(), h));
                }
            }
        }
        drop(routers);
        for (name, help, read) in ENGINE_HISTOGRAMS {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
            for (model, deployment, h) in &engines {
                let labels = [
                    ("model", model.as_str()),
                    ("deployment", deployment.as_str()),
                ];
                read(h).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }

    fn tenancy(&self, encoder: &mut DescriptorEncoder) -> fmt::Result {
        let mut family = encoder.encode_descriptor(
            "aitier_limit_refusals",
            "Requests refused by tenancy: rate, concurrency and budget limits, or limits that could not be checked.",
            None,
            MetricType::Counter,
        )?;
        for (why, n) in self.tenancy.refusals().counts() {
            let labels = [("reason", why.as_str())];
            ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
        }
        let family = encoder.encode_descriptor(
            "aitier_limits_unchecked",
            "Requests let through without a limit check because the limiter (Redis) could not be reached (limits_fail_open).",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(self.tenancy.refusals().unchecked()).encode(family)?;
        let ledger = self.tenancy.ledger();
        let counts = ledger.counts();
        for (name, help, n) in [
            (
                "aitier_ledger_rows_written",
                "Usage rows written to the database.",
                counts.written.load(Ordering::Relaxed),
            ),
            (
                "aitier_ledger_rows_dropped",
                "Usage rows the database refused alone (logged in full, then dropped).",
                counts.dropped.load(Ordering::Relaxed),
            ),
            (
                "aitier_ledger_write_failures",
                "Writes of usage rows the database refused (down, disk full); the rows are kept and retried.",
                counts.failed_writes.load(Ordering::Relaxed),
            ),
        ] {
            let family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            ConstCounter::new(n).encode(family)?;
        }
        let family = encoder.encode_descriptor(
            "aitier_ledger_pending",
            "Usage rows of running requests plus rows waiting to be written; at the ledger queue's size new requests are refused.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(ledger.pending() as i64).encode(family)
    }
}

/// Tasks alive on the async runtime the scrape runs on (the server's).
fn runtime(encoder: &mut DescriptorEncoder) -> fmt::Result {
    let tasks = tokio::runtime::Handle::try_current()
        .map(|h| h.metrics().num_alive_tasks())
        .unwrap_or(0);
    let family = encoder.encode_descriptor(
        "aitier_runtime_tasks",
        "Tasks alive on the async runtime: connections, requests, stream relays, background work.",
        None,
        MetricType::Gauge,
    )?;
    ConstGauge::new(tasks as i64).encode(family)
}

impl Collector for Live {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        self.providers(&mut encoder)?;
        self.engines(&mut encoder)?;
        self.deployments(&mut encoder)?;
        self.tenancy(&mut encoder)?;
        runtime(&mut encoder)
    }
}
