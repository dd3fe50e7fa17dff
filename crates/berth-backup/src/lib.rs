//! The bytes of backups: a backup action's output streamed to an S3-compatible repository in
//! parts (multipart upload), and back, hashed (sha256) on the way, with the backup's manifest
//! beside it. Both engines use it; which member, which key, what to keep and whether the bytes
//! match are decided in [`berth_core::backup`].
//!
//! Memory stays bounded: at most [`MAX_IN_FLIGHT`] parts of [`PART_SIZE`] upload while the next
//! one fills (fewer when the caller says so: [`Repository::upload_with`]), and downloads are
//! written out in batches of 1 MiB as they arrive.
//!
//! The client is `object_store` (Apache Arrow's, maintained, used by many data systems): it
//! speaks S3 with SigV4, path-style or virtual-hosted requests, multipart uploads and retries,
//! over reqwest with rustls and the `ring` provider (the one the Kubernetes client already
//! uses, so no second crypto library is built). TLS roots are the system's, else Mozilla's
//! (`webpki-root-certs`, from the rustls project) for images that carry none.

use std::sync::Arc;

pub mod action;
mod batch;
pub mod transfer;

use batch::Batch;
use berth_core::backup::{Location, Manifest};
use berth_core::spec::RepositorySpec;
use futures::StreamExt as _;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{
    Certificate, ClientOptions, ObjectStore, ObjectStoreExt as _, PutPayload, WriteMultipart,
};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

/// The size of each uploaded part.
pub const PART_SIZE: usize = 8 << 20;
/// Parts uploaded at once; the next part fills meanwhile, and completing it waits for one.
pub const MAX_IN_FLIGHT: usize = 2;
/// Batches of a download read ahead of the one being written (each up to 1 MiB).
pub const BATCHES_AHEAD: usize = 2;
/// How much is read from the action's output at a time.
const READ_SIZE: usize = 1 << 20;

/// An S3 access key. Its `Debug` shows only the key id.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Credentials {
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// What went wrong talking to the repository or moving the bytes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The repository's settings do not make a client.
    #[error("repository {endpoint}: {source}")]
    Open {
        /// The endpoint.
        endpoint: String,
        /// The client's reason.
        source: Box<object_store::Error>,
    },
    /// An object that is not there (or a bucket that is not).
    #[error("s3://{bucket}/{key} not found (is the bucket right, and was the backup completed?)")]
    NotFound {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
    },
    /// A request that failed: unreachable endpoint, wrong credentials, missing bucket.
    #[error("{op} s3://{bucket}/{key}: {source}")]
    Request {
        /// What was being done.
        op: &'static str,
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// The client's reason.
        source: Box<object_store::Error>,
    },
    /// Reading the data to upload (the action's output) failed.
    #[error("reading the backup's data: {0}")]
    Read(#[source] std::io::Error),
    /// Writing downloaded data failed.
    #[error("writing the downloaded data: {0}")]
    Write(#[source] std::io::Error),
    /// A backup URL that is not one.
    #[error("`{url}` is not a backup's URL: {reason}")]
    BadUrl {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// A manifest that is not one.
    #[error("s3://{bucket}/{key} is not a backup manifest: {source}")]
    Manifest {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// Why it does not decode.
        source: serde_json::Error,
    },
}

impl Error {
    /// Whether trying again cannot help: no backup (or bucket) there, a manifest that is not
    /// one, settings or a URL the client refuses. An unreachable store or a broken stream may
    /// get better.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            Self::NotFound { .. } | Self::Manifest { .. } | Self::Open { .. } | Self::BadUrl { .. }
        )
    }

    /// What this error tells the core's retry rule (`berth_core::restore::Facts`): whether it
    /// may pass; a repository error alone never reached the member.
    pub fn facts(&self) -> berth_core::restore::Facts {
        berth_core::restore::Facts {
            may_pass: !self.is_permanent(),
            reached_member: false,
        }
    }
}

/// Bytes stored or read: how many and their sha256 (lower-case hex).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    /// The number of bytes.
    pub size: u64,
    /// Their sha256.
    pub sha256: String,
}

/// One bucket of an S3-compatible store.
#[derive(Clone, Debug)]
pub struct Repository {
    store: Arc<dyn ObjectStore>,
    bucket: String,
}

