//! A checked [`BreakerConfig`], in the units the breaker works in.

use std::time::Duration;

use crate::{
    clock::{Clock, duration_to_nanos},
    error::ErrorClass,
};

use super::{
    config::{BreakerConfig, Window, WindowKind, class_bit},
    error::ConfigError,
};

/// A checked configuration, in the units the breaker works in.
#[derive(Debug)]
pub(super) struct Settings {
    pub(super) failure_rate_threshold: f64,
    pub(super) window: WindowSettings,
    pub(super) min_calls: u32,
    pub(super) consecutive_failures: u32,
    pub(super) slow_call_nanos: Option<u64>,
    pub(super) slow_call_rate_threshold: f64,
    pub(super) open_duration: Duration,
    pub(super) open_duration_growth: f64,
    pub(super) max_open_duration: Duration,
    pub(super) open_duration_jitter: f64,
    pub(super) permitted_probes: u32,
    pub(super) probes_to_close: u32,
    pub(super) probe_timeout: Duration,
    pub(super) excluded: u8,
    pub(super) spread: Duration,
    pub(super) seed: Option<u64>,
    pub(super) clock: Clock,
}

#[derive(Clone, Copy, Debug)]
pub(super) enum WindowSettings {
    Count(u32),
    Time { bucket: u64, buckets: u32 },
}

impl Settings {
    /// Checks `config` and converts it.
    pub(super) fn new(config: &BreakerConfig) -> Result<Self, ConfigError> {
        let in_unit = |x: f64| x > 0.0 && x <= 1.0;
        if !in_unit(config.failure_rate_threshold) {
            return Err(ConfigError::FailureRateThreshold(
                config.failure_rate_threshold,
            ));
        }
        if !in_unit(config.slow_call_rate_threshold) {
            return Err(ConfigError::SlowCallRateThreshold(
                config.slow_call_rate_threshold,
            ));
        }
        if config.slow_call_duration == Some(Duration::ZERO) {
            return Err(ConfigError::ZeroSlowCallDuration);
        }
        let window = match config.window.0 {
            WindowKind::Count(calls) => {
                if calls.get() > Window::MAX_CALLS {
                    return Err(ConfigError::WindowTooLarge {
                        calls: calls.get(),
                        max: Window::MAX_CALLS,
                    });
                }
                if config.min_calls > calls {
                    return Err(ConfigError::MinCallsExceedWindow {
                        min_calls: config.min_calls.get(),
                        window: calls.get(),
                    });
                }
                WindowSettings::Count(calls.get())
            }
            WindowKind::Time { duration, buckets } => {
                let bucket = duration / buckets.get();
                if bucket < Duration::from_millis(1) {
                    return Err(ConfigError::TimeWindow {
                        duration,
                        buckets: buckets.get(),
                    });
                }
                WindowSettings::Time {
                    bucket: duration_to_nanos(bucket),
                    buckets: buckets.get(),
                }
            }
        };
        if config.open_duration.is_zero() {
            return Err(ConfigError::ZeroOpenDuration);
        }
        if config.max_open_duration < config.open_duration {
            return Err(ConfigError::MaxOpenDuration {
                base: config.open_duration,
                max: config.max_open_duration,
            });
        }
        if !(config.open_duration_growth.is_finite() && config.open_duration_growth >= 1.0) {
            return Err(ConfigError::OpenDurationGrowth(config.open_duration_growth));
        }
        if !(0.0..=1.0).contains(&config.open_duration_jitter) {
            return Err(ConfigError::OpenDurationJitter(config.open_duration_jitter));
        }
        if config.probe_timeout.is_zero() {
            return Err(ConfigError::ZeroProbeTimeout);
        }
        if config.spread.is_zero() {
            return Err(ConfigError::ZeroSpread);
        }
        Ok(Settings {
            failure_rate_threshold: config.failure_rate_threshold,
            window,
            min_calls: config.min_calls.get(),
            consecutive_failures: config.consecutive_failures,
            slow_call_nanos: config.slow_call_duration.map(duration_to_nanos),
            slow_call_rate_threshold: config.slow_call_rate_threshold,
            open_duration: config.open_duration,
            open_duration_growth: config.open_duration_growth,
            max_open_duration: config.max_open_duration,
            open_duration_jitter: config.open_duration_jitter,
            permitted_probes: config.permitted_probes.get(),
            probes_to_close: config
                .probes_to_close
                .unwrap_or(config.permitted_probes)
                .get(),
            probe_timeout: config.probe_timeout,
            excluded: config.excluded,
            spread: config.spread,
            seed: config.seed,
            clock: config.clock.clone().unwrap_or_default(),
        })
    }

    /// Whether errors of `class` are left out of every count.
    pub(super) const fn excludes(&self, class: ErrorClass) -> bool {
        self.excluded & class_bit(class) != 0
    }
}
