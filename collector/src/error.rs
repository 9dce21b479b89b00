//! The collector library's one error type.

use std::path::PathBuf;

/// Everything the collector library can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Another process (usually a running collector) holds the store's lock.
    #[error(
        "the store {} is in use by another process (a running bakery-collector?): stop it first, or ask the running collector through its Query service",
        path.display()
    )]
    StoreInUse { path: PathBuf },

    /// The store file could not be opened or created.
    #[error("cannot open the store {}: {source}", path.display())]
    OpenStore {
        path: PathBuf,
        #[source]
        source: redb::DatabaseError,
    },

    /// A read or write of the embedded database failed (for example the disk is full).
    #[error("store: {0}")]
    Store(#[from] redb::Error),

    /// A stored record does not decode: the file was damaged or written by an incompatible version.
    #[error("a stored {what} record does not decode: {source}")]
    CorruptRecord {
        what: &'static str,
        #[source]
        source: prost::DecodeError,
    },

    /// A file the collector needs (token file, TLS material, data dir) could not be read or written.
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The flags do not make a usable configuration.
    #[error("{0}")]
    Config(String),

    /// The gRPC server failed to bind or serve.
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// The collector library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

// redb has one error type per operation; they all fold into `redb::Error`.
macro_rules! from_redb {
    ($($ty:ty),*) => {$(
        impl From<$ty> for Error {
            fn from(error: $ty) -> Self {
                Error::Store(error.into())
            }
        }
    )*};
}
from_redb!(redb::TransactionError, redb::TableError, redb::StorageError, redb::CommitError);

impl Error {
    /// True when the error says the disk (or the filesystem's quota) is full.
    pub fn is_disk_full(&self) -> bool {
        match self {
            Error::Store(redb::Error::Io(io)) => io.kind() == std::io::ErrorKind::StorageFull,
            Error::Io { source, .. } => source.kind() == std::io::ErrorKind::StorageFull,
            _ => false,
        }
    }

    /// True when the database must be closed and opened again before it can write (redb
    /// refuses every operation after an I/O error during a commit).
    pub fn needs_reopen(&self) -> bool {
        matches!(self, Error::Store(redb::Error::PreviousIo | redb::Error::Io(_)))
    }
}
