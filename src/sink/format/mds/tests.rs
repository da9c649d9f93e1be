//! Unit tests of the MDS shard writer and reader.

use super::*;
use crate::sink::row_schema::image_fields;
use arrow::array::{ArrayRef, BinaryArray, Int64Array, StringArray, StructArray};
use arrow::datatypes::{Field, Schema};
use object_store::memory::InMemory;

fn rows(n: usize) -> (SchemaRef, Vec<RecordBatch>) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("key", DataType::Utf8, true),
        Field::new("session_id", DataType::Utf8, true),
        Field::new("frame_idx", DataType::Int64, true),
        Field::new("image", DataType::Struct(image_fields()), true),
        Field::new("image_format", DataType::Utf8, true),
        Field::new("actor_id", DataType::Utf8, true),
    ]));
    let batches = (0..n)
        .map(|i| {
            let image = StructArray::new(
                image_fields(),
                vec![
                    Arc::new(BinaryArray::from(vec![vec![i as u8; 50].as_slice()])) as ArrayRef,
                    Arc::new(StringArray::from(vec![format!("k{i}.png")])),
                ],
                None,
            );
            let cols: Vec<ArrayRef> = vec![
                Arc::new(StringArray::from(vec![format!("s_{i:06}")])),
                Arc::new(StringArray::from(vec!["s"])),
                Arc::new(Int64Array::from(vec![i as i64])),
                Arc::new(image),
                Arc::new(StringArray::from(vec!["png"])),
                Arc::new(StringArray::from(vec![None::<&str>])),
            ];
            RecordBatch::try_new(Arc::clone(&schema), cols).unwrap()
        })
        .collect();
    (schema, batches)
}

async fn write(
    store: &Arc<InMemory>,
    name: &str,
    spill: usize,
    batches: &[RecordBatch],
    schema: SchemaRef,
) -> (ShardDone, Vec<u8>) {
    let dyn_store: Arc<dyn ObjectStore> = Arc::clone(store) as _;
    let out = HashingWriter::upload(Arc::clone(&dyn_store), Path::from(name), 64);
    let mut shard = Box::new(MdsShard::with_spill(out, schema, 1 << 20, spill).unwrap());
    for b in batches {
        shard.size_with(b).unwrap();
        shard.add(b).await.unwrap();
    }
    let entry = shard.loader_entry().unwrap();
    assert_eq!(entry["samples"], batches.len());
    let done = shard.finish().await.unwrap();
    let bytes = dyn_store
        .get(&Path::from(name))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    (done, bytes.to_vec())
}

#[tokio::test]
async fn a_spilled_shard_has_the_bytes_of_one_held_in_memory_and_leaves_no_spool() {
    let store = Arc::new(InMemory::new());
    let (schema, batches) = rows(20);
    let (held, held_bytes) = write(
        &store,
        "a/shard-000000.mds",
        usize::MAX,
        &batches,
        Arc::clone(&schema),
    )
    .await;
    let (spilled, spilled_bytes) = write(&store, "b/shard-000000.mds", 200, &batches, schema).await;
    assert_eq!(held_bytes, spilled_bytes);
    assert_eq!(held.sha256, spilled.sha256);
    assert_eq!(held.bytes, held_bytes.len() as u64);
    let dyn_store: Arc<dyn ObjectStore> = store;
    let names: Vec<String> = dyn_store
        .list(None)
        .map(|m| m.unwrap().location.to_string())
        .collect()
        .await;
    assert_eq!(names.len(), 2, "only the shards: {names:?}");

    let samples = read_samples(&spilled_bytes).unwrap();
    assert_eq!(samples.len(), 20);
    for (i, s) in samples.iter().enumerate() {
        let col = |n: &str| s.columns.iter().find(|(c, _)| c == n).unwrap().1;
        assert_eq!(col("key"), format!("s_{i:06}").as_bytes());
        assert_eq!(col("image"), vec![i as u8; 50].as_slice());
        assert_eq!(col("frame_idx"), (i as i64).to_le_bytes().as_slice());
        assert_eq!(col("actor_id"), b"null", "a null stays a JSON null");
    }
    // size_with is exact: the bound before the last row is the size.
    let (schema, batches) = rows(3);
    let out = HashingWriter::upload(
        Arc::new(InMemory::new()) as Arc<dyn ObjectStore>,
        Path::from("c"),
        64,
    );
    let mut shard = Box::new(MdsShard::new(out, schema, 1 << 20).unwrap());
    let mut bound = 0;
    for b in &batches {
        bound = shard.size_with(b).unwrap();
        shard.add(b).await.unwrap();
    }
    assert_eq!(shard.finish().await.unwrap().bytes, bound);
}

#[test]
fn a_truncated_shard_is_named_malformed() {
    assert!(read_samples(&[1, 0, 0, 0, 9])
        .unwrap_err()
        .contains("truncated"));
}

#[test]
fn python_json_matches_json_dumps_sort_keys() {
    let v = json!({"b": [1, null, "x"], "a": {"z": true, "y": "é\"\n"}});
    assert_eq!(
        python_json(&v),
        r#"{"a": {"y": "\u00e9\"\n", "z": true}, "b": [1, null, "x"]}"#
    );
    assert_eq!(python_json(&json!("😀")), r#""\ud83d\ude00""#);
}
