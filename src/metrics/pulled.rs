//! Figures kept by other parts of tandem (the WebSocket registry, the static cache, the
//! lifecycle) and read only when `/metrics` is scraped (docs/reference.md §4), so keeping them
//! costs their owners nothing beyond the atomic they already have.

use std::collections::HashMap;

use prometheus::{
    core::{Collector, Desc},
    proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType},
};

type Read = Box<dyn Fn() -> Vec<f64> + Send + Sync>;

/// One metric family whose values come from a closure at each scrape.
pub(super) struct Pulled {
    desc: Desc,
    kind: MetricType,
    /// The label and its values, one per value the closure returns; none for a single value.
    label: Option<(&'static str, &'static [&'static str])>,
    read: Read,
}

impl Pulled {
    pub(super) fn gauge(
        name: &str,
        help: &str,
        read: impl Fn() -> f64 + Send + Sync + 'static,
    ) -> prometheus::Result<Self> {
        Self::new(
            name,
            help,
            MetricType::GAUGE,
            None,
            Box::new(move || vec![read()]),
        )
    }

    pub(super) fn counter(
        name: &str,
        help: &str,
        read: impl Fn() -> f64 + Send + Sync + 'static,
    ) -> prometheus::Result<Self> {
        Self::new(
            name,
            help,
            MetricType::COUNTER,
            None,
            Box::new(move || vec![read()]),
        )
    }

    /// Counters, one per value of `label`, in the order `read` returns them.
    pub(super) fn counters(
        name: &str,
        help: &str,
        label: &'static str,
        values: &'static [&'static str],
        read: impl Fn() -> Vec<f64> + Send + Sync + 'static,
    ) -> prometheus::Result<Self> {
        Self::new(
            name,
            help,
            MetricType::COUNTER,
            Some((label, values)),
            Box::new(read),
        )
    }

    fn new(
        name: &str,
        help: &str,
        kind: MetricType,
        label: Option<(&'static str, &'static [&'static str])>,
        read: Read,
    ) -> prometheus::Result<Self> {
        let labels = label
            .map(|(name, _)| vec![name.to_string()])
            .unwrap_or_default();
        Ok(Self {
            desc: Desc::new(name.into(), help.into(), labels, HashMap::new())?,
            kind,
            label,
            read,
        })
    }

    fn metric(&self, value: f64, label_value: Option<&str>) -> Metric {
        let mut metric = Metric::default();
        if let (Some((name, _)), Some(value)) = (self.label, label_value) {
            let mut pair = LabelPair::default();
            pair.set_name(name.to_string());
            pair.set_value(value.to_string());
            metric.set_label(vec![pair]);
        }
        if self.kind == MetricType::COUNTER {
            let mut counter = Counter::default();
            counter.set_value(value);
            metric.set_counter(counter);
        } else {
            let mut gauge = Gauge::default();
            gauge.set_value(value);
            metric.set_gauge(gauge);
        }
        metric
    }
}

impl Collector for Pulled {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let values = (self.read)();
        let metrics = match self.label {
            Some((_, labels)) => labels
                .iter()
                .zip(values)
                .map(|(label, value)| self.metric(value, Some(label)))
                .collect(),
            None => values.into_iter().map(|v| self.metric(v, None)).collect(),
        };
        let mut family = MetricFamily::default();
        family.set_name(self.desc.fq_name.clone());
        family.set_help(self.desc.help.clone());
        family.set_field_type(self.kind);
        family.set_metric(metrics);
        vec![family]
    }
}
