//! The columns of step rows: their Arrow types ([`action_fields`],
//! [`target_fields`], the chat turns of [`turn_list`]) and [`Out`], which
//! turns the [`StepRow`]s of one batch that `steps.rs` extracted into a
//! record batch of the step schema (taking session and frame columns
//! over from the input, building the action, target, history and chat
//! columns).

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BinaryArray, Float64Builder, Int32Builder, Int64Builder, ListArray,
    ListBuilder, RecordBatch, StringArray, StringBuilder, StructArray, UInt32Array,
};
use arrow::buffer::OffsetBuffer;
use arrow::compute::take;
use arrow::datatypes::{DataType, Field, Fields, SchemaRef};

use super::action::Action;
use super::actor::Target;
use super::convert::Convert;
use super::turns::{Chat, Turn};
use crate::error::{Error, Result};
use crate::spec::{ChatPreset, Coordinates, StepUnit};

/// Input columns taken over as they are (session and frame columns).
pub(super) const TAKEN: [&str; 10] = [
    "session_id",
    "workflow",
    "outcome",
    "actor_kind",
    "actor_id",
    "started_at",
    "tags",
    "paths",
    "instruction",
    "image_format",
];

pub(super) fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef> {
    batch
        .column_by_name(name)
        .ok_or_else(|| Error::Rows(format!("the step query result lacks column `{name}`")))
}

pub(super) fn utf8_list() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
}

pub(super) fn turn_list(a: &str, b: &str, loss: bool) -> DataType {
    DataType::List(Arc::new(Field::new(
        "item",
        DataType::Struct(turn_fields(a, b, loss)),
        true,
    )))
}

/// A chat turn's fields: speaker, text and, with `messages.loss`, `loss`.
fn turn_fields(a: &str, b: &str, loss: bool) -> Fields {
    let mut f = vec![
        Field::new(a, DataType::Utf8, true),
        Field::new(b, DataType::Utf8, true),
    ];
    if loss {
        f.push(Field::new("loss", DataType::Boolean, true));
    }
    Fields::from(f)
}

/// The speaker and text field names of a preset's turns.
pub(super) fn turn_names(preset: ChatPreset) -> (&'static str, &'static str, &'static str) {
    match preset {
        ChatPreset::QwenVl => ("conversations", "from", "value"),
        _ => ("messages", "role", "content"),
    }
}

pub(super) fn target_fields(coords: Coordinates) -> Fields {
    let c = if coords.is_fraction() {
        DataType::Float64
    } else {
        DataType::Int64
    };
    Fields::from(
        ["x1", "y1", "x2", "y2"]
            .map(|n| Field::new(n, c.clone(), true))
            .to_vec(),
    )
}

pub(super) fn action_fields(coords: Coordinates) -> Fields {
    let c = if coords.is_fraction() {
        DataType::Float64
    } else {
        DataType::Int64
    };
    Fields::from(vec![
        Field::new("type", DataType::Utf8, true),
        Field::new("x", c.clone(), true),
        Field::new("y", c.clone(), true),
        Field::new("x2", c.clone(), true),
        Field::new("y2", c, true),
        Field::new("text", DataType::Utf8, true),
        Field::new("keys", utf8_list(), true),
        Field::new("direction", DataType::Utf8, true),
        Field::new("amount", DataType::Int64, true),
        Field::new("raw", DataType::Utf8, true),
    ])
}

pub(super) fn pixel_fields() -> Fields {
    Fields::from(
        ["x", "y", "x2", "y2"]
            .map(|n| Field::new(n, DataType::Int64, true))
            .to_vec(),
    )
}

/// One step before it becomes columns.
pub(super) struct StepRow {
    pub(super) input_row: u32,
    pub(super) event: u32,
    pub(super) key: String,
    pub(super) step: i64,
    pub(super) t_ms: i64,
    pub(super) observation_key: String,
    pub(super) frame_idx: i64,
    pub(super) frame_t_ms: i64,
    pub(super) size: (u32, u32),
    pub(super) image_size: (u32, u32),
    pub(super) action: Action,
    pub(super) convert: Convert,
    pub(super) text: String,
    pub(super) thought: Option<String>,
    pub(super) target: Option<Target>,
    pub(super) history_actions: Vec<String>,
    pub(super) history_keys: Vec<String>,
    pub(super) chat: Option<Chat>,
}

/// The steps of one batch.
pub(super) struct Out {
    rows: Vec<StepRow>,
    fraction: bool,
}

fn strings_list(rows: impl Iterator<Item = Vec<String>>) -> ArrayRef {
    let mut b = ListBuilder::new(StringBuilder::new());
    for r in rows {
        for s in r {
            b.values().append_value(s);
        }
        b.append(true);
    }
    Arc::new(b.finish())
}

