//! The listener's settings: address, body limit, keep-alive, drain, and
//! the metrics listener.
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use super::args::{self, ServeArgs};
use super::error::ConfigError;
use super::file::FileConfig;
use super::{DEFAULT_KEEP_ALIVE_SECS, DEFAULT_MAX_BODY_BYTES, DEFAULT_METRICS_ADDR, DEFAULT_PORT};

/// How long each phase of a drain lasts (see `drain`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainTimes {
    /// From the signal until the listener closes.
    pub grace: Duration,
    /// From the signal until what is still running is cut.
    pub timeout: Duration,
}

impl Default for DrainTimes {
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(5),
            timeout: Duration::from_secs(30),
        }
    }
}

/// The listener's settings.
pub(super) struct Server {
    pub host: IpAddr,
    pub port: u16,
    pub max_body_bytes: usize,
    pub keep_alive: Duration,
    pub drain: DrainTimes,
    pub metrics_addr: Option<SocketAddr>,
    pub metrics_on_api: bool,
}

fn metrics_addr(args: &ServeArgs, file: &FileConfig) -> Result<Option<SocketAddr>, ConfigError> {
    let text = args
        .metrics_addr
        .as_deref()
        .or(file.server.metrics_addr.as_deref())
        .unwrap_or(DEFAULT_METRICS_ADDR);
    if text == "off" {
        return Ok(None);
    }
    let text = text.replace("localhost:", "127.0.0.1:");
    text.parse().map(Some).map_err(|_| {
        ConfigError::Invalid(format!(
            "metrics_addr `{text}`: write ADDR:PORT (e.g. 0.0.0.0:9090), or off"
        ))
    })
}

/// A duration from the flag, else the file, else `default`.
fn duration(
    flag: Option<Duration>,
    file: Option<&str>,
    name: &str,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match (flag, file) {
        (Some(d), _) => Ok(d),
        (None, Some(text)) => {
            args::parse_duration(text).map_err(|e| ConfigError::Invalid(format!("{name}: {e}")))
        }
        (None, None) => Ok(default),
    }
}

fn drain_times(args: &ServeArgs, file: &FileConfig) -> Result<DrainTimes, ConfigError> {
    let d = DrainTimes::default();
    let grace = duration(
        args.drain_grace,
        file.server.drain_grace.as_deref(),
        "drain_grace",
        d.grace,
    )?;
    let timeout = duration(
        args.drain_timeout,
        file.server.drain_timeout.as_deref(),
        "drain_timeout",
        d.timeout,
    )?;
    if timeout < grace {
        return Err(ConfigError::Invalid(format!(
            "drain_timeout ({timeout:?}) is shorter than drain_grace ({grace:?}): \
             the timeout is counted from the signal and includes the grace"
        )));
    }
    Ok(DrainTimes { grace, timeout })
}

pub(super) fn server(args: &ServeArgs, file: &FileConfig) -> Result<Server, ConfigError> {
    let host_text = args
        .host
        .clone()
        .or(file.server.host.clone())
        .unwrap_or_else(|| "127.0.0.1".into());
    let host = if host_text == "localhost" {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        host_text
            .parse()
            .map_err(|_| ConfigError::Host(host_text.clone()))?
    };
    let max_body_bytes = args
        .max_body_bytes
        .or(file.server.max_body_bytes)
        .unwrap_or(DEFAULT_MAX_BODY_BYTES);
    if max_body_bytes < 1024 {
        return Err(ConfigError::Invalid(
            "max_body_bytes must be at least 1024".into(),
        ));
    }
    let keep_alive = args
        .keep_alive_secs
        .or(file.server.keep_alive_secs)
        .unwrap_or(DEFAULT_KEEP_ALIVE_SECS);
    if keep_alive == 0 {
        return Err(ConfigError::Invalid(
            "keep_alive_secs must be at least 1".into(),
        ));
    }
    Ok(Server {
        host,
        port: args.port.or(file.server.port).unwrap_or(DEFAULT_PORT),
        max_body_bytes,
        keep_alive: Duration::from_secs(keep_alive),
        drain: drain_times(args, file)?,
        metrics_addr: metrics_addr(args, file)?,
        metrics_on_api: args.metrics_on_api || file.server.metrics_on_api.unwrap_or(false),
    })
}
