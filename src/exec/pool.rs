//! One long-lived helper thread for the executor's two-way splits.
//!
//! On this 2-core VM a scoped `spawn` + `join` costs ~36 µs and a condition-variable round
//! trip ~64 µs (measured), while a spinning thread answers in ~1 µs. The mean field splits
//! 22 times a call and a CD update twice, so `join` hands the second half of a split to a
//! helper that spins for a while after each job before it parks. When the helper is busy
//! (a nested split, or another thread's split) the half runs on a scoped thread instead:
//! `join` never waits for a free helper, so it cannot deadlock.
//!
//! Invariant: `join` returns only after both halves have finished (also when one panics;
//! the panic is resumed on the caller), so the halves may borrow from the caller's stack.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long the helper spins for the next job before it parks.
const SPIN: Duration = Duration::from_micros(300);

/// A posted job: a monomorphised trampoline and its type-erased frame on the caller's stack.
#[derive(Clone, Copy)]
struct Job {
    run: unsafe fn(*mut ()),
    frame: *mut (),
}

// SAFETY: the frame is only touched by the helper between `posted` and `done`, while the
// caller waits without touching it (see `join`).
unsafe impl Send for Job {}

struct Helper {
    /// held by the caller whose split the helper runs
    busy: AtomicBool,
    /// sequence number of the last posted and of the last finished job
    posted: AtomicU64,
    done: AtomicU64,
    job: Mutex<Option<Job>>,
    /// whether the helper is parked, and its wake-up
    parked: Mutex<bool>,
    wake: Condvar,
}

fn helper() -> &'static Helper {
    static HELPER: OnceLock<&'static Helper> = OnceLock::new();
    HELPER.get_or_init(|| {
        let h: &'static Helper = Box::leak(Box::new(Helper {
            busy: AtomicBool::new(false),
            posted: AtomicU64::new(0),
            done: AtomicU64::new(0),
            job: Mutex::new(None),
            parked: Mutex::new(false),
            wake: Condvar::new(),
        }));
        std::thread::Builder::new()
            .name("ebmc-helper".into())
            .spawn(move || serve(h))
            .expect("the helper thread starts");
        h
    })
}

fn serve(h: &'static Helper) {
    let mut seen = 0u64;
    loop {
        let t0 = Instant::now();
        let mut spins = 0u32;
        while h.posted.load(Ordering::Acquire) == seen {
            std::hint::spin_loop();
            spins += 1;
            if spins.is_multiple_of(1024) && t0.elapsed() > SPIN {
                let mut parked = h.parked.lock().expect("helper lock");
                *parked = true;
                // a job posted before the flag was set is seen here; one posted after it
                // finds the flag and wakes us
                while *parked && h.posted.load(Ordering::Acquire) == seen {
                    parked = h.wake.wait(parked).expect("helper lock");
                }
                *parked = false;
                break;
            }
        }
        if h.posted.load(Ordering::Acquire) == seen {
            continue;
        }
        seen += 1;
        let job = h
            .job
            .lock()
            .expect("job slot")
            .take()
            .expect("a posted job");
        // SAFETY: `join` keeps the frame alive and untouched until `done` reaches `seen`.
        unsafe { (job.run)(job.frame) };
        h.done.store(seen, Ordering::Release);
    }
}

/// The second half's frame: its closure, then its result.
struct Frame<B, R> {
    f: Option<B>,
    out: Option<std::thread::Result<R>>,
}

unsafe fn trampoline<B: FnOnce() -> R, R>(frame: *mut ()) {
    let frame = &mut *(frame as *mut Frame<B, R>);
    let f = frame.f.take().expect("a job runs once");
    frame.out = Some(catch_unwind(AssertUnwindSafe(f)));
}

/// `(a(), b())`, `a` on this thread and `b` on the helper (or a scoped thread when the
/// helper is busy).
pub fn join<A, B, RA, RB>(a: A, b: B) -> (RA, RB)
where
    A: FnOnce() -> RA,
    B: FnOnce() -> RB + Send,
    RB: Send,
{
    let h = helper();
    if h.busy
        .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        return std::thread::scope(|s| {
            let other = s.spawn(b);
            let ra = a();
            (ra, other.join().unwrap_or_else(|e| resume_unwind(e)))
        });
    }
    let mut frame = Frame::<B, RB> {
        f: Some(b),
        out: None,
    };
    let job = Job {
        run: trampoline::<B, RB>,
        frame: &mut frame as *mut Frame<B, RB> as *mut (),
    };
    *h.job.lock().expect("job slot") = Some(job);
    let seq = h.posted.fetch_add(1, Ordering::AcqRel) + 1;
    {
        let mut parked = h.parked.lock().expect("helper lock");
        if *parked {
            *parked = false;
            h.wake.notify_one();
        }
    }
    /// Waits for the helper's half, also while `a` unwinds: the frame must outlive the job.
    struct Wait(&'static Helper, u64);
    impl Drop for Wait {
        fn drop(&mut self) {
            let mut spins = 0u32;
            while self.0.done.load(Ordering::Acquire) < self.1 {
                std::hint::spin_loop();
                spins += 1;
                if spins.is_multiple_of(4096) {
                    // an oversubscribed machine may have descheduled the helper
                    std::thread::yield_now();
                }
            }
            self.0.busy.store(false, Ordering::Release);
        }
    }
    let wait = Wait(h, seq);
    let ra = a();
    drop(wait);
    let rb = frame.out.take().expect("the helper ran the job");
    (ra, rb.unwrap_or_else(|e| resume_unwind(e)))
}

/// `f` on every part: the first on this thread, the second on the helper, any further ones
/// on scoped threads.
pub fn for_each<T: Send>(parts: Vec<T>, f: impl Fn(T) + Sync) {
    let mut it = parts.into_iter();
    let Some(first) = it.next() else {
        return;
    };
    let Some(second) = it.next() else {
        return f(first);
    };
    let rest: Vec<T> = it.collect();
    let f = &f;
    join(
        || {
            std::thread::scope(|s| {
                for p in rest {
                    s.spawn(move || f(p));
                }
                f(first)
            })
        },
        || f(second),
    );
}

/// A barrier for `n` threads that spins instead of sleeping (the lattice sweeps meet after
/// every colour: a condition-variable barrier costs ~64 µs a meeting here). Yields now and
/// then, for an oversubscribed machine.
pub struct SpinBarrier {
    n: usize,
    arrived: AtomicU64,
    generation: AtomicU64,
}

impl SpinBarrier {
    pub fn new(n: usize) -> Self {
        SpinBarrier {
            n,
            arrived: AtomicU64::new(0),
            generation: AtomicU64::new(0),
        }
    }

    /// Returns once all `n` threads have called `wait` for this generation.
    pub fn wait(&self) {
        let generation = self.generation.load(Ordering::Acquire);
        if self.arrived.fetch_add(1, Ordering::AcqRel) + 1 == self.n as u64 {
            // the count is reset before the others are let go, so their next `wait`
            // counts from zero
            self.arrived.store(0, Ordering::Relaxed);
            self.generation.fetch_add(1, Ordering::Release);
            return;
        }
        let mut spins = 0u32;
        while self.generation.load(Ordering::Acquire) == generation {
            std::hint::spin_loop();
            spins += 1;
            if spins.is_multiple_of(4096) {
                std::thread::yield_now();
            }
        }
    }
}
