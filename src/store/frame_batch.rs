//! Arrow batches of the store's two tables, built from a validated
//! [`Bundle`]: the one-row `sessions` batch and the `frames` batches with
//! the precomputed sampling columns (keyframe, event and action flags, the
//! previous frame's time, the image hash distance). Nothing here writes.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Int32Builder, Int64Builder, ListBuilder, RecordBatch,
    StringBuilder, StructBuilder, TimestampMicrosecondBuilder,
};
use sha2::{Digest, Sha256};

use super::bundle::{read_regular, Bundle, Frame};
use super::frame_image::{hash_distance, is_keyframe};
use super::schema::{event_fields, frames_file_schema, sessions_schema, UTC};
use crate::error::BundleError;
use crate::error::Result;

/// Frames per Arrow batch while streaming a session out.
const BATCH_FRAMES: usize = 32;
/// Image bytes per Arrow batch while streaming a session out.
const BATCH_BYTES: usize = 16 << 20;

pub(crate) fn session_row(bundle: &Bundle, sealed_at_us: i64) -> Result<RecordBatch> {
    let s = &bundle.session;
    let strs = |v: &str| Arc::new(arrow::array::StringArray::from(vec![v])) as ArrayRef;
    let ints = |v: i64| Arc::new(arrow::array::Int64Array::from(vec![v])) as ArrayRef;
    let ts = |v: i64| {
        Arc::new(arrow::array::TimestampMicrosecondArray::from(vec![v]).with_timezone(UTC))
            as ArrayRef
    };
    let list = |items: &[String]| {
        let mut b = ListBuilder::new(StringBuilder::new());
        for i in items {
            b.values().append_value(i);
        }
        b.append(true);
        Arc::new(b.finish()) as ArrayRef
    };
    let columns = vec![
        strs(&s.session_id),
        strs(&s.workflow),
        strs(s.outcome.as_str()),
        strs(s.actor_kind.as_str()),
        Arc::new(arrow::array::StringArray::from(vec![s.actor_id.clone()])) as ArrayRef,
        ts(s.started_at_us),
        ts(s.ended_at_us),
        ints(s.duration_ms()),
        list(&s.tags),
        list(&s.paths),
        ints(bundle.frames.len() as i64),
        ints(bundle.event_count() as i64),
        ints(bundle.action_count() as i64),
        ts(sealed_at_us),
        strs(&bundle.seal),
        Arc::new(arrow::array::StringArray::from(vec![s.instruction.clone()])) as ArrayRef,
    ];
    Ok(RecordBatch::try_new(sessions_schema(), columns)?)
}

/// Iterator of frames batches: re-reads each image, checks it is the file
/// that was validated, and builds rows with the precomputed sampling columns.
pub(crate) struct FrameBatches<'a> {
    bundle: &'a Bundle,
    next: usize,
}

impl<'a> FrameBatches<'a> {
    pub(crate) fn new(bundle: &'a Bundle) -> Self {
        FrameBatches { bundle, next: 0 }
    }

    fn build(&mut self) -> Result<RecordBatch> {
        let b = self.bundle;
        let mut rows = FrameColumns::default();
        let mut bytes_in_batch = 0usize;
        while self.next < b.frames.len()
            && rows.len < BATCH_FRAMES
            && (rows.len == 0 || bytes_in_batch < BATCH_BYTES)
        {
            let idx = self.next;
            let frame = &b.frames[idx];
            let prev = idx.checked_sub(1).map(|p| &b.frames[p]);
            // Checked again: a file swapped for a FIFO or a link meanwhile
            // must not block or escape (its digest is compared below).
            let image = read_regular(&b.dir, &frame.file, u64::MAX).map_err(|m| BundleError {
                bundle: b.dir.clone(),
                file: "frames.jsonl".into(),
                line: Some(idx + 1),
                field: Some("file".into()),
                message: format!("frame file {:?} {m}", frame.file),
            })?;
            let sha: [u8; 32] = Sha256::digest(&image).into();
            if sha != frame.image_sha256 {
                return Err(BundleError {
                    bundle: b.dir.clone(),
                    file: "frames.jsonl".into(),
                    line: Some(idx + 1),
                    field: Some("file".into()),
                    message: format!(
                        "frame file {:?} changed while it was being sealed",
                        frame.file
                    ),
                }
                .into());
            }
            bytes_in_batch += image.len();
            rows.push(b, frame, prev, &image);
            self.next += 1;
        }
        rows.finish()
    }
}

