//! The sampling functions (SPEC §4 table), each `keep_action_frames`-aware:
//!
//! | SQL | keeps |
//! |---|---|
//! | `sample_event_only(is_event_frame, is_action_frame, keep_action_frames)` | event frames |
//! | `sample_every_n_ms(t_ms, prev_t_ms, interval_ms, is_action_frame, keep_action_frames)` | the first frame of each `t_ms / interval_ms` window: `prev_t_ms` is null or in another window |
//! | `sample_keyframes_only(is_keyframe, is_action_frame, keep_action_frames)` | keyframes |
//!
//! …plus, when `keep_action_frames` is true, every action frame. Mode `all`
//! needs no function. Nulls count as false.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray};
use arrow::compute::kernels::boolean::{and, or};
use arrow::compute::prep_null_mask_filter;
use arrow::datatypes::{DataType, Int64Type};
use datafusion::common::{exec_err, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

/// Booleans with nulls read as false.
pub(crate) fn bools(a: &ArrayRef) -> BooleanArray {
    let b = a.as_boolean();
    if b.null_count() == 0 {
        b.clone()
    } else {
        prep_null_mask_filter(b)
    }
}

/// `kept OR (keep_action_frames AND is_action_frame)`.
fn with_actions(
    kept: BooleanArray,
    is_action: &ArrayRef,
    keep_actions: &ArrayRef,
) -> Result<ColumnarValue> {
    let actions = and(&bools(keep_actions), &bools(is_action))?;
    Ok(ColumnarValue::Array(Arc::new(or(&kept, &actions)?)))
}

macro_rules! flag_mode {
    ($ty:ident, $name:literal, $doc:literal) => {
        #[doc = $doc]
        #[derive(Debug, PartialEq, Eq, Hash)]
        pub struct $ty {
            signature: Signature,
        }

        impl $ty {
            /// The function.
            pub fn new() -> Self {
                Self {
                    signature: Signature::exact(
                        vec![DataType::Boolean, DataType::Boolean, DataType::Boolean],
                        Volatility::Immutable,
                    ),
                }
            }
        }

        impl Default for $ty {
            fn default() -> Self {
                Self::new()
            }
        }

        impl ScalarUDFImpl for $ty {
            fn name(&self) -> &str {
                $name
            }
            fn signature(&self) -> &Signature {
                &self.signature
            }
            fn return_type(&self, _: &[DataType]) -> Result<DataType> {
                Ok(DataType::Boolean)
            }
            fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
                let a = ColumnarValue::values_to_arrays(&args.args)?;
                with_actions(bools(&a[0]), &a[1], &a[2])
            }
        }
    };
}

flag_mode!(
    SampleEventOnly,
    "sample_event_only",
    "`sample_event_only(is_event_frame, is_action_frame, keep_action_frames)`: event frames (plus action frames)."
);
flag_mode!(
    SampleKeyframesOnly,
    "sample_keyframes_only",
    "`sample_keyframes_only(is_keyframe, is_action_frame, keep_action_frames)`: keyframes (plus action frames)."
);

/// `sample_every_n_ms(t_ms, prev_t_ms, interval_ms, is_action_frame,
/// keep_action_frames)`: the first frame of each `interval_ms` window of
/// `t_ms` within a session (plus action frames).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SampleEveryNMs {
    signature: Signature,
}

impl SampleEveryNMs {
    /// The function.
    pub fn new() -> Self {
        Self {
            signature: Signature::exact(
                vec![
                    DataType::Int64,
                    DataType::Int64,
                    DataType::Int64,
                    DataType::Boolean,
                    DataType::Boolean,
                ],
                Volatility::Immutable,
            ),
        }
    }
}

impl Default for SampleEveryNMs {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for SampleEveryNMs {
    fn name(&self) -> &str {
        "sample_every_n_ms"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let a = ColumnarValue::values_to_arrays(&args.args)?;
        let t = a[0].as_primitive::<Int64Type>();
        let prev = a[1].as_primitive::<Int64Type>();
        let interval = a[2].as_primitive::<Int64Type>();
        let mut kept = Vec::with_capacity(t.len());
        for i in 0..t.len() {
            if interval.is_null(i) || interval.value(i) <= 0 {
                return exec_err!("sample_every_n_ms: interval_ms must be > 0");
            }
            let n = interval.value(i);
            let keep = t.is_valid(i)
                && (prev.is_null(i) || prev.value(i).div_euclid(n) != t.value(i).div_euclid(n));
            kept.push(keep);
        }
        with_actions(BooleanArray::from(kept), &a[3], &a[4])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use arrow::datatypes::Field;
    use datafusion::config::ConfigOptions;
    use datafusion::logical_expr::ScalarUDF;

    fn call(f: impl ScalarUDFImpl + 'static, args: Vec<ArrayRef>) -> Vec<bool> {
        let udf = ScalarUDF::new_from_impl(f);
        let n = args[0].len();
        let arg_fields = args
            .iter()
            .map(|a| Arc::new(Field::new("a", a.data_type().clone(), true)))
            .collect();
        let out = udf
            .invoke_with_args(ScalarFunctionArgs {
                args: args.into_iter().map(ColumnarValue::Array).collect(),
                arg_fields,
                number_rows: n,
                return_field: Arc::new(Field::new("r", DataType::Boolean, true)),
                config_options: Arc::new(ConfigOptions::default()),
            })
            .unwrap()
            .into_array(n)
            .unwrap();
        out.as_boolean().iter().map(|v| v.unwrap()).collect()
    }

    fn ints(v: &[Option<i64>]) -> ArrayRef {
        Arc::new(Int64Array::from(v.to_vec()))
    }

    fn flags(v: &[bool]) -> ArrayRef {
        Arc::new(BooleanArray::from(v.to_vec()))
    }

    #[test]
    fn every_n_ms_keeps_first_frame_of_each_window() {
        // t: 0, 40, 99, 100, 250, 260 with interval 100 → windows 0,0,0,1,2,2
        let t = ints(&[Some(0), Some(40), Some(99), Some(100), Some(250), Some(260)]);
        let prev = ints(&[None, Some(0), Some(40), Some(99), Some(100), Some(250)]);
        let n = ints(&[Some(100); 6]);
        let action = flags(&[false, false, true, false, false, false]);
        let got = call(
            SampleEveryNMs::new(),
            vec![
                Arc::clone(&t),
                Arc::clone(&prev),
                Arc::clone(&n),
                Arc::clone(&action),
                flags(&[false; 6]),
            ],
        );
        assert_eq!(got, vec![true, false, false, true, true, false]);
        let got = call(
            SampleEveryNMs::new(),
            vec![t, prev, n, action, flags(&[true; 6])],
        );
        assert_eq!(got, vec![true, false, true, true, true, false]);
    }

    #[test]
    fn flag_modes_union_action_frames() {
        let ev = flags(&[true, false, false]);
        let act = flags(&[false, true, false]);
        assert_eq!(
            call(
                SampleEventOnly::new(),
                vec![Arc::clone(&ev), Arc::clone(&act), flags(&[false; 3])]
            ),
            vec![true, false, false]
        );
        assert_eq!(
            call(SampleKeyframesOnly::new(), vec![ev, act, flags(&[true; 3])]),
            vec![true, true, false]
        );
    }
}
