//! [`ExportLayout`]: every name in an export folder, as `store/layout.rs`
//! is for the store. An export under a prefix holds `shard-000000.<ext>`,
//! `shard-000001.<ext>`, … (the extension is the format's), the dataset
//! card `README.md` and, written last, `manifest.json`. An export with
//! splits writes one shard series per split in a folder named after it
//! (`train/shard-000000.<ext>`): shard names are then relative paths. MDS
//! and WebDataset series also have a loader index in their folder
//! (`index.json`, `wids.json`). Nothing else in the crate spells these names.

use object_store::path::Path;

use crate::spec::OutputFormat;
use crate::store::relative_key;

/// The names of one export's files under its prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportLayout {
    prefix: Path,
    format: OutputFormat,
    /// The split folder this layout's shards go to, if any.
    series: Option<String>,
    /// The partition this layout's shards belong to, when an export has
    /// more than one.
    partition: Option<u32>,
}

impl ExportLayout {
    /// The manifest, written last: its presence means "finished".
    pub const MANIFEST: &'static str = "manifest.json";
    /// The dataset card.
    pub const CARD: &'static str = "README.md";
    /// The lease an unfinished export holds on its prefix.
    pub const LEASE: &'static str = ".nusomi-export.json";
    /// MosaicML Streaming's index of an MDS series (in the series' folder).
    pub const MDS_INDEX: &'static str = "index.json";
    /// The `wids` shard list of a WebDataset series (in the series' folder).
    pub const WIDS_INDEX: &'static str = "wids.json";
    /// Suffix of the object an MDS shard spools its body to while written.
    pub const SPOOL_SUFFIX: &'static str = ".spool";
    /// What every shard name starts with.
    const SHARD_STEM: &'static str = "shard-";

    /// The layout of a `format` export under `prefix`.
    pub fn new(prefix: Path, format: OutputFormat) -> Self {
        ExportLayout {
            prefix,
            format,
            series: None,
            partition: None,
        }
    }

    /// The same layout's series of partition `p` of `partitions`
    /// (`shard-p0003-000000.<ext>`); unchanged for a single partition.
    pub fn partition(&self, p: u32, partitions: u32) -> Self {
        ExportLayout {
            partition: (partitions > 1).then_some(p),
            ..self.clone()
        }
    }

    /// The same export's shard series of split `name`
    /// (`name/shard-000000.<ext>`).
    pub fn series(&self, name: &str) -> Self {
        ExportLayout {
            series: Some(name.to_string()),
            ..self.clone()
        }
    }

    /// The prefix.
    pub fn prefix(&self) -> &Path {
        &self.prefix
    }

    /// The format.
    pub fn format(&self) -> OutputFormat {
        self.format
    }

    /// Name of shard number `index` (`shard-000003.parquet`).
    pub fn shard_name(&self, index: usize) -> String {
        let ext = self.format.extension();
        let name = match self.partition {
            Some(p) => format!("{}p{p:04}-{index:06}.{ext}", Self::SHARD_STEM),
            None => format!("{}{index:06}.{ext}", Self::SHARD_STEM),
        };
        match &self.series {
            Some(s) => format!("{s}/{name}"),
            None => name,
        }
    }

    /// Whether `name` is a shard name of this export's format (and series).
    pub fn is_shard(&self, name: &str) -> bool {
        let name = match &self.series {
            Some(s) => match name
                .strip_prefix(s.as_str())
                .and_then(|n| n.strip_prefix('/'))
            {
                Some(n) => n,
                None => return false,
            },
            None => name,
        };
        name.strip_prefix(Self::SHARD_STEM)
            .and_then(|rest| rest.strip_suffix(self.format.extension()))
            .is_some_and(|stem| stem.ends_with('.'))
    }

    /// Whether `name` is the spool object of a shard of this series, which
    /// an interrupted attempt may have left.
    pub fn is_spool(&self, name: &str) -> bool {
        name.strip_suffix(Self::SPOOL_SUFFIX)
            .is_some_and(|shard| self.is_shard(shard))
    }

    /// The relative path of this series' file `name` (an index): in the
    /// split folder, if any.
    pub fn index_name(&self, name: &str) -> String {
        match &self.series {
            Some(s) => format!("{s}/{name}"),
            None => name.to_string(),
        }
    }

    /// Whether `name` is a file an export of any format writes.
    pub fn is_export_file(name: &str) -> bool {
        name.starts_with(Self::SHARD_STEM)
            || name == Self::MANIFEST
            || name == Self::CARD
            || name == Self::LEASE
            || name == Self::MDS_INDEX
            || name == Self::WIDS_INDEX
    }

    /// The object key of `name` (a name or a relative path such as
    /// `train/shard-000000.tar`) under the prefix.
    pub fn key(&self, name: &str) -> Path {
        relative_key(&self.prefix, name)
    }

    /// The manifest's key.
    pub fn manifest(&self) -> Path {
        self.key(Self::MANIFEST)
    }

    /// The dataset card's key.
    pub fn card(&self) -> Path {
        self.key(Self::CARD)
    }

    /// The lease's key.
    pub fn lease(&self) -> Path {
        self.key(Self::LEASE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_format() {
        let l = ExportLayout::new(Path::from("a/b"), OutputFormat::Webdataset);
        assert_eq!(l.shard_name(3), "shard-000003.tar");
        assert!(l.is_shard("shard-000003.tar"));
        assert!(!l.is_shard("shard-000003.parquet"));
        assert!(!l.is_shard("shard-000003tar"));
        assert_eq!(l.manifest().as_ref(), "a/b/manifest.json");
        assert!(ExportLayout::is_export_file("README.md"));
        assert!(!ExportLayout::is_export_file("notes.txt"));
        let train = l.series("train");
        assert_eq!(train.shard_name(0), "train/shard-000000.tar");
        assert!(train.is_shard("train/shard-000000.tar"));
        assert!(!train.is_shard("shard-000000.tar") && !l.is_shard("train/shard-000000.tar"));
        assert_eq!(
            train.key("train/shard-000000.tar").as_ref(),
            "a/b/train/shard-000000.tar"
        );
        let p = train.partition(3, 4);
        assert_eq!(p.shard_name(1), "train/shard-p0003-000001.tar");
        assert!(train.is_shard("train/shard-p0003-000001.tar"));
        assert_eq!(l.partition(0, 1).shard_name(2), "shard-000002.tar");
        assert_eq!(train.index_name("wids.json"), "train/wids.json");
        assert_eq!(l.index_name("wids.json"), "wids.json");
        let m = ExportLayout::new(Path::from("a"), OutputFormat::Mds);
        assert!(m.is_spool("shard-000001.mds.spool") && !m.is_spool("shard-000001.mds"));
        assert!(ExportLayout::is_export_file("index.json"));
    }
}
