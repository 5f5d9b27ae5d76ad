//! `tracing` events of a child, forwarded to the parent (feature
//! `tracing`): in a child that forwards its `log` records, a global
//! `tracing` subscriber turns every event into a `log` record (its level,
//! target, module, file and line; the message, then the other fields as
//! `name=value`) and sends it on the same socket, so it reaches the
//! parent's logger as the child's `log` records do, named by the child.
//! A parent that uses `tracing` itself sees them as events through its
//! subscriber's `log` bridge (`tracing_log::LogTracer`, which
//! `tracing_subscriber`'s `init()` installs by default).
//!
//! Spans are not forwarded (only events); a child whose program installed
//! a `tracing` subscriber before (under fork, the parent's copy) keeps it.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record as SpanRecord};
use tracing::{Event, Level, Metadata, Subscriber};

/// The subscriber of a forwarding child.
struct Forward {
    level: tracing::level_filters::LevelFilter,
}

/// Installs the forwarding subscriber at `level`, unless the program has
/// a global subscriber already.
pub(super) fn install(level: log::LevelFilter) {
    let level = match level {
        log::LevelFilter::Off => return,
        log::LevelFilter::Error => tracing::level_filters::LevelFilter::ERROR,
        log::LevelFilter::Warn => tracing::level_filters::LevelFilter::WARN,
        log::LevelFilter::Info => tracing::level_filters::LevelFilter::INFO,
        log::LevelFilter::Debug => tracing::level_filters::LevelFilter::DEBUG,
        log::LevelFilter::Trace => tracing::level_filters::LevelFilter::TRACE,
    };
    let _ = tracing::subscriber::set_global_default(Forward { level });
}

fn log_level(level: &Level) -> log::Level {
    match *level {
        Level::ERROR => log::Level::Error,
        Level::WARN => log::Level::Warn,
        Level::INFO => log::Level::Info,
        Level::DEBUG => log::Level::Debug,
        Level::TRACE => log::Level::Trace,
    }
}

/// An event's fields as text: the message first, then `name=value`.
#[derive(Default)]
struct Fields {
    message: String,
    rest: String,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.rest, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.rest, " {}={value}", field.name());
        }
    }
}

impl Subscriber for Forward {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.is_event() && *metadata.level() <= self.level
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(self.level)
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &SpanRecord<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let metadata = event.metadata();
        let mut fields = Fields::default();
        event.record(&mut fields);
        let message = fields.message.trim_start();
        let rest = if message.is_empty() {
            fields.rest.trim_start()
        } else {
            &fields.rest
        };
        super::forward_record(
            &log::Record::builder()
                .level(log_level(metadata.level()))
                .target(metadata.target())
                .module_path(metadata.module_path())
                .file(metadata.file())
                .line(metadata.line())
                .args(format_args!("{message}{rest}"))
                .build(),
        );
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}
