pub mod admin;
pub mod generate;
pub mod health;
pub mod metrics;
pub mod models;
pub mod tokenize;
pub mod usage;
