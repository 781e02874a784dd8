//! A JSON body extractor whose rejections use the crate's error body.

use axum::Json;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

use crate::error::Error;

/// Like [`axum::Json`], but a missing content type or malformed JSON answers 400 with the
/// `{errcode, description}` body instead of axum's plain-text rejection.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Error> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(JsonBody(v)),
            Err(r) => Err(Error::BadRequest {
                reason: r.body_text(),
            }),
        }
    }
}
