//! (to be written)

use axum::Router;

use super::ConsolePage;
use crate::http::AppState;

/// This module's pages.
pub(super) const PAGES: &[ConsolePage] = &[];

pub(super) fn routes() -> Router<AppState> {
    Router::new()
}
