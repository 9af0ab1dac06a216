//! A processor's schedule as busy intervals, shared by the simulator and
//! the window policies' score so both fill gaps the same way.

/// A processor's schedule: busy intervals in time order. A task starts in
/// the first gap after its data is in place that is long enough for it, so
/// a task waiting for a copy does not hold up later tasks whose data is
/// there (a worker runs whichever of its tasks can run, as StarPU's
/// data-ready policies do).
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    busy: Vec<(f64, f64)>,
}

impl Timeline {
    /// The earliest start at or after `at` with `secs` free.
    pub fn earliest(&self, at: f64, secs: f64) -> f64 {
        // The first interval that ends after `at`.
        let first = self.busy.partition_point(|(_, e)| *e <= at);
        let mut start = at;
        for (s, e) in &self.busy[first..] {
            if start + secs <= *s {
                return start;
            }
            start = start.max(*e);
        }
        start
    }

    /// Books `[start, start + secs)`, which [`Self::earliest`] found free.
    pub fn book(&mut self, start: f64, secs: f64) {
        if secs <= 0.0 {
            return;
        }
        let end = start + secs;
        let i = self.busy.partition_point(|(s, _)| *s < start);
        // Merge with touching neighbours to keep the list short.
        let joins_prev = i > 0 && self.busy[i - 1].1 >= start;
        let joins_next = i < self.busy.len() && self.busy[i].0 <= end;
        match (joins_prev, joins_next) {
            (true, true) => {
                self.busy[i - 1].1 = self.busy[i].1.max(end);
                self.busy.remove(i);
            }
            (true, false) => self.busy[i - 1].1 = self.busy[i - 1].1.max(end),
            (false, true) => self.busy[i] = (start, self.busy[i].1.max(end)),
            (false, false) => self.busy.insert(i, (start, end)),
        }
    }

    /// Seconds booked after `now`: the work queued ahead of a new task.
    pub fn queued_after(&self, now: f64) -> f64 {
        let first = self.busy.partition_point(|(_, e)| *e <= now);
        self.busy[first..].iter().map(|(s, e)| e - s.max(now)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timelines_fill_gaps_and_merge_what_touches() {
        let mut t = Timeline::default();
        t.book(0.0, 1.0);
        t.book(3.0, 1.0);
        // A 2 s task fits between 1 and 3; a 2.5 s one only after 4.
        assert_eq!(t.earliest(0.0, 2.0), 1.0);
        assert_eq!(t.earliest(0.0, 2.5), 4.0);
        assert_eq!(t.earliest(3.5, 0.1), 4.0);
        t.book(1.0, 2.0);
        assert_eq!(t.busy, vec![(0.0, 4.0)]);
        // A zero-length task books nothing and hides nothing.
        t.book(4.0, 0.0);
        t.book(4.0, 1.0);
        assert_eq!(t.busy, vec![(0.0, 5.0)]);
        assert_eq!(t.queued_after(1.0), 4.0);
        assert_eq!(t.queued_after(5.0), 0.0);
    }
}
