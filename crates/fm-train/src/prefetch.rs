//! Batches prepared ahead of the gradient steps: by helper threads, and by the training thread
//! itself whenever the batch it needs next is not ready yet.
//!
//! Batch `k` is a pure function of `k` (the trainer derives its RNG from the seed and `k`), so
//! which thread makes it does not change a single bit; the steps consume them strictly in order.
//! Sharing the work this way keeps every thread busy when making a batch costs more than a
//! gradient step (exact OT couplings), where a fixed producer/consumer split would leave the
//! training thread idle.

use std::collections::BTreeMap;
use std::ops::{ControlFlow, Range};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Condvar, Mutex, MutexGuard};

struct State<B, E> {
    /// The next batch index nobody has claimed yet.
    next: usize,
    /// The batch index the consumer needs next.
    wanted: usize,
    /// Finished batches not consumed yet.
    ready: BTreeMap<usize, Result<B, E>>,
    /// Set when the consumer is done (or failed): helpers stop claiming.
    stop: bool,
}

struct Shared<B, E> {
    state: Mutex<State<B, E>>,
    changed: Condvar,
}

impl<B, E> Shared<B, E> {
    fn lock(&self) -> MutexGuard<'_, State<B, E>> {
        // A panic while holding the lock is turned into an error below; the state stays valid.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wait<'a>(&self, g: MutexGuard<'a, State<B, E>>) -> MutexGuard<'a, State<B, E>> {
        self.changed.wait(g).unwrap_or_else(|e| e.into_inner())
    }
}

/// Consumes `make(k)` for every `k` in `range`, in order, with `consume(k, batch)`.
///
/// `helpers` extra threads make batches ahead of the consumer, at most `window` past the one it
/// needs; while the consumer waits for a batch being made elsewhere it makes later ones itself.
/// A panic inside `make` becomes `panicked()`. The first error (from `make` for the batch being
/// consumed, or from `consume`) ends the run and is returned; `consume` returning
/// `ControlFlow::Break` ends it early without an error (batches made ahead are dropped).
pub(crate) fn run<B, E>(
    range: Range<usize>,
    helpers: usize,
    window: usize,
    make: impl Fn(usize) -> Result<B, E> + Sync,
    mut consume: impl FnMut(usize, B) -> Result<ControlFlow<()>, E>,
    panicked: impl Fn() -> E + Sync,
) -> Result<(), E>
where
    B: Send,
    E: Send,
{
    let end = range.end;
    let window = window.max(1);
    let shared = Shared {
        state: Mutex::new(State {
            next: range.start,
            wanted: range.start,
            ready: BTreeMap::new(),
            stop: false,
        }),
        changed: Condvar::new(),
    };
    let make_caught = |k: usize| -> Result<B, E> {
        catch_unwind(AssertUnwindSafe(|| make(k))).unwrap_or_else(|_| Err(panicked()))
    };
    // Claims the next batch index if it is within the window.
    let claim = |g: &mut State<B, E>| -> Option<usize> {
        (!g.stop && g.next < end && g.next < g.wanted + window).then(|| {
            g.next += 1;
            g.next - 1
        })
    };
    // Makes batch `k` without the lock, then stores it and wakes the waiters.
    let make_and_store = |k: usize| -> MutexGuard<'_, State<B, E>> {
        let r = make_caught(k);
        let mut g = shared.lock();
        g.ready.insert(k, r);
        shared.changed.notify_all();
        g
    };
    std::thread::scope(|scope| {
        for _ in 0..helpers {
            scope.spawn(|| {
                let mut g = shared.lock();
                loop {
                    if g.stop || g.next >= end {
                        break;
                    }
                    match claim(&mut g) {
                        Some(k) => {
                            drop(g);
                            g = make_and_store(k);
                        }
                        None => g = shared.wait(g),
                    }
                }
            });
        }
        let result = (|| {
            for k in range {
                let batch = {
                    let mut g = shared.lock();
                    loop {
                        if let Some(r) = g.ready.remove(&k) {
                            g.wanted = k + 1;
                            shared.changed.notify_all();
                            break r;
                        }
                        match claim(&mut g) {
                            Some(j) => {
                                drop(g);
                                g = make_and_store(j);
                            }
                            None => g = shared.wait(g),
                        }
                    }
                }?;
                if consume(k, batch)?.is_break() {
                    break;
                }
            }
            Ok(())
        })();
        shared.lock().stop = true;
        shared.changed.notify_all();
        result
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn consumes_every_batch_in_order_for_any_helpers_and_window() {
        for helpers in 0..4 {
            for window in [1, 2, 7] {
                let made = AtomicUsize::new(0);
                let mut seen = Vec::new();
                run(
                    3..40,
                    helpers,
                    window,
                    |k| {
                        made.fetch_add(1, Ordering::Relaxed);
                        Ok::<_, String>(k * k)
                    },
                    |k, b| {
                        seen.push((k, b));
                        Ok(ControlFlow::Continue(()))
                    },
                    || "panic".to_string(),
                )
                .unwrap();
                assert_eq!(seen, (3..40).map(|k| (k, k * k)).collect::<Vec<_>>());
                assert_eq!(made.load(Ordering::Relaxed), 37, "each batch made once");
            }
        }
    }

    #[test]
    fn errors_and_panics_end_the_run_at_the_right_batch() {
        for helpers in 0..3 {
            let mut seen = Vec::new();
            let e = run(
                0..100,
                helpers,
                4,
                |k| {
                    if k == 10 {
                        Err(format!("bad {k}"))
                    } else {
                        Ok(k)
                    }
                },
                |k, _| {
                    seen.push(k);
                    Ok(ControlFlow::Continue(()))
                },
                || "panic".to_string(),
            );
            assert_eq!(e, Err("bad 10".to_string()));
            assert_eq!(seen, (0..10).collect::<Vec<_>>());

            let e = run(
                0..100,
                helpers,
                4,
                |k| {
                    if k == 5 {
                        panic!("boom")
                    } else {
                        Ok::<_, String>(k)
                    }
                },
                |_, _| Ok(ControlFlow::Continue(())),
                || "panicked".to_string(),
            );
            assert_eq!(e, Err("panicked".to_string()));

            let e = run(
                0..100,
                helpers,
                4,
                Ok::<_, String>,
                |k, _| {
                    if k == 20 {
                        Err("stop".into())
                    } else {
                        Ok(ControlFlow::Continue(()))
                    }
                },
                || "panic".to_string(),
            );
            assert_eq!(e, Err("stop".to_string()));
        }
    }

    #[test]
    fn break_ends_the_run_early_without_an_error() {
        for helpers in 0..3 {
            let mut seen = Vec::new();
            let r = run(
                0..100,
                helpers,
                4,
                Ok::<_, String>,
                |k, _| {
                    seen.push(k);
                    Ok(if k == 7 {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    })
                },
                || "panic".to_string(),
            );
            assert_eq!(r, Ok(()));
            assert_eq!(seen, (0..8).collect::<Vec<_>>());
        }
    }
}
