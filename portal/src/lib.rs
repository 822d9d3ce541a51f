//! `lic-portal`: the vendor's side of lic. So far: vendor signing keys. The database,
//! issuing and applying files and the HTTP API follow (see the project's issues).

pub mod keycmd;
