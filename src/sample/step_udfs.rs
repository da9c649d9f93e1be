//! The SQL functions of step rows: `step_action(type, data, width,
//! height[, coordinates])` (the canonical action of an event, as JSON) and
//! `smart_resize(width, height[, factor, min_pixels, max_pixels])` (Qwen2.5-VL's
//! resized size), so `sql/steps.slt` pins the action table and the resize
//! arithmetic through SQL.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int64Array, StringBuilder, StructArray};
use arrow::datatypes::{DataType, Field, Fields, Int64Type};
use datafusion::common::{exec_err, Result as DfResult};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use serde_json::{json, Value};

use super::action::{Action, Finish};
use super::convert::{smart_resize, Convert};
use crate::spec::{ActionSyntax, Coordinates, SmartResize};

/// Parses a `coordinates` value of the spec (`"pixels"`, …, or
/// `{"smart_resize": {…}}`) through the spec parser's rules.
fn parse_coordinates(text: &str) -> Result<Coordinates, String> {
    let v: Value = serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.into()));
    let spec = json!({"workflow": "x", "format": "jsonl", "unit": "step", "coordinates": v});
    crate::spec::ExportSpec::parse(&spec, chrono::Utc::now())
        .map_err(|e| {
            let parts: Vec<String> = e.0.iter().map(|p| p.to_string()).collect();
            parts.join("; ")
        })
        .and_then(|s| {
            s.steps
                .map(|st| st.coordinates)
                .ok_or_else(|| "not a step spec".to_string())
        })
}

/// `step_action(type, data, width, height[, coordinates])`: the canonical
/// action of an event as JSON text (nulls left out), coordinates in
/// `coordinates` (default `'pixels'`; a name or the spec's JSON).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct StepAction {
    signature: Signature,
}

impl StepAction {
    /// The function.
    pub fn new() -> Self {
        Self {
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }
}

impl Default for StepAction {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for StepAction {
    fn name(&self) -> &str {
        "step_action"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let n = args.args.len();
        if !(4..=5).contains(&n) {
            return exec_err!(
                "step_action(type, data, width, height[, coordinates]) takes 4 or 5 arguments; got {n}"
            );
        }
        let rows = args.number_rows;
        let arrays = args
            .args
            .iter()
            .map(|a| a.to_array(rows))
            .collect::<DfResult<Vec<_>>>()?;
        let text = |i: usize| arrow::compute::cast(&arrays[i], &DataType::Utf8);
        let int = |i: usize| arrow::compute::cast(&arrays[i], &DataType::Int64);
        let (kinds, datas, widths, heights) = (text(0)?, text(1)?, int(2)?, int(3)?);
        let coords = if n == 5 { Some(text(4)?) } else { None };
        let (kinds, datas) = (kinds.as_string::<i32>(), datas.as_string::<i32>());
        let (widths, heights) = (
            widths.as_primitive::<Int64Type>(),
            heights.as_primitive::<Int64Type>(),
        );
        let mut out = StringBuilder::new();
        for i in 0..rows {
            if kinds.is_null(i) || widths.is_null(i) || heights.is_null(i) {
                out.append_null();
                continue;
            }
            let c = match &coords {
                Some(c) if c.is_valid(i) => {
                    match parse_coordinates(c.as_string::<i32>().value(i)) {
                        Ok(c) => c,
                        Err(e) => return exec_err!("step_action: {e}"),
                    }
                }
                _ => Coordinates::Pixels,
            };
            let data: Value = if datas.is_null(i) {
                Value::Null
            } else {
                serde_json::from_str(datas.value(i)).unwrap_or(Value::Null)
            };
            let (w, h) = (widths.value(i), heights.value(i));
            let (Ok(w), Ok(h)) = (u32::try_from(w), u32::try_from(h)) else {
                return exec_err!("step_action: size {w}×{h} is not a frame size");
            };
            let convert = match Convert::new(c, w, h) {
                Ok(c) => c,
                Err(e) => return exec_err!("step_action: {e}"),
            };
            let action = Action::from_event(kinds.value(i), &data);
            out.append_value(action.to_text(ActionSyntax::Json, &convert, Finish::Success));
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// `smart_resize(width, height[, factor, min_pixels, max_pixels])` →
/// `{width, height}` of Qwen2.5-VL's resize (defaults 28, 3136, 1003520).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SmartResizeUdf {
    signature: Signature,
}

impl SmartResizeUdf {
    /// The function.
    pub fn new() -> Self {
        Self {
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }
}

impl Default for SmartResizeUdf {
    fn default() -> Self {
        Self::new()
    }
}

fn size_fields() -> Fields {
    Fields::from(vec![
        Field::new("width", DataType::Int64, true),
        Field::new("height", DataType::Int64, true),
    ])
}

impl ScalarUDFImpl for SmartResizeUdf {
    fn name(&self) -> &str {
        "smart_resize"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Struct(size_fields()))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let n = args.args.len();
        if n != 2 && n != 5 {
            return exec_err!(
                "smart_resize(width, height[, factor, min_pixels, max_pixels]) takes 2 or 5 arguments; got {n}"
            );
        }
        let rows = args.number_rows;
        let ints = args
            .args
            .iter()
            .map(|a| arrow::compute::cast(&a.to_array(rows)?, &DataType::Int64).map_err(Into::into))
            .collect::<DfResult<Vec<ArrayRef>>>()?;
        let get = |c: usize, i: usize| {
            let a = ints[c].as_primitive::<Int64Type>();
            a.is_valid(i).then(|| a.value(i))
        };
        let (mut ws, mut hs) = (Vec::with_capacity(rows), Vec::with_capacity(rows));
        for i in 0..rows {
            let d = SmartResize::QWEN25_VL;
            let budget = if n == 5 {
                match (get(2, i), get(3, i), get(4, i)) {
                    (Some(f), Some(lo), Some(hi)) if f > 0 && lo > 0 && hi >= lo => SmartResize {
                        factor: u32::try_from(f).unwrap_or(u32::MAX),
                        min_pixels: lo as u64,
                        max_pixels: hi as u64,
                    },
                    other => return exec_err!("smart_resize: bad budget {other:?}"),
                }
            } else {
                d
            };
            match (get(0, i), get(1, i)) {
                (Some(w), Some(h)) => {
                    let (Ok(w), Ok(h)) = (u32::try_from(w), u32::try_from(h)) else {
                        return exec_err!("smart_resize: {w}×{h} is not an image size");
                    };
                    match smart_resize(w, h, budget) {
                        Ok((w, h)) => {
                            ws.push(Some(i64::from(w)));
                            hs.push(Some(i64::from(h)));
                        }
                        Err(e) => return exec_err!("smart_resize: {e}"),
                    }
                }
                _ => {
                    ws.push(None);
                    hs.push(None);
                }
            }
        }
        let nulls: Vec<bool> = ws.iter().map(Option::is_some).collect();
        let array = StructArray::try_new(
            size_fields(),
            vec![
                Arc::new(Int64Array::from(ws)) as ArrayRef,
                Arc::new(Int64Array::from(hs)) as ArrayRef,
            ],
            Some(nulls.into()),
        )?;
        Ok(ColumnarValue::Array(Arc::new(array)))
    }
}