fn turns_list(a: &str, b: &str, loss: bool, rows: &[&[Turn]]) -> Result<ArrayRef> {
    let mut offsets = vec![0i32];
    let (mut first, mut second) = (StringBuilder::new(), StringBuilder::new());
    let mut flags = arrow::array::BooleanBuilder::new();
    for r in rows {
        for (x, y, l) in r.iter() {
            first.append_value(x);
            second.append_value(y);
            flags.append_option(*l);
        }
        offsets.push(offsets.last().copied().unwrap_or(0) + r.len() as i32);
    }
    let mut columns: Vec<ArrayRef> = vec![Arc::new(first.finish()), Arc::new(second.finish())];
    if loss {
        columns.push(Arc::new(flags.finish()));
    }
    let values = StructArray::try_new(turn_fields(a, b, loss), columns, None)?;
    let field = Arc::new(Field::new("item", values.data_type().clone(), true));
    Ok(Arc::new(ListArray::try_new(
        field,
        OffsetBuffer::new(offsets.into()),
        Arc::new(values),
        None,
    )?))
}

impl Out {
    /// Which of a batch's `n` input rows a pushed row takes its
    /// observation from.
    pub(super) fn observed(&self, n: usize) -> Vec<bool> {
        let mut used = vec![false; n];
        for r in &self.rows {
            if let Some(u) = used.get_mut(r.input_row as usize) {
                *u = true;
            }
        }
        used
    }

    pub(super) fn new(unit: &StepUnit) -> Self {
        Out {
            rows: Vec::new(),
            fraction: unit.coordinates.is_fraction(),
        }
    }

    pub(super) fn push(&mut self, row: StepRow) {
        self.rows.push(row);
    }

    fn action_array(&self) -> Result<ArrayRef> {
        let rows = &self.rows;
        let mut kind = StringBuilder::new();
        let mut text = StringBuilder::new();
        let mut direction = StringBuilder::new();
        let mut raw = StringBuilder::new();
        let mut amount = Int64Builder::new();
        let mut keys = ListBuilder::new(StringBuilder::new());
        let coord = |get: &dyn Fn(&StepRow) -> Option<f64>, axis: usize| -> ArrayRef {
            if self.fraction {
                let mut b = Float64Builder::new();
                for r in rows {
                    b.append_option(get(r).map(|v| r.convert.value(v, axis).as_f64()));
                }
                Arc::new(b.finish())
            } else {
                let mut b = Int64Builder::new();
                for r in rows {
                    b.append_option(get(r).map(|v| r.convert.value(v, axis).as_i64()));
                }
                Arc::new(b.finish())
            }
        };
        for r in rows {
            let a = &r.action;
            kind.append_value(a.kind);
            text.append_option(a.text.as_deref());
            direction.append_option(a.direction);
            raw.append_option(a.raw.as_deref());
            amount.append_option(a.amount);
            match &a.keys {
                Some(ks) => {
                    for k in ks {
                        keys.values().append_value(k);
                    }
                    keys.append(true);
                }
                None => keys.append(false),
            }
        }
        let x = coord(&|r| r.action.xy.map(|p| p.0), 0);
        let y = coord(&|r| r.action.xy.map(|p| p.1), 1);
        let x2 = coord(&|r| r.action.xy2.map(|p| p.0), 0);
        let y2 = coord(&|r| r.action.xy2.map(|p| p.1), 1);
        let columns: Vec<ArrayRef> = vec![
            Arc::new(kind.finish()),
            x,
            y,
            x2,
            y2,
            Arc::new(text.finish()),
            Arc::new(keys.finish()),
            Arc::new(direction.finish()),
            Arc::new(amount.finish()),
            Arc::new(raw.finish()),
        ];
        let fields = action_fields(if self.fraction {
            Coordinates::Normalized
        } else {
            Coordinates::Pixels
        });
        Ok(Arc::new(StructArray::try_new(fields, columns, None)?))
    }

    /// `target_bbox` in the spec's convention (null without an element).
    fn target_array(&self) -> Result<ArrayRef> {
        let corner = |i: usize| -> ArrayRef {
            let get = |r: &StepRow| r.target.as_ref().map(|t| r.convert.value(t.bbox[i], i % 2));
            if self.fraction {
                let mut b = Float64Builder::new();
                for r in &self.rows {
                    b.append_option(get(r).map(|c| c.as_f64()));
                }
                Arc::new(b.finish())
            } else {
                let mut b = Int64Builder::new();
                for r in &self.rows {
                    b.append_option(get(r).map(|c| c.as_i64()));
                }
                Arc::new(b.finish())
            }
        };
        let coords = if self.fraction {
            Coordinates::Normalized
        } else {
            Coordinates::Pixels
        };
        let nulls = arrow::buffer::NullBuffer::from(
            self.rows
                .iter()
                .map(|r| r.target.is_some())
                .collect::<Vec<_>>(),
        );
        Ok(Arc::new(StructArray::try_new(
            target_fields(coords),
            (0..4).map(corner).collect(),
            Some(nulls),
        )?))
    }

