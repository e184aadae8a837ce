#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {why}")]
    Read { path: String, why: String },
    #[error("{path}: {why}")]
    Parse { path: String, why: String },
    #[error("--model takes NAME=PATH, got `{0}`")]
    ModelSpec(String),
    #[error("host `{0}` is not an IP address")]
    Host(String),
    #[error("model name `{0}` is declared twice")]
    DuplicateModel(String),
    #[error("model `{name}`: file {path} not found{hint}")]
    MissingModel {
        name: String,
        path: String,
        hint: String,
    },
    #[error("{0}")]
    Invalid(String),
}
