//! `aitier._native`: the in-process tier for Python. Requests go in and
//! answers come out as OpenAI JSON text (the Python package makes plain
//! objects of it); every call that waits on the tier releases the GIL, so
//! a threaded app (Django, FastAPI's thread pool) keeps running Python
//! while the engine works.
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::stream::BoxStream;
use futures::StreamExt;
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use serde::de::DeserializeOwned;
use serde::Serialize;

use aitier_client::{Client, Error, Tier};

create_exception!(
    _native,
    TierError,
    PyException,
    "A refusal or failure: args are (status or None, error body JSON)."
);

/// The runtime the tier's tasks live on, one per process: the ledger's
/// writer and the model loads outlive any one call.
fn runtime() -> PyResult<&'static tokio::runtime::Runtime> {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    if let Some(rt) = RT.get() {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("aitier")
        .enable_all()
        .build()
        .map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
    Ok(RT.get_or_init(|| rt))
}

fn raise(e: Error) -> PyErr {
    let (status, body) = match &e {
        Error::Api { status, error, .. } => (Some(*status), error.clone()),
        Error::Stream { error } => (None, error.clone()),
        other => (
            None,
            aitier_protocol::ErrorDetail {
                message: other.to_string(),
                kind: "server_error".into(),
                param: None,
                code: None,
            },
        ),
    };
    let body =
        serde_json::to_string(&aitier_protocol::ErrorBody { error: body }).unwrap_or_default();
    TierError::new_err((status, body))
}

fn parse<T: DeserializeOwned>(body: &str) -> PyResult<T> {
    serde_json::from_str(body).map_err(|e| PyValueError::new_err(format!("invalid request: {e}")))
}

fn text<T: Serialize>(v: &T) -> PyResult<String> {
    serde_json::to_string(v).map_err(|e| PyRuntimeError::new_err(e.to_string()))
}

type Texts = BoxStream<'static, Result<String, Error>>;

/// A stream's chunks as JSON text, one per `next`.
#[pyclass(module = "aitier._native")]
struct Stream {
    chunks: Mutex<Option<Texts>>,
}

#[pymethods]
impl Stream {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// The next chunk, waited for without the GIL; `None` at the end.
    fn __next__(&self, py: Python<'_>) -> PyResult<Option<String>> {
        let rt = runtime()?;
        let next = py.detach(|| {
            let mut guard = self.chunks.lock().unwrap_or_else(|p| p.into_inner());
            let chunks = guard.as_mut()?;
            let next = rt.block_on(chunks.next());
            if next.is_none() {
                *guard = None;
            }
            next
        });
        next.transpose().map_err(raise)
    }

    /// Stops the generation (the tier bills what was generated).
    fn close(&self) {
        let mut guard = self.chunks.lock().unwrap_or_else(|p| p.into_inner());
        *guard = None;
    }
}

fn texts<C: Serialize + Send + 'static>(chunks: aitier_client::ChunkStream<C>) -> Stream {
    let texts = chunks.map(|c| {
        c.and_then(|c| serde_json::to_string(&c).map_err(|e| Error::Decode(e.to_string())))
    });
    Stream {
        chunks: Mutex::new(Some(texts.boxed())),
    }
}

/// The tier of one configuration, in this process.
#[pyclass(module = "aitier._native", frozen)]
struct NativeTier {
    tier: Arc<Tier>,
}

#[pymethods]
impl NativeTier {
    /// Loads the configuration file `aitier serve --config` takes (none:
    /// the embedded default models) and waits up to `ready_timeout`
    /// seconds for its models.
    #[new]
    #[pyo3(signature = (config=None, ready_timeout=600.0))]
    fn new(py: Python<'_>, config: Option<String>, ready_timeout: f64) -> PyResult<Self> {
        let rt = runtime()?;
        let timeout = Duration::try_from_secs_f64(ready_timeout)
            .map_err(|e| PyValueError::new_err(format!("ready_timeout: {e}")))?;
        let tier = py.detach(|| {
            rt.block_on(async {
                let tier = match config {
                    Some(path) => Tier::from_config(path).await?,
                    None => Tier::from_args(Default::default()).await?,
                };
                tier.ready(timeout).await?;
                Ok::<_, anyhow::Error>(tier)
            })
        });
        let tier = tier.map_err(|e| PyRuntimeError::new_err(format!("{e:#}")))?;
        Ok(Self {
            tier: Arc::new(tier),
        })
    }

    /// A client of this tier with `api_key` (none: the open tier's).
    #[pyo3(signature = (api_key=None))]
    fn client(&self, api_key: Option<String>) -> NativeClient {
        NativeClient {
            client: Client::in_process(self.tier.clone(), api_key.as_deref()),
        }
    }

    /// Writes every usage row still queued (for an app about to exit).
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let rt = runtime()?;
        py.detach(|| rt.block_on(self.tier.close()));
        Ok(())
    }
}

/// Calls on a tier under one key, JSON text in and out.
#[pyclass(module = "aitier._native", frozen)]
struct NativeClient {
    client: Client,
}

impl NativeClient {
    /// Runs `call` on the runtime without the GIL.
    fn wait<T: Send>(
        &self,
        py: Python<'_>,
        call: impl std::future::Future<Output = Result<T, Error>> + Send,
    ) -> PyResult<T> {
        let rt = runtime()?;
        py.detach(|| rt.block_on(call)).map_err(raise)
    }
}

#[pymethods]
impl NativeClient {
    fn chat(&self, py: Python<'_>, body: &str) -> PyResult<String> {
        let req = parse(body)?;
        text(&self.wait(py, self.client.chat(req))?)
    }

    fn chat_stream(&self, py: Python<'_>, body: &str) -> PyResult<Stream> {
        let req = parse(body)?;
        Ok(texts(self.wait(py, self.client.chat_stream(req))?))
    }

    fn complete(&self, py: Python<'_>, body: &str) -> PyResult<String> {
        let req = parse(body)?;
        text(&self.wait(py, self.client.complete(req))?)
    }

    fn complete_stream(&self, py: Python<'_>, body: &str) -> PyResult<Stream> {
        let req = parse(body)?;
        Ok(texts(self.wait(py, self.client.complete_stream(req))?))
    }

    fn embed(&self, py: Python<'_>, body: &str) -> PyResult<String> {
        let req = parse(body)?;
        text(&self.wait(py, self.client.embed(req))?)
    }

    fn models(&self, py: Python<'_>) -> PyResult<String> {
        text(&self.wait(py, self.client.models())?)
    }
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<NativeTier>()?;
    m.add_class::<NativeClient>()?;
    m.add_class::<Stream>()?;
    m.add("TierError", m.py().get_type::<TierError>())?;
    Ok(())
}