    fn pixels_array(&self) -> Result<ArrayRef> {
        let axis = |get: &dyn Fn(&StepRow) -> Option<f64>, a: usize| -> ArrayRef {
            let mut b = Int64Builder::new();
            for r in &self.rows {
                b.append_option(get(r).map(|v| r.convert.pixel(v, a)));
            }
            Arc::new(b.finish())
        };
        let columns = vec![
            axis(&|r| r.action.xy.map(|p| p.0), 0),
            axis(&|r| r.action.xy.map(|p| p.1), 1),
            axis(&|r| r.action.xy2.map(|p| p.0), 0),
            axis(&|r| r.action.xy2.map(|p| p.1), 1),
        ];
        Ok(Arc::new(StructArray::try_new(
            pixel_fields(),
            columns,
            None,
        )?))
    }

    /// The step columns; the observation is taken from `resized` (for
    /// `smart_resize`) or the batch's `image`.
    pub(super) fn finish(
        self,
        unit: &StepUnit,
        split: bool,
        schema: SchemaRef,
        batch: &RecordBatch,
        events: &ListArray,
        resized: Option<&BinaryArray>,
    ) -> Result<RecordBatch> {
        let rows = &self.rows;
        let idx = UInt32Array::from_iter_values(rows.iter().map(|r| r.input_row));
        let ev_idx = UInt32Array::from_iter_values(rows.iter().map(|r| r.event));
        let taken =
            |name: &str| -> Result<ArrayRef> { Ok(take(column(batch, name)?, &idx, None)?) };
        let strings = |f: &dyn Fn(&StepRow) -> &str| -> ArrayRef {
            Arc::new(StringArray::from_iter_values(rows.iter().map(f)))
        };
        let opt_strings = |f: &dyn Fn(&StepRow) -> Option<&str>| -> ArrayRef {
            Arc::new(StringArray::from_iter(rows.iter().map(f)))
        };
        let ints = |f: &dyn Fn(&StepRow) -> i64| -> ArrayRef {
            let mut b = Int64Builder::with_capacity(rows.len());
            for r in rows {
                b.append_value(f(r));
            }
            Arc::new(b.finish())
        };
        let int32s = |f: &dyn Fn(&StepRow) -> u32| -> ArrayRef {
            let mut b = Int32Builder::with_capacity(rows.len());
            for r in rows {
                b.append_value(f(r) as i32);
            }
            Arc::new(b.finish())
        };
        let observation = match resized {
            Some(r) => take(r, &idx, None)?,
            None => taken("image")?,
        };
        let mut columns: Vec<ArrayRef> = vec![strings(&|r| &r.key)];
        for name in &TAKEN[..9] {
            columns.push(taken(name)?);
        }
        columns.extend([
            ints(&|r| r.step),
            ints(&|r| r.t_ms),
            strings(&|r| &r.observation_key),
            ints(&|r| r.frame_idx),
            ints(&|r| r.frame_t_ms),
            observation,
            taken("image_format")?,
            int32s(&|r| r.size.0),
            int32s(&|r| r.size.1),
            int32s(&|r| r.image_size.0),
            int32s(&|r| r.image_size.1),
            self.action_array()?,
            self.pixels_array()?,
            strings(&|r| &r.text),
            opt_strings(&|r| r.thought.as_deref()),
            self.target_array()?,
            opt_strings(&|r| r.target.as_ref().and_then(|t| t.role.as_deref())),
            opt_strings(&|r| r.target.as_ref().and_then(|t| t.name.as_deref())),
            take(events.values(), &ev_idx, None)?,
            strings_list(rows.iter().map(|r| r.history_actions.clone())),
            strings_list(rows.iter().map(|r| r.history_keys.clone())),
        ]);
        if let Some(m) = &unit.messages {
            let turns: Vec<&[Turn]> = rows
                .iter()
                .map(|r| r.chat.as_ref().map_or(&[][..], |c| &c.0[..]))
                .collect();
            let (_, a, b) = turn_names(m.preset);
            columns.push(turns_list(a, b, m.loss.is_some(), &turns)?);
            columns
                .push(strings_list(rows.iter().map(|r| {
                    r.chat.as_ref().map(|c| c.1.clone()).unwrap_or_default()
                })));
        }
        if split {
            columns.push(taken("split")?);
        }
        let columns = columns
            .into_iter()
            .zip(schema.fields())
            .map(|(c, f)| {
                if c.data_type() == f.data_type() {
                    Ok(c)
                } else {
                    arrow::compute::cast(&c, f.data_type()).map_err(Error::from)
                }
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(RecordBatch::try_new(schema, columns)?)
    }
}
