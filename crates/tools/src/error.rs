//! Errors of the tools.

/// An error of a tool, with what it was doing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{path}: {source}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Pdata(#[from] uthin_pdata::Error),
    #[error(transparent)]
    Thin(#[from] uthin_thin::Error),
    #[error("{0}")]
    Msg(String),
}

impl Error {
    /// An error with a plain message.
    pub fn msg(s: impl Into<String>) -> Self {
        Error::Msg(s.into())
    }
}

/// Result of the tools.
pub type Result<T> = std::result::Result<T, Error>;
