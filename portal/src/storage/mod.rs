//! Storage: the database pool and its migrations ([`db`]), the seam the write jobs run
//! through on either backend ([`sql`]), and the writers that batch those jobs into group
//! commits. Everything here is below the operations: it runs the statements it is given
//! and decides nothing about licenses.

pub mod db;
mod pg;
pub mod sql;
pub mod writer;

pub use pg::Pg;
