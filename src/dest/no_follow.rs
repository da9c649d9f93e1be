//! [`NoFollow`]: the object store of a local export folder, refusing every
//! read, write, copy, rename, delete and listing whose path goes through a
//! symbolic link under the folder (or whose folder itself became one). The
//! destination policy checks the requested path once, when a job is
//! posted; a link planted later — a split folder, `images/`, a shard name —
//! would otherwise be followed by the writes, the reuse check and
//! `verify`, and reach the server's own files. Each path is checked
//! component by component without following (`lstat`) right before the
//! call; a link swapped in between the check and the call is the window
//! left (an `O_NOFOLLOW` open of every component would close it, and needs
//! a local store of our own).

use std::fmt;
use std::ops::Range;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

use crate::store::symlink_on_path;

/// A local store whose paths under `root` never go through a link.
#[derive(Clone)]
pub(crate) struct NoFollow {
    inner: Arc<dyn ObjectStore>,
    root: Arc<PathBuf>,
}

impl fmt::Debug for NoFollow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NoFollow({})", self.root.display())
    }
}

impl fmt::Display for NoFollow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NoFollow({})", self.root.display())
    }
}

fn refused(path: &str, why: String) -> object_store::Error {
    object_store::Error::PermissionDenied {
        path: path.to_string(),
        source: why.into(),
    }
}

impl NoFollow {
    /// `inner` (an unrooted `LocalFileSystem`) for the folder `root`.
    pub(crate) fn new(inner: Arc<dyn ObjectStore>, root: PathBuf) -> Self {
        NoFollow {
            inner,
            root: Arc::new(root),
        }
    }

    /// Refuses `location` when its folder is a link or a component of it
    /// under the folder is one. Paths outside the folder are refused too.
    fn check(root: &FsPath, location: &Path) -> Result<()> {
        let fs = PathBuf::from(format!("/{location}"));
        let Ok(rel) = fs.strip_prefix(root) else {
            return Err(refused(
                location.as_ref(),
                format!("is outside the export folder {}", root.display()),
            ));
        };
        match std::fs::symlink_metadata(root) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(refused(
                    location.as_ref(),
                    format!("the export folder {} is a symbolic link", root.display()),
                ))
            }
            _ => {}
        }
        match symlink_on_path(root, rel) {
            Ok(None) => Ok(()),
            Ok(Some(link)) => Err(refused(
                location.as_ref(),
                format!("goes through the symbolic link {}", link.display()),
            )),
            Err(e) => Err(refused(location.as_ref(), e.to_string())),
        }
    }

    fn ok(&self, location: &Path) -> Result<()> {
        Self::check(&self.root, location)
    }
}

#[async_trait]
impl ObjectStore for NoFollow {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.ok(location)?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.ok(location)?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.ok(location)?;
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.ok(location)?;
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let root = Arc::clone(&self.root);
        let checked = locations
            .map(move |l| l.and_then(|p| Self::check(&root, &p).map(|_| p)))
            .boxed();
        self.inner.delete_stream(checked)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        if let Some(p) = prefix {
            if let Err(e) = self.ok(p) {
                return futures::stream::once(async move { Err(e) }).boxed();
            }
        }
        let root = Arc::clone(&self.root);
        self.inner
            .list(prefix)
            .map(move |m| m.and_then(|m| Self::check(&root, &m.location).map(|_| m)))
            .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        if let Some(p) = prefix {
            self.ok(p)?;
        }
        let listed = self.inner.list_with_delimiter(prefix).await?;
        for m in &listed.objects {
            self.ok(&m.location)?;
        }
        Ok(listed)
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.ok(from)?;
        self.ok(to)?;
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.ok(from)?;
        self.ok(to)?;
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::local::LocalFileSystem;
    use object_store::ObjectStoreExt;

    #[tokio::test]
    async fn paths_through_a_link_are_refused_and_others_pass() {
        let tmp = tempfile::TempDir::new().unwrap();
        let (folder, outside) = (tmp.path().join("export"), tmp.path().join("server"));
        std::fs::create_dir_all(folder.join("train")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("secret.txt"), "SERVER-FILE").unwrap();
        std::os::unix::fs::symlink(&outside, folder.join("images")).unwrap();
        let store = NoFollow::new(Arc::new(LocalFileSystem::new()), folder.clone());
        let at = |rel: &str| Path::from_absolute_path(folder.join(rel)).unwrap();
        store
            .put(&at("train/shard-0.jsonl"), PutPayload::from_static(b"{}"))
            .await
            .unwrap();
        assert_eq!(
            store
                .get(&at("train/shard-0.jsonl"))
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap(),
            Bytes::from_static(b"{}")
        );
        let e = store
            .put(&at("images/x.png"), PutPayload::from_static(b"x"))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("symbolic link"), "{e}");
        assert!(!outside.join("x.png").exists());
        assert!(store.get(&at("images/secret.txt")).await.is_err());
        let listed: Vec<_> = store
            .list(Some(&Path::from_absolute_path(&folder).unwrap()))
            .collect()
            .await;
        assert!(listed.iter().all(|m| m
            .as_ref()
            .map_or(true, |m| !m.location.as_ref().contains("secret"))));
        let outside_path = Path::from_absolute_path(outside.join("secret.txt")).unwrap();
        assert!(store.get(&outside_path).await.is_err());
    }
}
