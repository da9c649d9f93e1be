//! Row helpers of the export query: `frame_key(session_id, frame_idx)` gives
//! `{session_id}_{frame_idx:06}` (at least six digits, never truncated), and
//! `event_actions(events)` keeps the events with `action = true`.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, ListArray, StringBuilder, StructArray};
use arrow::buffer::OffsetBuffer;
use arrow::compute::filter;
use arrow::datatypes::{DataType, Int64Type};
use datafusion::common::{exec_err, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use crate::store::event_list_type;

/// `frame_key(session_id, frame_idx)` → `ses_x_000042`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct FrameKey {
    signature: Signature,
}

impl FrameKey {
    /// The function.
    pub fn new() -> Self {
        Self {
            signature: Signature::exact(
                vec![DataType::Utf8, DataType::Int64],
                Volatility::Immutable,
            ),
        }
    }
}

impl Default for FrameKey {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for FrameKey {
    fn name(&self) -> &str {
        "frame_key"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let a = ColumnarValue::values_to_arrays(&args.args)?;
        let ids = a[0].as_string::<i32>();
        let idx = a[1].as_primitive::<Int64Type>();
        let mut out =
            StringBuilder::with_capacity(ids.len(), ids.value_data().len() + ids.len() * 8);
        for i in 0..ids.len() {
            if ids.is_null(i) || idx.is_null(i) {
                out.append_null();
            } else {
                out.append_value(format!("{}_{:06}", ids.value(i), idx.value(i)));
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// `event_actions(events)`: the events whose `action` is true.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct EventActions {
    signature: Signature,
}

impl EventActions {
    /// The function.
    pub fn new() -> Self {
        Self {
            signature: Signature::exact(vec![event_list_type()], Volatility::Immutable),
        }
    }
}

impl Default for EventActions {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for EventActions {
    fn name(&self) -> &str {
        "event_actions"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(event_list_type())
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let a = ColumnarValue::values_to_arrays(&args.args)?;
        Ok(ColumnarValue::Array(actions_only(a[0].as_list::<i32>())?))
    }
}

pub(crate) fn actions_only(list: &ListArray) -> Result<ArrayRef> {
    let values = list.values();
    let Some(structs) = values.as_any().downcast_ref::<StructArray>() else {
        return exec_err!("event_actions: events must be a list of structs");
    };
    let Some(action) = structs.column_by_name("action") else {
        return exec_err!("event_actions: events lack an `action` field");
    };
    // A sliced list may not start at value 0: work on its own values only.
    let offsets = list.value_offsets();
    let (first, last) = (offsets[0] as usize, offsets[list.len()] as usize);
    let structs = structs.slice(first, last - first);
    let action = action.slice(first, last - first);
    let mask: BooleanArray = super::sampling::bools(&action);
    let mut lengths = Vec::with_capacity(list.len());
    for w in offsets.windows(2) {
        let (start, end) = (w[0] as usize - first, w[1] as usize - first);
        lengths.push((start..end).filter(|&j| mask.value(j)).count());
    }
    let kept = filter(&structs, &mask)?;
    let DataType::List(field) = list.data_type() else {
        return exec_err!("event_actions: expected a list");
    };
    Ok(Arc::new(ListArray::try_new(
        Arc::clone(field),
        OffsetBuffer::from_lengths(lengths),
        kept,
        list.nulls().cloned(),
    )?))
}
