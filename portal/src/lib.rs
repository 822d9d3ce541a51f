//! `lic-portal`: the vendor's side of lic — the database where seats, entitlements and
//! usage are accounted for, applying uploaded files and issuing signed ones, the admin
//! CLI and the HTTP API.

pub mod accounts;
pub mod auth;
pub mod console;
pub mod error;
pub mod http;
pub mod ops;
pub mod rules;
pub mod storage;
pub mod vendor;
pub mod web;

pub use error::PortalError;
pub use ops::{Actor, Portal};
/// The storage modules, also at the crate root where they have always been.
pub use storage::{db, sql};
