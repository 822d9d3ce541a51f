//! The admin command's rooms: a module per command group, beside the argument
//! definitions and the dispatch in `main.rs`.

pub(crate) mod accounts;
pub(crate) mod activations;
pub(crate) mod apply;
pub(crate) mod audit;
pub(crate) mod catalog;
pub(crate) mod demo;
pub(crate) mod keys;
pub(crate) mod output;
pub(crate) mod serve;
pub(crate) mod tokens;
