//! Reading many small objects (a run's rank files) with requests in flight
//! together: Summarize at 10,000 ranks reads 30,000 objects, and one S3 GET after
//! another would take longer than a Lambda may run.

use super::{ObjectStore, StoreError};

/// Requests in flight at once when reading many objects.
pub const PARALLEL_GETS: usize = 32;

/// Reads `keys` with up to `parallel` requests at once and hands each result to
/// `each` in the order of `keys`. At most `parallel` objects are held at a time,
/// and the first error `each` returns stops the reading.
pub fn for_each_fetched<E>(
    store: &dyn ObjectStore,
    keys: &[String],
    parallel: usize,
    mut each: impl FnMut(usize, Result<Vec<u8>, StoreError>) -> Result<(), E>,
) -> Result<(), E> {
    for (window, chunk) in keys.chunks(parallel.max(1)).enumerate() {
        let fetched = on_threads(
            chunk,
            |key| store.get(key),
            |key| {
                Err(StoreError::Io {
                    key: key.clone(),
                    source: std::io::Error::other("the reading thread panicked"),
                })
            },
        );
        for (i, result) in fetched.into_iter().enumerate() {
            each(window * parallel.max(1) + i, result)?;
        }
    }
    Ok(())
}

/// `f` of every item, each on a thread of its own, in the items' order; an
/// item whose thread panicked gets `panicked(item)`.
pub fn on_threads<T: Sync, R: Send>(
    items: &[T],
    f: impl Fn(&T) -> R + Sync,
    panicked: impl Fn(&T) -> R,
) -> Vec<R> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .iter()
            .map(|item| {
                let f = &f;
                scope.spawn(move || f(item))
            })
            .collect();
        handles
            .into_iter()
            .zip(items)
            .map(|(handle, item)| handle.join().unwrap_or_else(|_| panicked(item)))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::LocalStore;

    #[test]
    fn results_arrive_in_key_order_with_missing_keys_as_errors() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        for i in 0..10 {
            if i != 7 {
                store
                    .put(&format!("r/{i}.json"), i.to_string().as_bytes())
                    .unwrap();
            }
        }
        let keys: Vec<String> = (0..10).map(|i| format!("r/{i}.json")).collect();
        let mut seen = Vec::new();
        for_each_fetched(&store, &keys, 3, |i, got| {
            seen.push((i, got.map(|b| String::from_utf8(b).unwrap()).ok()));
            Ok::<_, ()>(())
        })
        .unwrap();
        let expected: Vec<_> = (0..10)
            .map(|i| (i, (i != 7).then(|| i.to_string())))
            .collect();
        assert_eq!(seen, expected);
        // An error from `each` stops the reading there.
        let mut calls = 0;
        let stopped = for_each_fetched(&store, &keys, 4, |i, _| {
            calls += 1;
            if i == 5 { Err(i) } else { Ok(()) }
        });
        assert_eq!((stopped, calls), (Err(5), 6));
    }
}