impl Iterator for FrameBatches<'_> {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        (self.next < self.bundle.frames.len()).then(|| self.build())
    }
}

struct FrameColumns {
    len: usize,
    session_id: StringBuilder,
    frame_idx: Int64Builder,
    t_ms: Int64Builder,
    image: BinaryBuilder,
    image_format: StringBuilder,
    width: Int32Builder,
    height: Int32Builder,
    is_keyframe: BooleanBuilder,
    is_event_frame: BooleanBuilder,
    is_action_frame: BooleanBuilder,
    events: ListBuilder<StructBuilder>,
    prev_t_ms: Int64Builder,
    dhash: Int64Builder,
    hash_distance: Int32Builder,
    workflow: StringBuilder,
    started_at: TimestampMicrosecondBuilder,
}

impl Default for FrameColumns {
    fn default() -> Self {
        FrameColumns {
            len: 0,
            session_id: StringBuilder::new(),
            frame_idx: Int64Builder::new(),
            t_ms: Int64Builder::new(),
            image: BinaryBuilder::new(),
            image_format: StringBuilder::new(),
            width: Int32Builder::new(),
            height: Int32Builder::new(),
            is_keyframe: BooleanBuilder::new(),
            is_event_frame: BooleanBuilder::new(),
            is_action_frame: BooleanBuilder::new(),
            events: ListBuilder::new(StructBuilder::from_fields(event_fields(), 0)),
            prev_t_ms: Int64Builder::new(),
            dhash: Int64Builder::new(),
            hash_distance: Int32Builder::new(),
            workflow: StringBuilder::new(),
            started_at: TimestampMicrosecondBuilder::new().with_timezone(UTC),
        }
    }
}

impl FrameColumns {
    fn push(&mut self, b: &Bundle, f: &Frame, prev: Option<&Frame>, image: &[u8]) {
        let distance = prev.map(|p| hash_distance(p.image.dhash, f.image.dhash));
        self.len += 1;
        self.session_id.append_value(&b.session.session_id);
        self.frame_idx.append_value(f.frame_idx);
        self.t_ms.append_value(f.t_ms);
        self.image.append_value(image);
        self.image_format.append_value(f.image.format.as_str());
        self.width.append_value(f.image.width as i32);
        self.height.append_value(f.image.height as i32);
        self.is_keyframe
            .append_value(is_keyframe(f.keyframe_hint, distance));
        self.is_event_frame.append_value(!f.events.is_empty());
        self.is_action_frame
            .append_value(f.events.iter().any(|e| e.action));
        let structs = self.events.values();
        for e in &f.events {
            append_event(structs, e.t_ms, &e.kind, e.action, &e.data);
        }
        self.events.append(true);
        self.prev_t_ms.append_option(prev.map(|p| p.t_ms));
        self.dhash.append_value(f.image.dhash as i64);
        self.hash_distance.append_option(distance.map(|d| d as i32));
        self.workflow.append_value(&b.session.workflow);
        self.started_at.append_value(b.session.started_at_us);
    }

    fn finish(mut self) -> Result<RecordBatch> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.image.finish()),
            Arc::new(self.session_id.finish()),
            Arc::new(self.frame_idx.finish()),
            Arc::new(self.t_ms.finish()),
            Arc::new(self.image_format.finish()),
            Arc::new(self.width.finish()),
            Arc::new(self.height.finish()),
            Arc::new(self.is_keyframe.finish()),
            Arc::new(self.is_event_frame.finish()),
            Arc::new(self.is_action_frame.finish()),
            Arc::new(self.events.finish()),
            Arc::new(self.prev_t_ms.finish()),
            Arc::new(self.dhash.finish()),
            Arc::new(self.hash_distance.finish()),
            Arc::new(self.workflow.finish()),
            Arc::new(self.started_at.finish()),
        ];
        Ok(RecordBatch::try_new(frames_file_schema(), columns)?)
    }
}

/// Appends one `{t_ms, type, action, data}` struct to an events builder.
pub(crate) fn append_event(s: &mut StructBuilder, t_ms: i64, kind: &str, action: bool, data: &str) {
    s.field_builder::<Int64Builder>(0)
        .expect("t_ms builder")
        .append_value(t_ms);
    s.field_builder::<StringBuilder>(1)
        .expect("type builder")
        .append_value(kind);
    s.field_builder::<BooleanBuilder>(2)
        .expect("action builder")
        .append_value(action);
    s.field_builder::<StringBuilder>(3)
        .expect("data builder")
        .append_value(data);
    s.append(true);
}
