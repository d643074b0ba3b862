//! A bounded, ordered pool of worker threads for the chunks of one envelope.
//!
//! The caller's thread does all the I/O (it reads batches of chunks, hands them out, and gets
//! them back **in the order it handed them out**); scoped worker threads only run the cipher on
//! a batch. How many batches are out at once is the caller's bound, so memory stays at
//! (batches in flight × batch size) whatever the length of the stream. A worker that panics
//! hands its panic back to the caller's thread, as if the work had run there.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::{Mutex, PoisonError, mpsc};
use std::thread;

/// The most worker threads one envelope uses.
const MAX_WORKERS: usize = 16;

/// How many worker threads to use: the cores this process may run on (at most [`MAX_WORKERS`]).
pub(crate) fn workers() -> usize {
    thread::available_parallelism().map_or(1, NonZeroUsize::get).min(MAX_WORKERS)
}

type Done<J> = (u64, thread::Result<J>);

/// The caller's end of the pool: submit jobs, take them back in submission order.
pub(crate) struct Ordered<J> {
    jobs: Option<mpsc::Sender<(u64, J)>>,
    done: mpsc::Receiver<Done<J>>,
    early: BTreeMap<u64, J>,
    submitted: u64,
    returned: u64,
}

impl<J> Ordered<J> {
    /// Hands `job` to the workers.
    pub(crate) fn submit(&mut self, job: J) {
        if let Some(jobs) = &self.jobs {
            // Workers only stop when `jobs` is dropped, so the send cannot fail while the pool
            // is alive; if it did, `next` would report the lost job as a finished pool.
            let _ = jobs.send((self.submitted, job));
        }
        self.submitted += 1;
    }

    /// Jobs handed out and not yet taken back.
    pub(crate) fn in_flight(&self) -> u64 {
        self.submitted - self.returned
    }

    /// The oldest job not yet taken back, once it is done; `None` when none is out (or the
    /// workers are gone). A worker's panic is resumed here.
    pub(crate) fn next(&mut self) -> Option<J> {
        if self.in_flight() == 0 {
            return None;
        }
        loop {
            if let Some(job) = self.early.remove(&self.returned) {
                self.returned += 1;
                return Some(job);
            }
            let (seq, result) = self.done.recv().ok()?;
            match result {
                Ok(job) => {
                    self.early.insert(seq, job);
                }
                Err(panic) => resume_unwind(panic),
            }
        }
    }
}

/// Runs `body` with a pool of `workers` threads that apply `work` to each job submitted.
pub(crate) fn with_workers<J, T>(
    workers: usize,
    work: impl Fn(&mut J) + Sync,
    body: impl FnOnce(&mut Ordered<J>) -> T,
) -> T
where
    J: Send,
{
    let (jobs_tx, jobs_rx) = mpsc::channel::<(u64, J)>();
    let jobs_rx = Mutex::new(jobs_rx);
    let (done_tx, done_rx) = mpsc::channel::<Done<J>>();
    thread::scope(|scope| {
        for _ in 0..workers.max(1) {
            let (jobs_rx, done_tx, work) = (&jobs_rx, done_tx.clone(), &work);
            scope.spawn(move || {
                loop {
                    // The guard only covers `recv`, never `work`, so it is never poisoned by
                    // a job; a poisoned lock still holds a working receiver.
                    let next = jobs_rx.lock().unwrap_or_else(PoisonError::into_inner).recv();
                    let Ok((seq, mut job)) = next else { break };
                    let result = catch_unwind(AssertUnwindSafe(|| work(&mut job))).map(|()| job);
                    if done_tx.send((seq, result)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(done_tx);
        let mut ordered = Ordered {
            jobs: Some(jobs_tx),
            done: done_rx,
            early: BTreeMap::new(),
            submitted: 0,
            returned: 0,
        };
        let out = body(&mut ordered);
        // Closing the job channel lets every worker finish; the scope joins them.
        ordered.jobs = None;
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_come_back_in_submission_order() {
        let got = with_workers(
            4,
            |job: &mut (u64, u64)| {
                // Later jobs finish first.
                thread::sleep(std::time::Duration::from_micros(50 * (20 - job.0)));
                job.1 = job.0 * 10;
            },
            |pool| {
                let mut got = Vec::new();
                for i in 0..20 {
                    pool.submit((i, 0));
                    if pool.in_flight() >= 6 {
                        got.push(pool.next().unwrap());
                    }
                }
                while let Some(job) = pool.next() {
                    got.push(job);
                }
                got
            },
        );
        assert_eq!(got, (0..20).map(|i| (i, i * 10)).collect::<Vec<_>>());
    }

    #[test]
    fn a_worker_panic_reaches_the_caller() {
        let result = catch_unwind(|| {
            with_workers(
                2,
                |job: &mut u32| {
                    if *job == 3 {
                        panic!("job 3");
                    }
                },
                |pool| {
                    for i in 0..6 {
                        pool.submit(i);
                    }
                    while pool.next().is_some() {}
                },
            )
        });
        assert!(result.is_err());
    }
}
