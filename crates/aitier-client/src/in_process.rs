//! The in-process transport: the tier's own request path (decoding, keys,
//! limits, admission, scheduler, ledger) called directly, with no socket
//! and no JSON in between.
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use aitier_core::frontend::Frontend;

use aitier_protocol::embeddings::{EmbeddingRequest, EmbeddingResponse};
use aitier_protocol::models::ModelList;
use aitier_server::error::ApiError;
use aitier_server::tier::Tier;

use crate::error::Error;
use crate::ChunkStream;

#[derive(Clone)]
pub(crate) struct InProcess {
    tier: Arc<Tier>,
    key: Option<String>,
}

fn refused(e: ApiError) -> Error {
    Error::Api {
        status: e.status.as_u16(),
        error: e.body,
        retry_after: e.retry_after_ms.map(Duration::from_millis),
    }
}

impl InProcess {
    pub(crate) fn new(tier: Arc<Tier>, key: Option<String>) -> Self {
        Self { tier, key }
    }

    async fn principal(&self) -> Result<aitier_tenancy::Principal, Error> {
        self.tier
            .authenticate(self.key.as_deref())
            .await
            .map_err(refused)
    }

    pub(crate) async fn generate<F: Frontend>(
        &self,
        endpoint: &str,
        req: F::Request,
    ) -> Result<F::Response, Error> {
        let who = self.principal().await?;
        self.tier
            .generate::<F>(&who, endpoint, req)
            .await
            .map_err(refused)
    }

    pub(crate) async fn generate_stream<F: Frontend>(
        &self,
        endpoint: &str,
        req: F::Request,
    ) -> Result<ChunkStream<F::Chunk>, Error> {
        let who = self.principal().await?;
        let chunks = self
            .tier
            .generate_stream::<F>(&who, endpoint, req)
            .await
            .map_err(refused)?;
        Ok(chunks
            .map(|c| c.map_err(|e| Error::Stream { error: e.body }))
            .boxed())
    }

    pub(crate) async fn embed(&self, req: EmbeddingRequest) -> Result<EmbeddingResponse, Error> {
        let who = self.principal().await?;
        self.tier.embed(&who, req).await.map_err(refused)
    }

    pub(crate) async fn models(&self) -> Result<ModelList, Error> {
        let who = self.principal().await?;
        Ok(self.tier.models(&who))
    }
}
