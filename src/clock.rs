//! The controller's notion of "now", injectable so tests can move time forward.

use std::sync::Arc;
use std::time::SystemTime;

use aws_smithy_async::time::TimeSource;
use jiff::Timestamp;

/// A source of the current time for rotation decisions and token signing.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// Adapts a [`Clock`] to the AWS SDK's time source, so tokens are signed at the controller's "now".
#[derive(Debug, Clone)]
pub struct ClockTimeSource(pub Arc<dyn Clock>);

impl TimeSource for ClockTimeSource {
    fn now(&self) -> SystemTime {
        SystemTime::from(self.0.now())
    }
}
