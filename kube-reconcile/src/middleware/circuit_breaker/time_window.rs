//! A time window: a ring of buckets, each covering `duration / buckets`, behind a short
//! lock (recording reads the clock anyway). A whole bucket leaves when it slides out.

use super::window::Counts;
use crate::clock::Nanos;

pub(super) struct TimeWindow {
    bucket_nanos: u64,
    buckets: Box<[Counts]>,
    /// The absolute index (`now / bucket_nanos`) of the newest bucket.
    head: u64,
    totals: Counts,
}

impl TimeWindow {
    pub(super) fn new(bucket_nanos: u64, buckets: u32) -> Self {
        TimeWindow {
            bucket_nanos,
            buckets: vec![Counts::default(); buckets as usize].into_boxed_slice(),
            head: 0,
            totals: Counts::default(),
        }
    }

    pub(super) fn record(&mut self, now: Nanos, outcome: u8) -> Counts {
        let i = self.advance(now);
        self.buckets[i].add(outcome);
        self.totals.add(outcome);
        self.totals
    }

    pub(super) fn totals(&mut self, now: Nanos) -> Counts {
        self.advance(now);
        self.totals
    }

    /// Drops the buckets that slid out by `now`; returns the slot of the current bucket.
    fn advance(&mut self, now: Nanos) -> usize {
        let len = self.buckets.len() as u64;
        let current = now.as_raw() / self.bucket_nanos;
        if current > self.head {
            let expired = (current - self.head).min(len);
            for k in 1..=expired {
                let slot = usize::try_from((self.head + k) % len).unwrap_or_default();
                let old = std::mem::take(&mut self.buckets[slot]);
                self.totals.sub(old);
            }
            self.head = current;
        }
        // A clock read before a concurrent, later one lands in the newest bucket.
        usize::try_from(self.head % len).unwrap_or_default()
    }

    pub(super) fn clear(&mut self) {
        self.buckets.fill(Counts::default());
        self.totals = Counts::default();
    }
}
