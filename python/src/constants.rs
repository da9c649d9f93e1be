//! Constant arguments across the FFI. A host calling one of the product's
//! SQL functions through DataFusion's FFI (datafusion-ffi 55) passes every
//! argument as an array, a literal as its value repeated. The functions
//! that take constants (`split_of`'s salt, names and fractions,
//! `redact_text`'s patterns) get them back as the scalars they were: an
//! argument whose rows all hold one value. Over the FFI a column holding
//! one value in a batch cannot be told from a literal; in Rust the
//! functions still refuse a column there.

use std::sync::Arc;

use arrow::array::Array;
use arrow::datatypes::DataType;
use datafusion::arrow::datatypes::FieldRef;
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
};

/// `udf` as the host should call it: wrapped when it takes constants.
pub(crate) fn for_host(udf: ScalarUDF) -> ScalarUDF {
    match udf.name() {
        "split_of" | "redact_text" => ScalarUDF::new_from_impl(ConstantsFromHost {
            inner: Arc::new(udf),
            from: 1,
        }),
        _ => udf,
    }
}

/// A function whose arguments from `from` on are constants.
#[derive(Debug, PartialEq, Eq, Hash)]
struct ConstantsFromHost {
    inner: Arc<ScalarUDF>,
    from: usize,
}

/// `value`'s one value when every row holds it.
fn one_value(value: &dyn Array) -> Result<Option<ScalarValue>> {
    if value.is_empty() {
        return Ok(None);
    }
    let first = ScalarValue::try_from_array(value, 0)?;
    let repeated = first.to_array_of_size(value.len())?;
    Ok((repeated.to_data() == value.to_data()).then_some(first))
}

impl ScalarUDFImpl for ConstantsFromHost {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn invoke_with_args(&self, mut args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if args.number_rows == 0 {
            // No row to take the constants from, and nothing to compute.
            return Ok(ColumnarValue::Array(arrow::array::new_empty_array(
                args.return_field.data_type(),
            )));
        }
        for a in args.args.iter_mut().skip(self.from) {
            if let ColumnarValue::Array(values) = a {
                if let Some(v) = one_value(values.as_ref())? {
                    *a = ColumnarValue::Scalar(v);
                }
            }
        }
        self.inner.invoke_with_args(args)
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::StringArray;

    use super::*;

    #[test]
    fn a_repeated_array_is_its_value_and_a_varying_one_is_none() {
        let same = StringArray::from(vec!["salt"; 3]);
        assert_eq!(
            one_value(&same).unwrap(),
            Some(ScalarValue::Utf8(Some("salt".into())))
        );
        let nulls = StringArray::from(vec![None::<&str>, None]);
        assert_eq!(one_value(&nulls).unwrap(), Some(ScalarValue::Utf8(None)));
        assert_eq!(one_value(&StringArray::from(vec!["a", "b"])).unwrap(), None);
        assert_eq!(
            one_value(&StringArray::from(vec![Some("a"), None])).unwrap(),
            None
        );
        assert_eq!(
            one_value(&StringArray::from(Vec::<&str>::new())).unwrap(),
            None
        );
    }
}
