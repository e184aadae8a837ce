//! The listener's settings: address, body limit, keep-alive, drain, and
//! the metrics listener.
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
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
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    pub metrics_addr: Option<SocketAddr>,
    pub metrics_on_api: bool,
    pub console: bool,
    pub cors_origins: Vec<String>,
    pub tls: Option<TlsFiles>,
}

/// The certificate chain and key HTTPS is served with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn tls(args: &ServeArgs, file: &FileConfig) -> Result<Option<TlsFiles>, ConfigError> {
    let cert = args.tls_cert.clone().or(file.server.tls_cert.clone());
    let key = args.tls_key.clone().or(file.server.tls_key.clone());
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some(TlsFiles { cert, key })),
        (None, None) => Ok(None),
        _ => Err(ConfigError::Invalid(
            "tls_cert and tls_key go together: set both, or neither".into(),
        )),
    }
}

/// `*`, or origins as browsers send them: scheme, host and port, no path.
fn cors_origins(args: &ServeArgs, file: &FileConfig) -> Result<Vec<String>, ConfigError> {
    let origins = if args.cors_origins.is_empty() {
        file.server.cors_origins.clone().unwrap_or_default()
    } else {
        args.cors_origins.clone()
    };
    let origins: Vec<String> = origins
        .iter()
        .map(|o| o.trim().to_string())
        .filter(|o| !o.is_empty())
        .collect();
    for o in &origins {
        let rest = o
            .strip_prefix("https://")
            .or_else(|| o.strip_prefix("http://"));
        let sane = rest.is_some_and(|r| {
            !r.is_empty() && !r.contains('/') && r.bytes().all(|b| b.is_ascii_graphic())
        });
        if o != "*" && !sane {
            return Err(ConfigError::Invalid(format!(
                "cors origin `{o}`: write scheme://host[:port] (e.g. https://app.example.com), or *"
            )));
        }
    }
    if origins.len() > 1 && origins.iter().any(|o| o == "*") {
        return Err(ConfigError::Invalid(
            "cors origin `*` allows every origin: list no other".into(),
        ));
    }
    Ok(origins)
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

fn client_timeout(
    flag: Option<Duration>,
    file: Option<&str>,
    name: &str,
) -> Result<Duration, ConfigError> {
    let d = duration(flag, file, name, DEFAULT_CLIENT_TIMEOUT)?;
    if d.is_zero() {
        return Err(ConfigError::Invalid(format!("{name} must be more than 0")));
    }
    Ok(d)
}

/// Long enough for a body of the largest size, or a pause in reading a
/// stream, on a slow link; short enough that a trickling or stalled client
/// does not hold a connection (and its request) for long.
const DEFAULT_CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

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
        read_timeout: client_timeout(
            args.read_timeout,
            file.server.read_timeout.as_deref(),
            "read_timeout",
        )?,
        write_timeout: client_timeout(
            args.write_timeout,
            file.server.write_timeout.as_deref(),
            "write_timeout",
        )?,
        metrics_addr: metrics_addr(args, file)?,
        metrics_on_api: args.metrics_on_api || file.server.metrics_on_api.unwrap_or(false),
        console: !args.no_console && file.server.console.unwrap_or(true),
        cors_origins: cors_origins(args, file)?,
        tls: tls(args, file)?,
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::{tempdir, write};
    use super::super::{ServeArgs, ServeConfig};

    #[test]
    fn cors_origins_and_tls_files_are_checked() {
        let d = tempdir();
        let gguf = write(&d, "m.gguf", "x");
        let cfg = write(
            &d,
            "c.toml",
            &format!("[server]\ncors_origins = [\"https://app.example.com\"]\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"\n[[models]]\nname = \"a\"\npath = \"{}\"\n", gguf.display()),
        );
        let mut args = ServeArgs {
            config: Some(cfg),
            ..Default::default()
        };
        let c = ServeConfig::resolve(&args).expect("valid");
        assert_eq!(c.cors_origins, ["https://app.example.com"]);
        let tls = c.tls.expect("both files set");
        assert_eq!((tls.cert, tls.key), ("c.pem".into(), "k.pem".into()));
        // Flags replace the file's list.
        args.cors_origins = vec!["http://localhost:5173".into(), "https://b.example".into()];
        let c = ServeConfig::resolve(&args).expect("valid");
        assert_eq!(c.cors_origins.len(), 2);
        args.cors_origins = vec!["*".into()];
        assert_eq!(
            ServeConfig::resolve(&args).expect("valid").cors_origins,
            ["*"]
        );
        for bad in [
            "app.example.com",
            "https://app.example.com/",
            "https://",
            "ftp://x",
        ] {
            args.cors_origins = vec![bad.into()];
            let e = ServeConfig::resolve(&args).expect_err(bad).to_string();
            assert!(e.contains("cors origin"), "{bad}: {e}");
        }
        args.cors_origins = vec!["*".into(), "https://a.example".into()];
        assert!(ServeConfig::resolve(&args).is_err());
        args.cors_origins.clear();
        args.tls_key = Some("other.pem".into());
        args.config = None;
        args.models = vec![format!("a={}", gguf.display())];
        let e = ServeConfig::resolve(&args)
            .expect_err("a key alone")
            .to_string();
        assert!(e.contains("tls_cert and tls_key go together"), "{e}");
    }
}
