//! The object store against moto: ETags computed as S3 computes them, and a ranged read tied to one object.

use super::*;

#[test]
fn a_local_files_etag_is_the_one_s3_gives_it() {
    // One part, the multipart threshold exactly, and several parts, against
    // moto, which computes ETags as S3 does (MD5, or MD5 of the parts' MD5s).
    let Some(bin) = venv_bin() else { return };
    let stack = start_stack(&bin);
    let store = s3(&stack);
    let threshold = cosmicai_engine::store::s3::MULTIPART_THRESHOLD;
    for len in [0, 1000, threshold, threshold + 1, 20_000_000] {
        let bytes: Vec<u8> = (0..len).map(|i| (i * 7 % 253) as u8).collect();
        let key = format!("etags/{len}");
        store.put(&key, &bytes).unwrap();
        let listed = store.list_with_etags("etags").unwrap();
        let (_, etag) = listed.iter().find(|(o, _)| o.key == key).unwrap();
        let ours = cosmicai_engine::store::s3::etag_of(&bytes[..], len as u64).unwrap();
        assert_eq!(&ours, etag, "{len} bytes");
        assert_eq!(etag.contains('-'), len > threshold, "{len} bytes: {etag}");
        // Streamed from a reader, part by part: the same object and ETag.
        let streamed = format!("streamed/{len}");
        let said = store.put_from(&streamed, &bytes[..], len as u64).unwrap();
        assert_eq!(&said, etag, "{len} bytes streamed");
        assert_eq!(store.get(&streamed).unwrap(), bytes, "{len} bytes streamed");
    }
    // A reader that ends early or goes on past its length (a file cut, or grown,
    // while it was read) fails by name and leaves no object, in one part or in
    // several.
    for len in [1000, 20_000_000] {
        for (bytes, said) in [
            (vec![1u8; len - 10], "changed while it was read"),
            (vec![1u8; len + 10], "grew past its"),
        ] {
            let key = format!("cut/{len}");
            let err = store.put_from(&key, &bytes[..], len as u64).unwrap_err();
            assert!(err.to_string().contains(said), "{err}");
            assert!(store.list("cut").unwrap().is_empty());
        }
    }
    // No half multipart upload is left to be billed.
    let uploads = store
        .block_on(
            store
                .client()
                .list_multipart_uploads()
                .bucket(BUCKET)
                .send(),
        )
        .unwrap();
    assert!(uploads.uploads().is_empty(), "{uploads:?}");
}

#[test]
fn a_ranged_read_of_a_replaced_object_is_refused() {
    let Some(bin) = venv_bin() else { return };
    let stack = start_stack(&bin);
    let store = s3(&stack);
    // A partition read in ranges is read from one object: once another object
    // replaced it, moto, as S3 does, refuses the read (412 to If-Match), and
    // the store names that.
    let key = "versions/part-0.safetensors";
    store.put(key, &[1u8; 1000]).unwrap();
    let mut read = Vec::new();
    let (n, etag) = store
        .get_range_if_match(key, 0..100, None, &mut read)
        .unwrap();
    let etag = etag.expect("S3 sends an ETag");
    assert_eq!(n, 100);
    let again = store
        .get_range_if_match(key, 100..200, Some(&etag), &mut read)
        .unwrap();
    assert_eq!(again, (100, Some(etag.clone())));
    store.put(key, &[2u8; 1000]).unwrap();
    let err = store
        .get_range_if_match(key, 200..300, Some(&etag), &mut read)
        .unwrap_err();
    assert!(
        matches!(err, cosmicai_engine::store::StoreError::Changed { .. }),
        "{err}"
    );
    assert_eq!(read, [1u8; 200]);
}
