//! The executor's helper thread (`exec::pool`): both halves run, results come back in
//! order, panics reach the caller only after both halves finished, and nested or concurrent
//! splits fall back to scoped threads instead of waiting; the spin barrier orders rounds.

use ebmc::exec::pool::{for_each, join};
use std::sync::atomic::{AtomicUsize, Ordering};

#[test]
fn join_runs_both_halves_on_borrowed_data() {
    let mut left = vec![0u64; 1000];
    let mut right = vec![0u64; 1000];
    for round in 0..200u64 {
        let (a, b) = join(
            || {
                left.iter_mut().for_each(|x| *x += round);
                left.iter().sum::<u64>()
            },
            || {
                right.iter_mut().for_each(|x| *x += 2 * round);
                right.iter().sum::<u64>()
            },
        );
        let tri = round * (round + 1) / 2;
        assert_eq!((a, b), (1000 * tri, 2000 * tri), "round {round}");
    }
}

#[test]
fn for_each_visits_every_part_once() {
    for n in 0..6 {
        let hits: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
        for_each((0..n).collect(), |i: usize| {
            hits[i].fetch_add(1, Ordering::Relaxed);
        });
        assert!(
            hits.iter().all(|h| h.load(Ordering::Relaxed) == 1),
            "{n} parts"
        );
    }
}

#[test]
fn nested_and_concurrent_splits_do_not_deadlock() {
    let total = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..50 {
                    let ((a, b), (c, d)) = join(|| join(|| 1, || 2), || join(|| 3, || 4));
                    total.fetch_add(a + b + c + d, Ordering::Relaxed);
                }
            });
        }
    });
    assert_eq!(total.load(Ordering::Relaxed), 4 * 50 * 10);
}

#[test]
fn a_panic_in_either_half_reaches_the_caller_after_both_finished() {
    for helper_panics in [false, true] {
        let finished = AtomicUsize::new(0);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            join(
                || {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                    finished.fetch_add(1, Ordering::SeqCst);
                    if !helper_panics {
                        panic!("caller half");
                    }
                },
                || {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    finished.fetch_add(1, Ordering::SeqCst);
                    if helper_panics {
                        panic!("helper half");
                    }
                },
            )
        }));
        assert!(r.is_err(), "the panic is resumed");
        assert_eq!(
            finished.load(Ordering::SeqCst),
            2,
            "both halves ran to the end"
        );
    }
    // the helper still serves after a panic
    assert_eq!(join(|| 1, || 2), (1, 2));
}

#[test]
fn spin_barrier_orders_rounds() {
    use ebmc::exec::pool::SpinBarrier;
    let n = 3;
    let barrier = SpinBarrier::new(n);
    let slots: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
    std::thread::scope(|s| {
        for t in 0..n {
            let (barrier, slots) = (&barrier, &slots);
            s.spawn(move || {
                for round in 1..=2000 {
                    slots[t].store(round, Ordering::Relaxed);
                    barrier.wait();
                    // every thread wrote this round before anyone passed
                    for slot in slots {
                        assert_eq!(slot.load(Ordering::Relaxed), round);
                    }
                    barrier.wait();
                }
            });
        }
    });
}
