//! WebDataset samples: per row, `{key}.png|jpg` and `{key}.json` (every
//! other column) as tar members with fixed header fields (mtime 0, uid 0,
//! mode 0644), long names in pax headers, so the bytes are deterministic.

use arrow::array::{Array, AsArray, RecordBatch};
use serde_json::Value;

use super::image_of;
use crate::error::{Error, Result};
use crate::sink::row_json::row_object;
use crate::store::ImageFormat;

/// End of a tar archive: two zero blocks.
pub(super) const TRAILER: u64 = 1024;

/// `{key}.png|jpg` then `{key}.json` (every other column), as pax tar members
/// with fixed header fields.
pub(super) fn sample(row: &RecordBatch) -> Result<Vec<u8>> {
    if row.column_by_name("observation_key").is_some() {
        return step_sample(row);
    }
    let (bytes, format) = image_of(row)?;
    let obj = row_object(row, 0, &["image"])?;
    let key = obj
        .get("key")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let json = serde_json::to_vec(&obj)?;
    let mut out = Vec::with_capacity(bytes.len() + json.len() + 2048);
    tar_member(
        &mut out,
        &format!("{key}.{}", ImageFormat::of_column(&format).extension()),
        bytes,
    )?;
    tar_member(&mut out, &format!("{key}.json"), &json)?;
    Ok(out)
}

/// A step row: `{observation_key}.png|jpg` when the row carries the image
/// (the first step observing that frame; later ones refer to it by key),
/// then `{key}.json`.
fn step_sample(row: &RecordBatch) -> Result<Vec<u8>> {
    let obj = row_object(row, 0, &["image"])?;
    let text = |k: &str| obj.get(k).and_then(Value::as_str).unwrap_or_default();
    let json = serde_json::to_vec(&obj)?;
    let mut out = Vec::with_capacity(json.len() + 2048);
    let image = row
        .column_by_name("image")
        .map(|c| c.as_struct().column(0).as_binary::<i32>().clone());
    if let Some(bytes) = image.filter(|b| b.is_valid(0)) {
        let name = format!(
            "{}.{}",
            text("observation_key"),
            ImageFormat::of_column(text("image_format")).extension()
        );
        tar_member(&mut out, &name, bytes.value(0))?;
    }
    tar_member(&mut out, &format!("{}.json", text("key")), &json)?;
    Ok(out)
}

/// Whether `row` is a step row that carries its observation image (a tar
/// member keyed by the observation, so a sample of its own for readers
/// that group members by key).
pub(super) fn carries_step_image(row: &RecordBatch) -> bool {
    row.column_by_name("observation_key").is_some()
        && row
            .column_by_name("image")
            .and_then(|c| c.as_struct_opt())
            .is_some_and(|s| s.column(0).is_valid(0))
}

fn tar_member(out: &mut Vec<u8>, name: &str, data: &[u8]) -> Result<()> {
    let io = |e: std::io::Error| Error::Internal(format!("tar header for {name:?}: {e}"));
    if name.len() > 100 {
        // A pax extended header carries the full name.
        let record = pax_record("path", name);
        let mut h = fixed_header(record.len() as u64, tar::EntryType::XHeader);
        h.set_path(format!("PaxHeaders/{}", &name[..name.len().min(80)]))
            .map_err(io)?;
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        pad_into(out, &record);
    }
    let mut h = fixed_header(data.len() as u64, tar::EntryType::Regular);
    h.set_path(&name[..name.len().min(100)]).map_err(io)?;
    h.set_cksum();
    out.extend_from_slice(h.as_bytes());
    pad_into(out, data);
    Ok(())
}

fn fixed_header(size: u64, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_entry_type(kind);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    let _ = h.set_username("");
    let _ = h.set_groupname("");
    h
}

/// `"<len> key=value\n"`, where `<len>` counts the whole record.
fn pax_record(key: &str, value: &str) -> Vec<u8> {
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    while len.to_string().len() + body.len() > len {
        len += 1;
    }
    format!("{len}{body}").into_bytes()
}

fn pad_into(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(data);
    let rem = data.len() % 512;
    if rem != 0 {
        out.extend(std::iter::repeat_n(0u8, 512 - rem));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_length_counts_itself() {
        let r = pax_record("path", &"k".repeat(120));
        let text = String::from_utf8(r.clone()).unwrap();
        let (len, _) = text.split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), r.len());
        assert_eq!(pax_record("path", "a"), b"9 path=a\n");
        assert_eq!(pax_record("path", "abc"), b"12 path=abc\n");
    }

    #[test]
    fn tar_members_are_block_aligned_with_fixed_headers() {
        let mut out = Vec::new();
        tar_member(&mut out, "k_000000.png", b"12345").unwrap();
        assert_eq!(out.len(), 1024);
        let h = tar::Header::from_byte_slice(&out[..512]);
        assert_eq!(h.mtime().unwrap(), 0);
        assert_eq!(h.size().unwrap(), 5);
        let mut long = Vec::new();
        tar_member(
            &mut long,
            &format!("{}_000000.json", "s".repeat(120)),
            b"{}",
        )
        .unwrap();
        assert_eq!(long.len(), 512 * 4);
    }
}
