//! Reading many small objects (a run's rank files) with requests in flight
//! together: Summarize at 10,000 ranks reads 30,000 objects, and one S3 GET after
//! another would take longer than a Lambda may run.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Condvar, Mutex, mpsc};

use super::{ObjectStore, StoreError};

/// Requests in flight at once when reading many objects.
pub const PARALLEL_GETS: usize = 32;

/// Keys read ahead of the one to be handed on next, per request in flight.
const AHEAD_PER_REQUEST: usize = 16;

/// Bytes read ahead and not yet handed on, past which readers wait.
const HELD_BYTES: usize = 64 << 20;

/// Reads `keys` with up to `parallel` requests at once and hands each result to
/// `each` in the order of `keys`; the first error `each` returns stops the
/// reading.
///
/// The window slides: a reader takes the next key as soon as it is done with
/// one, up to `16 * parallel` keys past the one to be handed on next, while
/// under 64 MiB are held. One slow GET (S3's tail latency) then holds the
/// readers back only once they are that far past it; in fixed batches of
/// `parallel`, every batch waited for its slowest (`cosmicai bench fetch`).
pub fn for_each_fetched<E>(
    store: &dyn ObjectStore,
    keys: &[String],
    parallel: usize,
    each: impl FnMut(usize, Result<Vec<u8>, StoreError>) -> Result<(), E>,
) -> Result<(), E> {
    fetch_in_window(store, keys, parallel, HELD_BYTES, each)
}