impl Repository {
    /// A client for `bucket` at the spec's endpoint (`bucket` is the spec's, or the one a
    /// `restoreFrom` URL names).
    ///
    /// # Errors
    /// Settings the client refuses (e.g. an endpoint that is not a URL).
    pub fn open(
        spec: &RepositorySpec,
        bucket: &str,
        credentials: Option<&Credentials>,
    ) -> Result<Self, Error> {
        // reqwest's rustls needs a process-wide provider; another caller may have set one.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = AmazonS3Builder::new()
            .with_client_options(client_options(&spec.endpoint))
            .with_endpoint(&spec.endpoint)
            .with_bucket_name(bucket)
            .with_region(&spec.region)
            .with_virtual_hosted_style_request(!spec.path_style);
        builder = match credentials {
            Some(c) => builder
                .with_access_key_id(&c.access_key_id)
                .with_secret_access_key(&c.secret_access_key),
            None => builder.with_skip_signature(true),
        };
        let store = builder.build().map_err(|source| Error::Open {
            endpoint: spec.endpoint.clone(),
            source: Box::new(source),
        })?;
        Ok(Self {
            store: Arc::new(store),
            bucket: bucket.into(),
        })
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    fn failed(&self, op: &'static str, key: &str, source: object_store::Error) -> Error {
        match source {
            object_store::Error::NotFound { .. } => Error::NotFound {
                bucket: self.bucket.clone(),
                key: key.into(),
            },
            source => Error::Request {
                op,
                bucket: self.bucket.clone(),
                key: key.into(),
                source: Box::new(source),
            },
        }
    }

    /// Streams `data` to `key` in parts, [`MAX_IN_FLIGHT`] of them uploading at once, hashing
    /// it on the way. A failed upload is aborted, so no partial object is left.
    ///
    /// # Errors
    /// A failed request or read.
    pub async fn upload(
        &self,
        key: &str,
        data: &mut (impl AsyncRead + Unpin),
    ) -> Result<Stored, Error> {
        self.upload_with(key, data, MAX_IN_FLIGHT).await
    }

    /// [`Self::upload`] with at most `in_flight` parts (at least 1) uploading while the next one
    /// fills: the process holds up to `in_flight + 1` parts of [`PART_SIZE`]. One is enough
    /// when `data` comes slower than a part uploads (the operator's exec stream).
    ///
    /// # Errors
    /// A failed request or read.
    pub async fn upload_with(
        &self,
        key: &str,
        data: &mut (impl AsyncRead + Unpin),
        in_flight: usize,
    ) -> Result<Stored, Error> {
        let path = Path::from(key);
        let upload = self.store.put_multipart(&path).await;
        let upload = upload.map_err(|e| self.failed("starting the upload of", key, e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        match copy_parts(data, &mut writer, in_flight.max(1)).await {
            Ok(stored) => {
                writer
                    .finish()
                    .await
                    .map_err(|e| self.failed("completing the upload of", key, e))?;
                Ok(stored)
            }
            Err(failure) => {
                let _ = writer.abort().await;
                Err(failure.into_error(self, key))
            }
        }
    }

    /// Streams `key` into `out`, hashing it on the way.
    ///
    /// # Errors
    /// A failed request or write.
    pub async fn download(
        &self,
        key: &str,
        out: &mut (impl AsyncWrite + Unpin + Send),
    ) -> Result<Stored, Error> {
        self.download_into(key, &mut [out]).await
    }

    /// Streams `key` into every one of `outs` (a restore action and a scratch file), hashing it
    /// on the way. Chunks are gathered into batches of [`batch::WRITE_SIZE`]; a batch is
    /// written to all of `outs` while the next ones are read, at most [`BATCHES_AHEAD`] ahead,
    /// so the store's connection is not left idle while an action drains its pipe, and is then
    /// hashed on a blocking thread (at most [`BATCHES_AHEAD`] more batches behind).
    ///
    /// # Errors
    /// A failed request or write (a write's failure first: it stops the reading).
    pub async fn download_into(
        &self,
        key: &str,
        outs: &mut [&mut (dyn AsyncWrite + Unpin + Send)],
    ) -> Result<Stored, Error> {
        let path = Path::from(key);
        let got = self.store.get(&path).await;
        let mut stream = got
            .map_err(|e| self.failed("reading", key, e))?
            .into_stream();
        let (batches, mut ready) = tokio::sync::mpsc::channel(BATCHES_AHEAD);
        let (to_hash, mut written) = tokio::sync::mpsc::channel::<Batch<_>>(BATCHES_AHEAD);
        // Hashing is the costliest work per byte here (about 0.6 s a GiB): on a thread of its
        // own, it overlaps the reading and the writing instead of delaying both.
        let digest = tokio::task::spawn_blocking(move || {
            let mut hasher = Sha256::new();
            while let Some(batch) = written.blocking_recv() {
                batch.chunks().iter().for_each(|chunk| hasher.update(chunk));
            }
            hex(&hasher.finalize())
        });
        let read = async move {
            let mut size = 0u64;
            let mut batch = Batch::default();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| self.failed("reading", key, e))?;
                size += chunk.len() as u64;
                let full = batch.push(chunk);
                // A send fails only when the writing failed: its error is the one reported.
                if full && batches.send(std::mem::take(&mut batch)).await.is_err() {
                    break;
                }
            }
            let _ = batches.send(batch).await;
            Ok(size)
        };
        // Owns the receiver: when a write fails it goes, and the reading stops at its next send.
        // Each batch written goes on to be hashed.
        let write = async move {
            while let Some(batch) = ready.recv().await {
                batch.write_to(outs).await?;
                let _ = to_hash.send(batch).await;
            }
            for out in outs.iter_mut() {
                out.flush().await?;
            }
            Ok(())
        };
        let (size, wrote) = tokio::join!(read, write);
        wrote.map_err(Error::Write)?;
        let size = size?;
        let sha256 = digest
            .await
            .map_err(|e| Error::Write(std::io::Error::other(e)))?;
        Ok(Stored { size, sha256 })
    }

    /// Writes the backup's manifest (after its data: a manifest means a complete backup).
    ///
    /// # Errors
    /// A failed request.
    pub async fn put_manifest(&self, at: &Location, manifest: &Manifest) -> Result<(), Error> {
        let key = at.manifest_key();
        let json = serde_json::to_vec_pretty(manifest).unwrap_or_default();
        self.store
            .put(&Path::from(key.as_str()), PutPayload::from(json))
            .await
            .map_err(|e| self.failed("writing", &key, e))?;
        Ok(())
    }

    /// Reads the backup's manifest.
    ///
    /// # Errors
    /// No manifest (an incomplete or missing backup), a failed request, or not a manifest.
    pub async fn manifest(&self, at: &Location) -> Result<Manifest, Error> {
        let key = at.manifest_key();
        let path = Path::from(key.as_str());
        let got = self.store.get(&path).await;
        let bytes = match got {
            Ok(got) => got.bytes().await,
            Err(e) => Err(e),
        };
        let bytes = bytes.map_err(|e| self.failed("reading", &key, e))?;
        serde_json::from_slice(&bytes).map_err(|source| Error::Manifest {
            bucket: self.bucket.clone(),
            key,
            source,
        })
    }

    /// Deletes a backup: its manifest first (so it is no longer complete), then its data.
    ///
    /// # Errors
    /// A failed request (a missing object is no error).
    pub async fn delete(&self, at: &Location) -> Result<(), Error> {
        for key in [at.manifest_key(), at.data_key()] {
            match self.store.delete(&Path::from(key.as_str())).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.failed("deleting", &key, e)),
            }
        }
        Ok(())
    }
}

