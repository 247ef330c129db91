//! Configuration errors: the file, the field path and, where the parser knows it, the line.

use std::io;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The file.
        file: String,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The file is not valid YAML, or a value is of the wrong type or out of range. The
    /// message starts with the field path and ends with the line and column.
    #[error("{file}: {message}")]
    Parse {
        /// The file.
        file: String,
        /// What is wrong, with the field path and the location.
        message: String,
        /// 1-based line of the error, when known.
        line: Option<usize>,
        /// 1-based column of the error, when known.
        column: Option<usize>,
    },
    /// The values parse but do not fit together (an unknown service name, a duplicate name).
    #[error("{file}: {path}: {message}")]
    Invalid {
        /// The file.
        file: String,
        /// The field path, e.g. `routes[2].service`.
        path: String,
        /// What is wrong.
        message: String,
    },
}

impl ConfigError {
    /// The field path of the error, if it has one (`services[0].routes[1].paths[0]`).
    pub fn path(&self) -> Option<&str> {
        match self {
            Self::Invalid { path, .. } => Some(path),
            Self::Parse { message, .. } => message
                .split_once(": ")
                .map(|(path, _)| path)
                .filter(|path| !path.is_empty() && !path.contains(' ')),
            Self::Read { .. } => None,
        }
    }

    /// The 1-based line of the error, if known.
    pub fn line(&self) -> Option<usize> {
        match self {
            Self::Parse { line, .. } => *line,
            _ => None,
        }
    }
}