fn fetch_in_window<E>(
    store: &dyn ObjectStore,
    keys: &[String],
    parallel: usize,
    held_bytes: usize,
    mut each: impl FnMut(usize, Result<Vec<u8>, StoreError>) -> Result<(), E>,
) -> Result<(), E> {
    let parallel = parallel.max(1);
    let ahead = AHEAD_PER_REQUEST * parallel;
    let window = Window {
        state: Mutex::new(WindowState {
            next: 0,
            handed: 0,
            held: 0,
            stop: false,
        }),
        held_bytes,
        moved: Condvar::new(),
    };
    let (sender, arrivals) = mpsc::channel::<(usize, Result<Vec<u8>, StoreError>)>();
    std::thread::scope(|scope| {
        for _ in 0..parallel.min(keys.len()) {
            let sender = sender.clone();
            let window = &window;
            scope.spawn(move || {
                while let Some(i) = window.take(keys.len(), ahead) {
                    let got = std::panic::catch_unwind(AssertUnwindSafe(|| store.get(&keys[i])))
                        .unwrap_or_else(|_| {
                            Err(StoreError::Io {
                                key: keys[i].clone(),
                                source: std::io::Error::other("the reading thread panicked"),
                            })
                        });
                    window.hold(got.as_ref().map_or(0, Vec::len));
                    if sender.send((i, got)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(sender);
        // The readers are let go however this ends, a panic in `each` too:
        // else they would wait on the window for ever, and the scope with them.
        let _stop = StopOnDrop(&window);
        // Results that arrived before the ones to be handed on first.
        let mut early = BTreeMap::new();
        let mut handed = 0;
        loop {
            if handed == keys.len() {
                break Ok(());
            }
            let Ok((i, got)) = arrivals.recv() else {
                break Ok(());
            };
            early.insert(i, got);
            let mut failed = None;
            let mut released = 0;
            while let Some(got) = early.remove(&handed) {
                released += got.as_ref().map_or(0, Vec::len);
                if let Err(e) = each(handed, got) {
                    failed = Some(e);
                    break;
                }
                handed += 1;
            }
            if let Some(e) = failed {
                break Err(e);
            }
            window.hand_on(handed, released);
        }
    })
}

/// Stops the readers when dropped.
struct StopOnDrop<'a>(&'a Window);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// Which keys the readers may take: up to `ahead` past the next to be handed
/// on, while under `held_bytes` are held.
struct Window {
    state: Mutex<WindowState>,
    held_bytes: usize,
    moved: Condvar,
}

struct WindowState {
    next: usize,
    handed: usize,
    /// Bytes read and not yet handed on.
    held: usize,
    stop: bool,
}

impl Window {
    /// The next key's index, once the window allows it; `None` when every key
    /// is taken or the reading stopped.
    fn take(&self, len: usize, ahead: usize) -> Option<usize> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if state.stop || state.next >= len {
                return None;
            }
            // The key to be handed on next is always taken by now (every key
            // below `next` is), so waiting on the bytes held cannot stall.
            if state.next < state.handed + ahead && state.held < self.held_bytes {
                state.next += 1;
                return Some(state.next - 1);
            }
            state = self.moved.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn hold(&self, bytes: usize) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).held += bytes;
    }

    fn hand_on(&self, handed: usize, released: usize) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.handed = handed;
        state.held = state.held.saturating_sub(released);
        drop(state);
        self.moved.notify_all();
    }

    fn stop(&self) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).stop = true;
        self.moved.notify_all();
    }
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

    /// A store that only answers GETs, with `get`.
    struct Gets<F>(F);

    impl<F: Fn(&str) -> Result<Vec<u8>, StoreError> + Send + Sync> ObjectStore for Gets<F> {
        fn list(&self, _: &str) -> Result<Vec<crate::store::StoreObject>, StoreError> {
            Ok(Vec::new())
        }
        fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
            (self.0)(key)
        }
        fn put(&self, _: &str, _: &[u8]) -> Result<(), StoreError> {
            Ok(())
        }
        fn put_if_absent(&self, _: &str, _: &[u8]) -> Result<bool, StoreError> {
            Ok(true)
        }
        fn local_path(&self, _: &str) -> Option<std::path::PathBuf> {
            None
        }
        fn describe(&self) -> String {
            "gets only".into()
        }
    }

    /// Key 0 answers only once the other readers have read every key the
    /// window allows past it: keys 1..64 at 4 readers. In fixed batches of 4,
    /// keys 4.. waited for key 0.
    #[test]
    fn a_slow_read_holds_back_only_the_window_past_it() {
        // (in flight, most in flight, done)
        let state = Mutex::new((0usize, 0usize, 0usize));
        let moved = Condvar::new();
        let store = Gets(|key: &str| {
            let i: usize = key.parse().unwrap();
            let mut s = state.lock().unwrap();
            s.0 += 1;
            s.1 = s.1.max(s.0);
            if i == 0 {
                // Wait until keys 1..64 are read (the window is 64 past key 0).
                let (after, _) = moved
                    .wait_timeout_while(s, std::time::Duration::from_secs(10), |s| s.2 < 63)
                    .unwrap();
                s = after;
                assert_eq!(s.2, 63, "keys 1..64 were not read while key 0 waited");
            } else {
                s.2 += 1;
            }
            s.0 -= 1;
            moved.notify_all();
            Ok(key.as_bytes().to_vec())
        });
        let keys: Vec<String> = (0..200).map(|i| i.to_string()).collect();
        let mut seen = Vec::new();
        for_each_fetched(&store, &keys, 4, |i, got| {
            seen.push((i, String::from_utf8(got.unwrap()).unwrap()));
            Ok::<_, ()>(())
        })
        .unwrap();
        assert_eq!(
            seen,
            (0..200).map(|i| (i, i.to_string())).collect::<Vec<_>>()
        );
        let most_in_flight = state.lock().unwrap().1;
        assert!(most_in_flight <= 4, "{most_in_flight} reads at once");
    }

    #[test]
    fn readers_wait_while_the_bytes_held_pass_the_bound() {
        // Key 0 waits 200 ms; the others are read at once, 400 bytes each.
        let fetched = std::sync::atomic::AtomicUsize::new(0);
        let store = Gets(|key: &str| {
            if key == "0" {
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            fetched.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(vec![0; 400])
        });
        let keys: Vec<String> = (0..100).map(|i| i.to_string()).collect();
        let mut most_ahead = 0;
        fetch_in_window(&store, &keys, 4, 1000, |i, _| {
            let fetched = fetched.load(std::sync::atomic::Ordering::SeqCst);
            most_ahead = most_ahead.max(fetched - i);
            Ok::<_, ()>(())
        })
        .unwrap();
        // Readers stop taking keys once 1,000 bytes are held (3 objects), so
        // at most those and one more per reader were read ahead of key 0;
        // without the bound, 64.
        assert!((1..=7).contains(&most_ahead), "{most_ahead} read ahead");
    }

    #[test]
    fn a_panic_while_handing_on_ends_the_reading() {
        // More keys than the window holds: readers wait on it when `each` panics.
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        let keys: Vec<String> = (0..200).map(|i| format!("missing/{i}")).collect();
        let caught = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let _ = for_each_fetched(&store, &keys, 2, |i, _| {
                if i == 1 {
                    panic!("each panicked");
                }
                Ok::<_, ()>(())
            });
        }));
        assert!(caught.is_err(), "the panic comes back, and nothing hangs");
    }
}