/// The client's settings for `endpoint`: plain HTTP needs no CA certificates; HTTPS uses the
/// system's, or Mozilla's (as `webpki-root-certs` carries them) where the system has none, as in
/// many a member's image running `berth agent transfer`. Without either, the client refuses to
/// start. (These replace the builder's own settings, `allow_http` included.)
fn client_options(endpoint: &str) -> ClientOptions {
    let http = endpoint.starts_with("http://");
    let options = ClientOptions::new().with_allow_http(http);
    if http {
        return options.with_no_system_certificates(true);
    }
    if !rustls_native_certs::load_native_certs().certs.is_empty() {
        return options;
    }
    webpki_root_certs::TLS_SERVER_ROOT_CERTS
        .iter()
        .filter_map(|der| Certificate::from_der(der).ok())
        .fold(options.with_no_system_certificates(true), |o, root| {
            o.with_root_certificate(root)
        })
}

/// Why copying into parts stopped.
enum CopyFailure {
    Read(std::io::Error),
    Upload(object_store::Error),
}

impl CopyFailure {
    fn into_error(self, repo: &Repository, key: &str) -> Error {
        match self {
            Self::Read(e) => Error::Read(e),
            Self::Upload(e) => repo.failed("uploading", key, e),
        }
    }
}

/// Copies `data` into `writer`'s parts. The next part fills while `in_flight` parts upload;
/// only a write that would complete it waits for one of them to finish. (Waiting after every
/// write instead left an action's pipe undrained, and its writer asleep, whenever the parts in
/// flight were at the limit.)
async fn copy_parts(
    data: &mut (impl AsyncRead + Unpin),
    writer: &mut WriteMultipart,
    in_flight: usize,
) -> Result<Stored, CopyFailure> {
    let mut buf = vec![0u8; READ_SIZE];
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    loop {
        let n = data.read(&mut buf).await.map_err(CopyFailure::Read)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        let filling = usize::try_from(size % PART_SIZE as u64).unwrap_or(0);
        if filling + n >= PART_SIZE {
            let room = writer.wait_for_capacity(in_flight).await;
            room.map_err(CopyFailure::Upload)?;
        }
        size += n as u64;
        writer.write(&buf[..n]);
    }
    Ok(Stored {
        size,
        sha256: hex(&hasher.finalize()),
    })
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
